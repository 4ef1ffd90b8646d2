"""Rendering clips: a character posed by its motion, drawn over its background, filmed
by the moving camera, with the ground-truth landmark positions."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from tpsmm.data.synthetic.character import (
    Background,
    Character,
    Texture,
    sample_background,
    sample_character,
)
from tpsmm.data.synthetic.markers import (
    MARKER_INDEX,
    MARKER_NAMES,
    MARKER_RADIUS,
    VISIBLE_FRACTION,
)
from tpsmm.data.synthetic.motion import pose_joints, sample_motion
from tpsmm.data.synthetic.raster import Canvas, Shape


class Video(NamedTuple):
    """A rendered clip: ``frames`` (T, H, W, 3) uint8, ``keypoints`` (T, M, 2) float32
    pixel (x, y), ``visible`` (T, M) bool, with M = len(MARKER_NAMES)."""

    frames: np.ndarray
    keypoints: np.ndarray
    visible: np.ndarray




def draw_character(canvas: Canvas, character: Character, joints: dict[str, np.ndarray],
                   t: int) -> None:
    """Paint ``character`` posed as in frame ``t`` of ``joints`` (from :func:`pose_joints`),
    back to front, with its markers."""
    unit = float(joints["unit"][t])
    at = {name: value[t] for name, value in joints.items() if value.ndim == 2}
    index = MARKER_INDEX
    marker_r = MARKER_RADIUS * unit

    def part(shape: Shape | None, texture: Texture) -> None:
        canvas.paint(shape, texture, unit, character.outline, character.outline_w * unit)

    def arm(side: str) -> None:
        radius = character.arm_r * unit
        part(canvas.capsule(at[f"{side}_shoulder"], at[f"{side}_elbow"], radius), character.shirt)
        sleeve = character.shirt if character.long_sleeves else character.skin
        part(canvas.capsule(at[f"{side}_elbow"], at[f"{side}_hand"], radius), sleeve)
        part(canvas.ellipse(at[f"{side}_hand"], 1.4 * radius, 1.4 * radius), character.skin)
        for joint in ("elbow", "hand"):
            canvas.marker(index[f"{side}_{joint}"], at[f"{side}_{joint}"], marker_r)

    def leg(side: str) -> None:
        r = character.leg_r * unit
        part(canvas.capsule(at[f"{side}_hip"], at[f"{side}_knee"], r), character.trousers)
        shin = character.trousers if character.long_trousers else character.skin
        part(canvas.capsule(at[f"{side}_knee"], at[f"{side}_foot"], 0.9 * r), shin)
        part(canvas.capsule(at[f"{side}_foot"], at[f"{side}_toe"], 0.8 * r), character.shoes)
        for joint in ("knee", "foot"):
            canvas.marker(index[f"{side}_{joint}"], at[f"{side}_{joint}"], marker_r)

    back, front = ("left", "right") if character.back_side < 0 else ("right", "left")
    arm(back)
    leg("left")
    leg("right")
    head_r = character.head_r * unit
    angle = float(joints["head_angle"][t])
    part(canvas.capsule(at["neck"], at["head"], 0.35 * head_r), character.skin)
    part(canvas.capsule(at["pelvis"], at["neck"], character.torso_r * unit), character.shirt)
    canvas.marker(index["chest"], at["chest"], marker_r)
    if character.hair is not None:
        up = np.array([math.sin(angle), -math.cos(angle)])
        part(
            canvas.ellipse(at["head"] + 0.12 * head_r * up, 1.08 * head_r, 1.08 * head_r, angle),
            character.hair,
        )
    part(canvas.ellipse(at["head"], head_r, head_r, angle), character.skin)

    def on_face(x: float, y: float) -> np.ndarray:
        """Head-local (x, y) in head radii, turned with the head, to image pixels."""
        c, s = math.cos(angle), math.sin(angle)
        return at["head"] + head_r * np.array([x * c + y * s, -x * s + y * c])

    yaw = float(joints["yaw"][t])
    for side in (-1.0, 1.0):
        # The eye on the side the face turns away from gets narrower.
        rx = 0.13 * head_r * (1.0 + 0.3 * side * yaw)
        eye = canvas.ellipse(
            on_face(0.38 * side + 0.3 * yaw, -0.12), rx,
            0.16 * head_r * float(joints["eyes"][t]), angle,
        )
        canvas.paint(eye, character.features)
    mouth_ry = head_r * (0.04 + 0.14 * float(joints["mouth"][t]))
    canvas.paint(
        canvas.ellipse(on_face(0.3 * yaw, 0.5), 0.3 * head_r, mouth_ry, angle), character.features
    )
    canvas.marker(index["head"], at["nose"], marker_r)
    arm(front)


def render_background(background: Background, joints: dict[str, np.ndarray], t: int,
                      size: int) -> np.ndarray:
    """(H, W, 3) float background seen through the camera of frame t."""
    centre = (size - 1.0) / 2.0
    zoom = float(joints["zoom"][t])
    grid = np.arange(size, dtype=np.float64)
    # World coordinates of the pixel centres: the camera's inverse transform.
    wx = ((grid - centre - joints["camera"][t, 0]) / zoom + centre)[None, :]
    wy = ((grid - centre - joints["camera"][t, 1]) / zoom + centre)[:, None]
    wall = np.broadcast_to(background.wall.shade(wx, wy, size), (size, size, 3))
    floor = np.broadcast_to(background.floor.shade(wx, wy, size), (size, size, 3))
    below = np.clip(0.5 + (wy - background.horizon * size) * zoom, 0.0, 1.0)[..., None]
    return wall + below * (floor - wall)


def clip_scene(seed: int, size: int, num_frames: int, identity: int, clip: int
          ) -> tuple[Character, Background, dict[str, np.ndarray]]:
    """The character, background and skeleton (with the camera) of one clip."""
    if seed < 0 or identity < 0 or clip < 0 or size < 16 or num_frames < 1:
        raise ValueError("need seed, identity, clip >= 0, size >= 16 and num_frames >= 1")
    character = sample_character(np.random.default_rng((seed, 0, identity)))
    clip_rng = np.random.default_rng((seed, 1, identity, clip))
    background = sample_background(clip_rng)
    return character, background, pose_joints(character, sample_motion(clip_rng, num_frames), size)



def render_video(
    seed: int = 0,
    size: int = 64,
    num_frames: int = 32,
    identity: int = 0,
    clip: int = 0,
    character: bool = True,
) -> Video:
    """Render one clip in memory.

    Args:
        seed: dataset seed (>= 0).
        size: frame height and width in pixels (>= 16).
        num_frames: T >= 1.
        identity: character number (>= 0); same (seed, identity) -> same character.
        clip: clip number of that character (>= 0); picks motion, background, camera.
        character: False renders the background and camera motion only (a frame
            without markers; ``visible`` is then all False).

    Returns:
        :class:`Video` with frames (T, size, size, 3) uint8, keypoints (T, M, 2) float32
        pixel (x, y) and visible (T, M) bool.
    """
    figure, background, joints = clip_scene(seed, size, num_frames, identity, clip)
    frames = np.empty((num_frames, size, size, 3), dtype=np.uint8)
    visible = np.zeros((num_frames, len(MARKER_NAMES)), dtype=bool)
    for t in range(num_frames):
        canvas = Canvas(render_background(background, joints, t, size))
        if character:
            draw_character(canvas, figure, joints, t)
            visible[t] = canvas.visible_fractions(len(MARKER_NAMES)) >= VISIBLE_FRACTION
        frames[t] = np.rint(np.clip(canvas.image, 0.0, 1.0) * 255.0)
    names = ["nose" if name == "head" else name for name in MARKER_NAMES]
    keypoints = np.stack([joints[name] for name in names], axis=1).astype(np.float32)
    return Video(frames, keypoints, visible)
