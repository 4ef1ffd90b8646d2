"""The reference demo's animation loop, kept as the plain baseline for the fast path.

:class:`~tpsmm.animation.Animator` batches frames, prepares the source once and may
rewrite layers (:mod:`tpsmm.animation.inference`). This loop does none of that: all
frames in memory, then for each frame, batch 1, fp32, the keypoints, the driving
keypoints of the chosen mode, dense motion and the whole inpainting network (its encoder
included), as the reference's ``make_animation`` does. Tests check the Animator against it
and ``benchmarks/animate.py`` times it as the baseline.
"""

from __future__ import annotations

import torch

from tpsmm.animation.animator import MODES
from tpsmm.animation.keypoints import relative_kp, relative_scale
from tpsmm.generator import generate
from tpsmm.model import TPSMM


def animate_frame_by_frame(model: TPSMM, source: torch.Tensor, frames: torch.Tensor,
                           mode: str = "relative") -> torch.Tensor:
    """Animate ``source`` with each of ``frames`` in turn.

    Args:
        model: networks in eval mode; ``mode="avd"`` needs ``model.avd_network``.
        source: ``(1, 3, S, S)`` in [0, 1].
        frames: ``(T, 3, S, S)`` in [0, 1]; in relative mode the motion is measured from
            ``frames[0]``.
        mode: ``"standard"`` (driving keypoints as they are), ``"relative"`` or ``"avd"``.

    Returns:
        ``(T, 3, S, S)`` generated frames.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    with torch.no_grad():
        kp_source = model.kp_detector(source)
        kp_initial = model.kp_detector(frames[:1])
        scale = relative_scale(kp_source["fg_kp"], kp_initial["fg_kp"])
        predictions = []
        for frame in frames:
            kp_driving = model.kp_detector(frame[None])
            if mode == "standard":
                kp = kp_driving["fg_kp"]
            elif mode == "relative":
                kp = relative_kp(kp_source["fg_kp"], kp_driving["fg_kp"], kp_initial["fg_kp"],
                                 scale)
            else:
                kp = model.avd_network(kp_source, kp_driving)["fg_kp"]
            generated = generate(model.dense_motion_network, model.inpainting_network, source,
                                 kp_source["fg_kp"], kp)
            predictions.append(generated["prediction"])
    return torch.cat(predictions)
