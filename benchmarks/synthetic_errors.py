"""Where the demo model's L1 goes on held-out synthetic videos, region by region.

The generator can render each clip without its character (same background,
same camera), so every pixel of every frame can be labelled:

- *character*: the character covers it in the driving frame;
- *uncovered*: background in the driving frame, covered in the source frame
  (the model must inpaint it);
- *near*: other background within ``--band`` pixels of the character in either
  frame (where the character's motion can bleed into the background flow);
- *far*: the rest of the background (only the camera moves it).

For copying the source, the model's prediction and its warped source alone
(``deformed``), it prints the mean error per pixel of each region and its
share of the total L1, beside an ideal warp of the background: the source's
background resampled (bilinearly, as the model does) through the true camera
motion with border padding, the floor for any model that warps. Reconstruction is from the first
frame, as in ``benchmarks/synthetic.py``; the background predictor is used
when the checkpoint has one (as the reference's reconstruction does), unless ``--no-bg``.
Then, for the model, the mean weight of the background transform in the dense
motion's masks and how far its flow is from the true camera's (in pixels, |dx| + |dy|),
region by region (both resized to the frame as the inpainting network resizes the flow);
and how far the background predictor's warp is from the true camera's, beside the
identity's (no camera motion). Last, the L1 the model would have with the near and far
background at the ideal warp's error and its own elsewhere.

    python benchmarks/synthetic_errors.py                           # the shipped model
    python benchmarks/synthetic_errors.py --checkpoint RUN/last.pth.tar
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch
import torch.nn.functional as F
from _common import add_demo_model_arguments
from scipy.ndimage import binary_dilation

from tpsmm import TPSMM
from tpsmm.data import synthetic
from tpsmm.evaluation.reconstruction import background_used, generate_frames
from tpsmm.geometry import apply_projective, make_coordinate_grid
from tpsmm.networks.inpainting import resize_flow
from tpsmm.testing.camera_truth import background_grid

HELD_OUT_SEED = 1  # training used dataset seed 0
REGIONS = ("character", "uncovered", "near", "far")


def _frames(video: synthetic.Video) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (T, 3, H, W) in [0, 1]."""
    return torch.from_numpy(video.frames).permute(0, 3, 1, 2).float() / 255


def true_camera(seed: int, identity: int, frames: int, size: int) -> torch.Tensor:
    """The background's true backward flow of one clip: (T, S, S, 2) in [-1, 1]."""
    return torch.from_numpy(background_grid(seed, size, frames, identity))


def ideal_background_warp(seed: int, identity: int, camera: torch.Tensor) -> torch.Tensor:
    """The source frame's background resampled through the true ``camera`` flow
    (:func:`true_camera`): (T, 3, S, S)."""
    frames, size = camera.shape[:2]
    empty = synthetic.render_video(seed=seed, size=size, num_frames=1,
                                   identity=identity, character=False)
    source = _frames(empty).expand(frames, -1, -1, -1)
    # Border padding, as clamp_background does: where the camera shows more than the
    # source, the nearest source pixel (the reference's zeros would paint it black).
    return F.grid_sample(source, camera, align_corners=True, padding_mode="border")


def regions(seed: int, identity: int, frames: int, size: int,
            band: int) -> tuple[dict, torch.Tensor]:
    """Region masks (T, S, S) of one clip and its frames (T, 3, S, S)."""
    video = synthetic.render_video(seed=seed, size=size, num_frames=frames,
                                   identity=identity)
    empty = synthetic.render_video(seed=seed, size=size, num_frames=frames,
                                   identity=identity, character=False)
    covered = np.any(video.frames != empty.frames, axis=-1)
    in_source = np.broadcast_to(covered[:1], covered.shape)
    either = np.stack([binary_dilation(covered[t] | in_source[t], iterations=band)
                       for t in range(frames)])
    background = ~covered & ~in_source
    masks = {"character": covered, "uncovered": ~covered & in_source,
             "near": background & either, "far": background & ~either}
    return masks, _frames(video)


def pixels_per_grid_unit(size: int) -> float:
    """Grid coordinates in [-1, 1] (align_corners=True) to pixels of a ``size`` frame."""
    return (size - 1) / 2


def camera_errors(bg_param: torch.Tensor, true: torch.Tensor) -> tuple[float, float]:
    """Mean |dx| + |dy| in pixels from the ``true`` camera's flow (T, S, S, 2) of the
    background predictor's warp (``bg_param``: (T, 3, 3)) and of the identity's."""
    size = true.shape[1]
    identity_grid = make_coordinate_grid((size, size))
    predicted = apply_projective(bg_param, identity_grid)
    pixels = pixels_per_grid_unit(size)
    return (float((predicted - true).abs().sum(dim=-1).mean()) * pixels,
            float((identity_grid - true).abs().sum(dim=-1).mean()) * pixels)


@torch.no_grad()
def predict(model: TPSMM, frames: torch.Tensor, use_bg: bool) -> dict[str, torch.Tensor]:
    """Reconstruction of ``frames`` from frame 0: prediction and deformed, (T, 3, S, S);
    the background transform's mask weight (T, S, S), the flow (T, S, S, 2) and the
    background predictor's ``bg_param`` (T, 3, 3; None when not used)."""
    source = frames[:1]
    out = generate_frames(model, source, frames, model.kp_detector(source), use_bg)
    size = tuple(frames.shape[-2:])
    motion = out["motion"]
    background = F.interpolate(motion["contribution_maps"][:, :1], size=size,
                               mode="bilinear", align_corners=True)[:, 0]
    return {"prediction": out["prediction"], "deformed": out["deformed"],
            "background weight": background, "flow": resize_flow(motion["deformation"], size),
            "bg_param": out["bg_param"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_demo_model_arguments(parser)
    parser.add_argument("--videos", type=int, default=10, help="held-out characters")
    parser.add_argument("--frames", type=int, default=48, help="frames per video")
    parser.add_argument("--band", type=int, default=4, help="width of 'near' in pixels")
    parser.add_argument("--seed", type=int, default=HELD_OUT_SEED,
                        help="dataset seed of the characters; 0 renders the first training "
                        "characters of `tpsmm synth --seed 0` (default: held-out ones)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = TPSMM.from_checkpoint(args.checkpoint, config=args.config).eval()
    use_bg = background_used(model) and not args.no_bg
    size = model.config.image_size
    methods = ("copy source", "model", "deformed", "ideal bg warp")
    sums = {(m, r): 0.0 for m in methods for r in REGIONS}
    counts = dict.fromkeys(REGIONS, 0)
    camera = []  # per clip: (background predictor, identity)
    motion_sums = {(m, r): 0.0 for m in ("background weight", "flow error") for r in REGIONS}
    pixels = pixels_per_grid_unit(size)
    for identity in range(args.videos):
        masks, frames = regions(args.seed, identity, args.frames, size, args.band)
        outputs = predict(model, frames, use_bg)
        camera_flow = true_camera(args.seed, identity, args.frames, size)
        flow_error = (outputs["flow"] - camera_flow).abs().sum(dim=-1) * pixels
        for region, mask in masks.items():
            mask = torch.from_numpy(mask)
            motion_sums["background weight", region] += float(
                outputs["background weight"][mask].sum())
            motion_sums["flow error", region] += float(flow_error[mask].sum())
        if use_bg:
            camera.append(camera_errors(outputs["bg_param"], camera_flow))
        candidates = {"copy source": frames[:1].expand_as(frames),
                      "model": outputs["prediction"], "deformed": outputs["deformed"],
                      "ideal bg warp": ideal_background_warp(args.seed, identity,
                                                               camera_flow)}
        for method, image in candidates.items():
            error = (image - frames).abs().mean(dim=1).numpy()
            for region, mask in masks.items():
                sums[method, region] += float(error[mask].sum())
        for region, mask in masks.items():
            counts[region] += int(mask.sum())
    total = sum(counts.values())
    print(f"checkpoint: {args.checkpoint} (config {args.config}); background predictor "
          f"{'used' if use_bg else 'not used'}")
    kind = "held-out" if args.seed != 0 else "training"
    print(f"{args.videos} {kind} videos x {args.frames} frames (seed {args.seed}), "
          f"{size}x{size}; 'near' = background within {args.band} px of the character")
    print("mean |error| per pixel of each region [its share of the frame's L1]")
    print(f"{'region':<10} {'pixels':>7}" + "".join(f" {m:>22}" for m in methods))
    for region in REGIONS:
        n = max(counts[region], 1)
        cells = "".join(f" {sums[m, region] / n:11.4f} [{sums[m, region] / total:.4f}]"
                        if m != "ideal bg warp" or region in ("near", "far") else f" {'-':>22}"
                        for m in methods)
        print(f"{region:<10} {counts[region] / total:7.1%}{cells}")
    totals = "".join(f" {sum(sums[m, r] for r in REGIONS) / total:11.4f} {'':>10}"
                     for m in methods[:3])
    print(f"{'L1':<10} {'100%':>7}{totals}")
    copy_l1 = sum(sums["copy source", r] for r in REGIONS) / total
    ideal_bg = (sum(sums["model", r] for r in ("character", "uncovered"))
                + sum(sums["ideal bg warp", r] for r in ("near", "far"))) / total
    print(f"the model with near and far at the ideal background warp: L1 {ideal_bg:.4f} = "
          f"{ideal_bg / copy_l1:.3f}x copy source's")
    print("the model's dense motion, mean per pixel of each region: the background "
          "transform's mask weight | |flow - true camera| in px")
    for region in REGIONS:
        n = max(counts[region], 1)
        print(f"{region:<10} {motion_sums['background weight', region] / n:7.3f} "
              f"{motion_sums['flow error', region] / n:9.2f}")
    if use_bg:
        predicted, still = np.mean(camera, axis=0)
        print(f"camera: the background predictor's warp is {predicted:.3f} px (|dx| + |dy|) "
              f"from the true camera's on average; the identity (no camera motion) "
              f"{still:.3f} px")
        print("per clip (predictor / identity): "
              + ", ".join(f"{p:.2f}/{s:.2f}" for p, s in camera))
    return 0


if __name__ == "__main__":
    sys.exit(main())
