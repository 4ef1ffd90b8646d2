"""The motion sampler: smooth random joint trajectories, and the joints' image positions.

A clip's motion is a dict of per-frame channels (T,): joint angles, body position and scale,
face yaw, mouth and eye opening, and the camera's shift and zoom.
"""

from __future__ import annotations

import math

import numpy as np

from tpsmm.data.synthetic.character import Character

# Motion channels: (mean low, mean high, amplitude low, amplitude high). Angles are in
# radians, positions and camera shifts in frame sizes, scales as logarithms.
_CHANNELS = {
    "sway": (0.0, 0.0, 0.03, 0.2),  # torso rotation about the pelvis
    "tilt": (0.0, 0.0, 0.05, 0.3),  # head rotation relative to the torso
    "yaw": (0.0, 0.0, 0.2, 0.9),  # face turned sideways, in [-1, 1]
    "mouth": (0.4, 0.6, 0.2, 0.4),  # mouth opening, in [0, 1]
    "shoulder_l": (0.1, 0.8, 0.4, 1.1),  # arm angle away from the body, 0 = hanging
    "shoulder_r": (0.1, 0.8, 0.4, 1.1),
    "elbow_l": (0.2, 0.9, 0.2, 0.8),
    "elbow_r": (0.2, 0.9, 0.2, 0.8),
    "hip_l": (0.1, 0.3, 0.05, 0.3),
    "hip_r": (0.1, 0.3, 0.05, 0.3),
    "knee_l": (0.2, 0.5, 0.1, 0.4),
    "knee_r": (0.2, 0.5, 0.1, 0.4),
    "x": (-0.04, 0.04, 0.02, 0.09),
    "y": (-0.02, 0.02, 0.005, 0.03),
    "log_scale": (-0.2, 0.0, 0.02, 0.08),
    "cam_x": (0.0, 0.0, 0.0, 0.025),
    "cam_y": (0.0, 0.0, 0.0, 0.02),
    "cam_log_zoom": (0.0, 0.0, 0.0, 0.04),
}
_SINES = 3  # sinusoids per channel
_FREQUENCY = (0.01, 0.05)  # cycles per frame: a swing takes 20 to 100 frames


def sample_motion(rng: np.random.Generator, num_frames: int) -> dict[str, np.ndarray]:
    """Smooth trajectories (T,) per channel: mean + sum of sinusoids with random phases."""
    mean_lo, mean_hi, amp_lo, amp_hi = np.array(list(_CHANNELS.values())).T
    shape = (len(_CHANNELS), _SINES)
    mean = rng.uniform(mean_lo, mean_hi)
    amplitude = rng.uniform(amp_lo, amp_hi)
    frequency = rng.uniform(*_FREQUENCY, shape)
    phase = rng.uniform(0.0, 2.0 * math.pi, shape)
    weight = rng.uniform(0.2, 1.0, shape)
    weight *= (amplitude / weight.sum(axis=1))[:, None]  # amplitudes sum to the channel's
    t = np.arange(num_frames)[:, None, None]
    values = mean + (weight * np.sin(2.0 * math.pi * frequency * t + phase)).sum(axis=2)
    motion = dict(zip(_CHANNELS, values.T, strict=True))
    # Blinks: short dips of the eye opening every 25 to 70 frames.
    period = rng.uniform(25.0, 70.0)
    since = (t[:, 0, 0] - rng.uniform(0.0, period) + period / 2) % period - period / 2
    motion["eyes"] = np.clip(1.0 - np.exp(-0.5 * since**2), 0.1, 1.0)
    return motion


def _down(angle: np.ndarray) -> np.ndarray:
    """Unit vectors (..., 2) pointing down (+y) when ``angle`` is 0, turning to +x for > 0."""
    return np.stack([np.sin(angle), np.cos(angle)], axis=-1)


def pose_joints(character: Character, motion: dict[str, np.ndarray],
                size: int) -> dict[str, np.ndarray]:
    """Image positions (T, 2) of the joints plus per-frame scalars (T,).

    Joints are laid out in body units around the pelvis, then scaled by the body
    scale and camera zoom (``unit``: pixels per body unit) and placed in the frame.
    """
    frame = float(size)
    zoom = np.exp(motion["cam_log_zoom"])
    unit = frame * np.exp(motion["log_scale"]) * zoom
    centre = (frame - 1.0) / 2.0
    pelvis = np.stack([0.5 + motion["x"], 0.56 + motion["y"]], axis=-1) * frame
    camera = np.stack([motion["cam_x"], motion["cam_y"]], axis=-1) * frame
    origin = centre + zoom[:, None] * (pelvis - centre) + camera

    sway = motion["sway"]
    down = _down(sway)
    right = np.stack([np.cos(sway), -np.sin(sway)], axis=-1)
    neck = -character.torso_len * down
    head_angle = sway + motion["tilt"]
    head = neck - (character.neck_len + character.head_r) * _down(head_angle)
    body = {"pelvis": np.zeros_like(neck), "neck": neck, "head": head}
    body["chest"] = -0.6 * character.torso_len * down
    # The nose marker turns with the face.
    head_x = np.stack([np.cos(head_angle), -np.sin(head_angle)], axis=-1)
    body["nose"] = head + character.head_r * (
        0.35 * motion["yaw"][:, None] * head_x + 0.15 * _down(head_angle)
    )
    for side, tag, name in ((-1, "l", "left"), (1, "r", "right")):
        shoulder = neck + side * character.shoulder_w * right + 0.3 * character.torso_r * down
        upper = sway + side * motion[f"shoulder_{tag}"]
        body[f"{name}_shoulder"] = shoulder
        body[f"{name}_elbow"] = shoulder + character.upper_arm * _down(upper)
        lower = upper + side * motion[f"elbow_{tag}"]
        body[f"{name}_hand"] = body[f"{name}_elbow"] + character.forearm * _down(lower)
        hip = np.array([side * character.hip_w, 0.0])
        thigh = side * motion[f"hip_{tag}"]
        body[f"{name}_hip"] = np.broadcast_to(hip, neck.shape)
        body[f"{name}_knee"] = hip + character.thigh * _down(thigh)
        shin = thigh - side * motion[f"knee_{tag}"]  # knees point outwards, feet come back in
        body[f"{name}_foot"] = body[f"{name}_knee"] + character.shin * _down(shin)
        body[f"{name}_toe"] = body[f"{name}_foot"] + character.foot * _down(shin + side * 1.4)
    joints = {name: origin + unit[:, None] * p for name, p in body.items()}
    joints.update(
        unit=unit,
        zoom=zoom,
        camera=camera,
        head_angle=head_angle,
        yaw=motion["yaw"],
        mouth=motion["mouth"],
        eyes=motion["eyes"],
    )
    return joints

