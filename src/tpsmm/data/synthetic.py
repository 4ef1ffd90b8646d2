"""Procedural videos of articulated cartoon characters with ground-truth landmarks.

Each video shows one character (torso, head with a face, two arms with elbows and
hands, two legs with knees and feet) moving its joints along smooth random
trajectories (sums of sinusoids) over a procedurally textured background, filmed by
a camera that shifts and zooms a little. Characters differ in proportions, colours
and garment textures; the textures are painted in the parts' own coordinates, so
they move with the limbs and a motion model has something to track.

Ten landmarks carry small discs in reserved, fully saturated colours
(:data:`MARKER_COLOURS`). Every other colour in a frame has a chroma
(max - min of R, G, B) of at most :data:`MAX_TEXTURE_CHROMA`; because compositing,
antialiasing and camera resampling only mix colours, and chroma is a seminorm, no
pixel away from a marker can exceed it, so markers can be found by colour alone
(see :mod:`tpsmm.evaluation.landmarks`).

Conventions: pixel (row i, column j) has its centre at (x, y) = (j, i); keypoints
are float32 (x, y) in those units and may lie outside the frame. "left" and "right"
are the image's left and right. A marker is ``visible`` when at least
:data:`VISIBLE_FRACTION` of its disc is unoccluded and inside the frame (one arm is
drawn behind the torso and head, so its markers disappear at times).

On disk (the layout the trainer reads)::

    ROOT/synthetic.json              generation settings and marker names/colours
    ROOT/{train,test}/<id>#<clip>/000000.png, 000001.png, ...   lossless RGB frames
    ROOT/{train,test}/<id>#<clip>.npz   keypoints (T, M, 2) float32, visible (T, M) bool

``<id>`` names the character (``id00012``); clips of one character share it, which
is the FOMM ``id_sampling`` convention. Test characters never appear in train.
Everything is a function of (seed, identity, clip): the same seed gives the same
frames byte for byte, whatever the number of workers.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

from tpsmm.errors import OutputError

MARKER_NAMES = (
    "head",  # on the nose, so it also follows the face turning
    "chest",
    "left_elbow",
    "right_elbow",
    "left_hand",
    "right_hand",
    "left_knee",
    "right_knee",
    "left_foot",
    "right_foot",
)
#: Hue of each marker in degrees; evenly spaced so that blurred markers stay apart.
MARKER_HUES = np.arange(len(MARKER_NAMES)) * (360.0 / len(MARKER_NAMES))
#: Upper bound of the chroma (max - min channel, in [0, 1]) of all non-marker colours.
MAX_TEXTURE_CHROMA = 0.22
#: Marker disc radius in body units (fractions of the frame size at body scale 1).
MARKER_RADIUS = 0.036
#: A marker counts as visible when this fraction of its disc can be seen.
VISIBLE_FRACTION = 0.75


def _hue_to_rgb(hue: np.ndarray | float) -> np.ndarray:
    """Fully saturated RGB (..., 3) in [0, 1] for hues in degrees (max 1, min 0)."""
    h = (np.asarray(hue, dtype=np.float64) % 360.0)[..., None] / 60.0
    return np.clip(np.abs(h - [3.0, 2.0, 4.0]) * [1.0, -1.0, -1.0] + [-1.0, 2.0, 2.0], 0.0, 1.0)


_MARKER_INDEX = {name: i for i, name in enumerate(MARKER_NAMES)}
#: (M, 3) uint8 marker colours: pure hues, chroma 255.
MARKER_COLOURS = np.round(_hue_to_rgb(MARKER_HUES) * 255).astype(np.uint8)

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


class Video(NamedTuple):
    """A rendered clip: ``frames`` (T, H, W, 3) uint8, ``keypoints`` (T, M, 2) float32
    pixel (x, y), ``visible`` (T, M) bool, with M = len(MARKER_NAMES)."""

    frames: np.ndarray
    keypoints: np.ndarray
    visible: np.ndarray


@dataclass(frozen=True)
class DatasetSummary:
    """What :func:`generate_dataset` wrote."""

    root: Path
    train_videos: int
    test_videos: int
    frames: int
    seconds: float


@dataclass(frozen=True)
class _Texture:
    """Two colours mixed by a periodic pattern painted in a part's own coordinates."""

    base: np.ndarray  # (3,) RGB in [0, 1]
    accent: np.ndarray
    kind: str  # plain, stripes, checker, dots, gradient or waves
    period: float  # body units
    angle: float
    phase: float

    def shade(self, u: np.ndarray, v: np.ndarray, unit: float) -> np.ndarray:
        """RGB (..., 3) at local pixel coordinates u, v; ``unit`` is pixels per body unit."""
        if self.kind == "plain":
            return self.base
        pixels = self.period * unit
        a = 2.0 * math.pi / pixels
        c, s = math.cos(self.angle), math.sin(self.angle)
        p = (u * c + v * s) * a + self.phase
        q = (v * c - u * s) * a
        # Edges about 1.5 px wide whatever the period, so patterns never alias.
        sharp = min(max(pixels / 9.5, 0.4), 4.0)
        if self.kind == "stripes":
            wave = np.sin(p)
        elif self.kind == "checker":
            wave = 1.5 * np.sin(p) * np.sin(q)
        elif self.kind == "dots":
            wave = np.cos(p) + np.cos(q) - 1.0
        elif self.kind == "gradient":
            wave, sharp = np.sin(p / 4.0), 0.5
        else:  # waves: blotches from three crossing plane waves
            wave = (np.sin(p) + np.sin(0.8 * q + 1.7) + np.sin(0.6 * (p + q))) / 1.5
        w = np.clip(0.5 + sharp * wave, 0.0, 1.0)[..., None]
        return self.base + w * (self.accent - self.base)


@dataclass(frozen=True)
class _Character:
    """Proportions in body units (fractions of the frame size) and looks of one identity."""

    torso_len: float
    torso_r: float
    head_r: float
    neck_len: float
    shoulder_w: float
    hip_w: float
    upper_arm: float
    forearm: float
    arm_r: float
    thigh: float
    shin: float
    leg_r: float
    foot: float
    skin: _Texture
    hair: _Texture | None
    shirt: _Texture
    trousers: _Texture
    shoes: _Texture
    long_sleeves: bool
    long_trousers: bool
    features: np.ndarray  # colour of eyes and mouth
    outline: np.ndarray
    outline_w: float  # body units; 0 for no outline
    back_side: int  # -1 or 1: the arm drawn behind torso and head


@dataclass(frozen=True)
class _Background:
    wall: _Texture
    floor: _Texture
    horizon: float  # frame sizes from the top


def _muted(rng: np.random.Generator, value: tuple[float, float] = (0.15, 0.95)) -> np.ndarray:
    """A random colour whose chroma stays at or below MAX_TEXTURE_CHROMA."""
    chroma = rng.uniform(0.02, MAX_TEXTURE_CHROMA)
    low = rng.uniform(value[0], value[1] - chroma)
    return low + chroma * _hue_to_rgb(rng.uniform(0.0, 360.0))


def _texture(
    rng: np.random.Generator,
    kinds: tuple[str, ...],
    period: tuple[float, float],
    value: tuple[float, float] = (0.15, 0.95),
) -> _Texture:
    return _Texture(
        base=_muted(rng, value),
        accent=_muted(rng, value),
        kind=kinds[rng.integers(len(kinds))],
        period=rng.uniform(*period),
        angle=rng.uniform(0.0, math.pi),
        phase=rng.uniform(0.0, 2.0 * math.pi),
    )


_GARMENTS = ("plain", "stripes", "stripes", "checker", "dots", "gradient")


def _sample_character(rng: np.random.Generator) -> _Character:
    torso_r = rng.uniform(0.055, 0.085)
    return _Character(
        torso_len=rng.uniform(0.2, 0.26),
        torso_r=torso_r,
        head_r=rng.uniform(0.075, 0.105),
        neck_len=rng.uniform(0.0, 0.025),
        shoulder_w=torso_r * rng.uniform(0.7, 1.0),
        hip_w=torso_r * rng.uniform(0.5, 0.8),
        upper_arm=rng.uniform(0.11, 0.15),
        forearm=rng.uniform(0.1, 0.14),
        arm_r=rng.uniform(0.024, 0.038),
        thigh=rng.uniform(0.13, 0.17),
        shin=rng.uniform(0.12, 0.16),
        leg_r=rng.uniform(0.03, 0.046),
        foot=rng.uniform(0.04, 0.06),
        skin=_texture(rng, ("plain",), (1.0, 1.0), (0.35, 0.95)),
        hair=_texture(rng, ("plain", "stripes"), (0.03, 0.05)) if rng.random() < 0.7 else None,
        shirt=_texture(rng, _GARMENTS, (0.035, 0.08)),
        trousers=_texture(rng, _GARMENTS, (0.035, 0.08)),
        shoes=_texture(rng, ("plain",), (1.0, 1.0), (0.05, 0.5)),
        long_sleeves=bool(rng.random() < 0.5),
        long_trousers=bool(rng.random() < 0.7),
        features=_muted(rng, (0.02, 0.3)),
        outline=_muted(rng, (0.0, 0.3)),
        outline_w=rng.uniform(0.005, 0.012) if rng.random() < 0.6 else 0.0,
        back_side=int(rng.choice((-1, 1))),
    )


def _sample_background(rng: np.random.Generator) -> _Background:
    kinds = ("stripes", "checker", "dots", "gradient", "waves", "waves")
    return _Background(
        wall=_texture(rng, kinds, (0.08, 0.25)),
        floor=_texture(rng, kinds, (0.08, 0.25)),
        horizon=rng.uniform(0.5, 0.85),
    )


def _sample_motion(rng: np.random.Generator, num_frames: int) -> dict[str, np.ndarray]:
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


def _skeleton(ch: _Character, mo: dict[str, np.ndarray], size: int) -> dict[str, np.ndarray]:
    """Image positions (T, 2) of the joints plus per-frame scalars (T,).

    Joints are laid out in body units around the pelvis, then scaled by the body
    scale and camera zoom (``unit``: pixels per body unit) and placed in the frame.
    """
    s = float(size)
    zoom = np.exp(mo["cam_log_zoom"])
    unit = s * np.exp(mo["log_scale"]) * zoom
    centre = (s - 1.0) / 2.0
    pelvis = np.stack([0.5 + mo["x"], 0.56 + mo["y"]], axis=-1) * s
    camera = np.stack([mo["cam_x"], mo["cam_y"]], axis=-1) * s
    origin = centre + zoom[:, None] * (pelvis - centre) + camera

    sway = mo["sway"]
    down = _down(sway)
    right = np.stack([np.cos(sway), -np.sin(sway)], axis=-1)
    neck = -ch.torso_len * down
    head_angle = sway + mo["tilt"]
    head = neck - (ch.neck_len + ch.head_r) * _down(head_angle)
    body = {"pelvis": np.zeros_like(neck), "neck": neck, "head": head}
    body["chest"] = -0.6 * ch.torso_len * down
    # The nose marker turns with the face.
    head_x = np.stack([np.cos(head_angle), -np.sin(head_angle)], axis=-1)
    body["nose"] = head + ch.head_r * (
        0.35 * mo["yaw"][:, None] * head_x + 0.15 * _down(head_angle)
    )
    for side, tag, name in ((-1, "l", "left"), (1, "r", "right")):
        shoulder = neck + side * ch.shoulder_w * right + 0.3 * ch.torso_r * down
        upper = sway + side * mo[f"shoulder_{tag}"]
        body[f"{name}_shoulder"] = shoulder
        body[f"{name}_elbow"] = shoulder + ch.upper_arm * _down(upper)
        lower = upper + side * mo[f"elbow_{tag}"]
        body[f"{name}_hand"] = body[f"{name}_elbow"] + ch.forearm * _down(lower)
        hip = np.array([side * ch.hip_w, 0.0])
        thigh = side * mo[f"hip_{tag}"]
        body[f"{name}_hip"] = np.broadcast_to(hip, neck.shape)
        body[f"{name}_knee"] = hip + ch.thigh * _down(thigh)
        shin = thigh - side * mo[f"knee_{tag}"]  # knees point outwards, feet come back in
        body[f"{name}_foot"] = body[f"{name}_knee"] + ch.shin * _down(shin)
        body[f"{name}_toe"] = body[f"{name}_foot"] + ch.foot * _down(shin + side * 1.4)
    joints = {name: origin + unit[:, None] * p for name, p in body.items()}
    joints.update(
        unit=unit,
        zoom=zoom,
        camera=camera,
        head_angle=head_angle,
        yaw=mo["yaw"],
        mouth=mo["mouth"],
        eyes=mo["eyes"],
    )
    return joints


class _Shape(NamedTuple):
    """A primitive restricted to its bounding box: signed distance ``sd`` in pixels
    (negative inside) and local coordinates u, v (pixels) for texturing."""

    rows: slice
    cols: slice
    sd: np.ndarray
    u: np.ndarray
    v: np.ndarray


class _Canvas:
    """A float RGB frame that composites antialiased shapes back to front and keeps,
    for each marker painted so far, the part of its disc that is still unoccluded."""

    def __init__(self, image: np.ndarray) -> None:
        self.image = image
        self.xs = np.arange(image.shape[1], dtype=np.float64)
        self.ys = np.arange(image.shape[0], dtype=np.float64)
        self.markers: list[tuple[int, float, slice, slice, np.ndarray]] = []

    def _box(self, x0: float, x1: float, y0: float, y1: float):
        c0, c1 = max(math.floor(x0), 0), min(math.ceil(x1) + 1, len(self.xs))
        r0, r1 = max(math.floor(y0), 0), min(math.ceil(y1) + 1, len(self.ys))
        if c0 >= c1 or r0 >= r1:
            return None
        return slice(r0, r1), slice(c0, c1), self.xs[None, c0:c1], self.ys[r0:r1, None]

    def capsule(self, a: np.ndarray, b: np.ndarray, r: float) -> _Shape | None:
        """Segment a-b thickened by radius r; u runs along it from a, v across."""
        pad = r + 1.0
        box = self._box(
            min(a[0], b[0]) - pad,
            max(a[0], b[0]) + pad,
            min(a[1], b[1]) - pad,
            max(a[1], b[1]) + pad,
        )
        if box is None:
            return None
        rows, cols, x, y = box
        length = max(math.hypot(b[0] - a[0], b[1] - a[1]), 1e-6)
        ux, uy = (b[0] - a[0]) / length, (b[1] - a[1]) / length
        px, py = x - a[0], y - a[1]
        u = px * ux + py * uy
        v = py * ux - px * uy
        return _Shape(rows, cols, np.hypot(u - np.clip(u, 0.0, length), v) - r, u, v)

    def ellipse(self, c: np.ndarray, rx: float, ry: float, angle: float = 0.0) -> _Shape | None:
        """Ellipse with radii rx, ry turned by ``angle``; u, v in its own frame."""
        pad = max(rx, ry) + 1.0
        box = self._box(c[0] - pad, c[0] + pad, c[1] - pad, c[1] + pad)
        if box is None:
            return None
        rows, cols, x, y = box
        ca, sa = math.cos(angle), math.sin(angle)
        px, py = x - c[0], y - c[1]
        u, v = px * ca - py * sa, px * sa + py * ca
        # First-order distance estimate |p/r| - 1 over its gradient: exact for circles,
        # accurate enough near the edge of an ellipse for antialiasing.
        k0 = np.hypot(u / rx, v / ry)
        k1 = np.hypot(u / rx**2, v / ry**2)
        sd = np.where(k1 > 1e-9, k0 * (k0 - 1.0) / np.maximum(k1, 1e-9), -min(rx, ry))
        return _Shape(rows, cols, sd, u, v)

    def paint(
        self,
        shape: _Shape | None,
        colour: _Texture | np.ndarray,
        unit: float = 1.0,
        outline: np.ndarray | None = None,
        outline_w: float = 0.0,
    ) -> None:
        """Composite ``shape`` over the frame with coverage = clip(0.5 - sd, 0, 1)."""
        if shape is None:
            return
        alpha = np.clip(0.5 - shape.sd, 0.0, 1.0)
        fill = colour.shade(shape.u, shape.v, unit) if isinstance(colour, _Texture) else colour
        if outline is not None and outline_w > 0.0:
            inner = np.clip(0.5 - shape.sd - outline_w, 0.0, 1.0)[..., None]
            fill = outline + inner * (fill - outline)
        region = self.image[shape.rows, shape.cols]
        region += alpha[..., None] * (fill - region)
        top, left = shape.rows.start, shape.cols.start
        for _, _, rows, cols, coverage in self.markers:
            r0, r1 = max(rows.start, top), min(rows.stop, shape.rows.stop)
            c0, c1 = max(cols.start, left), min(cols.stop, shape.cols.stop)
            if r0 < r1 and c0 < c1:
                hidden = alpha[r0 - top : r1 - top, c0 - left : c1 - left]
                coverage[r0 - rows.start : r1 - rows.start, c0 - cols.start : c1 - cols.start] *= (
                    1.0 - hidden
                )

    def marker(self, index: int, centre: np.ndarray, radius: float) -> None:
        shape = self.ellipse(centre, radius, radius)
        self.paint(shape, MARKER_COLOURS[index] / 255.0)
        if shape is not None:
            coverage = np.clip(0.5 - shape.sd, 0.0, 1.0)
            self.markers.append((index, math.pi * radius**2, shape.rows, shape.cols, coverage))

    def visible_fractions(self, count: int) -> np.ndarray:
        """(count,) fraction of each marker's disc left visible inside the frame."""
        fractions = np.zeros(count)
        for index, area, _, _, coverage in self.markers:
            fractions[index] = coverage.sum() / area
        return fractions


def _draw_character(canvas: _Canvas, ch: _Character, sk: dict[str, np.ndarray], t: int) -> None:
    unit = float(sk["unit"][t])
    at = {name: value[t] for name, value in sk.items() if value.ndim == 2}
    index = _MARKER_INDEX
    marker_r = MARKER_RADIUS * unit

    def part(shape: _Shape | None, texture: _Texture) -> None:
        canvas.paint(shape, texture, unit, ch.outline, ch.outline_w * unit)

    def arm(side: str) -> None:
        part(canvas.capsule(at[f"{side}_shoulder"], at[f"{side}_elbow"], ch.arm_r * unit), ch.shirt)
        sleeve = ch.shirt if ch.long_sleeves else ch.skin
        part(canvas.capsule(at[f"{side}_elbow"], at[f"{side}_hand"], ch.arm_r * unit), sleeve)
        part(
            canvas.ellipse(at[f"{side}_hand"], 1.4 * ch.arm_r * unit, 1.4 * ch.arm_r * unit),
            ch.skin,
        )
        for joint in ("elbow", "hand"):
            canvas.marker(index[f"{side}_{joint}"], at[f"{side}_{joint}"], marker_r)

    def leg(side: str) -> None:
        r = ch.leg_r * unit
        part(canvas.capsule(at[f"{side}_hip"], at[f"{side}_knee"], r), ch.trousers)
        shin = ch.trousers if ch.long_trousers else ch.skin
        part(canvas.capsule(at[f"{side}_knee"], at[f"{side}_foot"], 0.9 * r), shin)
        part(canvas.capsule(at[f"{side}_foot"], at[f"{side}_toe"], 0.8 * r), ch.shoes)
        for joint in ("knee", "foot"):
            canvas.marker(index[f"{side}_{joint}"], at[f"{side}_{joint}"], marker_r)

    back, front = ("left", "right") if ch.back_side < 0 else ("right", "left")
    arm(back)
    leg("left")
    leg("right")
    head_r = ch.head_r * unit
    angle = float(sk["head_angle"][t])
    part(canvas.capsule(at["neck"], at["head"], 0.35 * head_r), ch.skin)
    part(canvas.capsule(at["pelvis"], at["neck"], ch.torso_r * unit), ch.shirt)
    canvas.marker(index["chest"], at["chest"], marker_r)
    if ch.hair is not None:
        up = np.array([math.sin(angle), -math.cos(angle)])
        part(
            canvas.ellipse(at["head"] + 0.12 * head_r * up, 1.08 * head_r, 1.08 * head_r, angle),
            ch.hair,
        )
    part(canvas.ellipse(at["head"], head_r, head_r, angle), ch.skin)

    def on_face(x: float, y: float) -> np.ndarray:
        """Head-local (x, y) in head radii, turned with the head, to image pixels."""
        c, s = math.cos(angle), math.sin(angle)
        return at["head"] + head_r * np.array([x * c + y * s, -x * s + y * c])

    yaw = float(sk["yaw"][t])
    for side in (-1.0, 1.0):
        # The eye on the side the face turns away from gets narrower.
        rx = 0.13 * head_r * (1.0 + 0.3 * side * yaw)
        eye = canvas.ellipse(
            on_face(0.38 * side + 0.3 * yaw, -0.12), rx, 0.16 * head_r * float(sk["eyes"][t]), angle
        )
        canvas.paint(eye, ch.features)
    mouth_ry = head_r * (0.04 + 0.14 * float(sk["mouth"][t]))
    canvas.paint(
        canvas.ellipse(on_face(0.3 * yaw, 0.5), 0.3 * head_r, mouth_ry, angle), ch.features
    )
    canvas.marker(index["head"], at["nose"], marker_r)
    arm(front)


def _render_background(bg: _Background, sk: dict[str, np.ndarray], t: int, size: int) -> np.ndarray:
    """(H, W, 3) float background seen through the camera of frame t."""
    centre = (size - 1.0) / 2.0
    zoom = float(sk["zoom"][t])
    grid = np.arange(size, dtype=np.float64)
    # World coordinates of the pixel centres: the camera's inverse transform.
    wx = ((grid - centre - sk["camera"][t, 0]) / zoom + centre)[None, :]
    wy = ((grid - centre - sk["camera"][t, 1]) / zoom + centre)[:, None]
    wall = np.broadcast_to(bg.wall.shade(wx, wy, size), (size, size, 3))
    floor = np.broadcast_to(bg.floor.shade(wx, wy, size), (size, size, 3))
    below = np.clip(0.5 + (wy - bg.horizon * size) * zoom, 0.0, 1.0)[..., None]
    return wall + below * (floor - wall)


def _clip(seed: int, size: int, num_frames: int, identity: int, clip: int
          ) -> tuple[_Character, _Background, dict[str, np.ndarray]]:
    """The character, background and skeleton (with the camera) of one clip."""
    if seed < 0 or identity < 0 or clip < 0 or size < 16 or num_frames < 1:
        raise ValueError("need seed, identity, clip >= 0, size >= 16 and num_frames >= 1")
    ch = _sample_character(np.random.default_rng((seed, 0, identity)))
    clip_rng = np.random.default_rng((seed, 1, identity, clip))
    bg = _sample_background(clip_rng)
    return ch, bg, _skeleton(ch, _sample_motion(clip_rng, num_frames), size)


def background_grid(seed: int = 0, size: int = 64, num_frames: int = 32, identity: int = 0,
                    clip: int = 0) -> np.ndarray:
    """The true backward flow of the background of a clip :func:`render_video` renders.

    Returns:
        (T, size, size, 2) float32 in [-1, 1] (x, y), align_corners=True: where each pixel
        of frame t shows, in frame 0, the same point of the background (the camera's shift
        and zoom). ``grid_sample(frame0, grid[t])`` is the ideal warp of frame 0 to frame t.
    """
    _, _, sk = _clip(seed, size, num_frames, identity, clip)
    centre = (size - 1.0) / 2.0
    pixels = np.arange(size, dtype=np.float64)
    ratio = (sk["zoom"][0] / sk["zoom"])[:, None]
    # Frame t shows world point w at pixel (w - c) * zoom[t] + c + camera[t].
    x = (pixels[None] - centre - sk["camera"][:, :1]) * ratio + centre + sk["camera"][0, 0]
    y = (pixels[None] - centre - sk["camera"][:, 1:]) * ratio + centre + sk["camera"][0, 1]
    grid = np.stack(np.broadcast_arrays(x[:, None, :], y[:, :, None]), axis=-1)
    return (grid / (size - 1) * 2 - 1).astype(np.float32)


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
    ch, bg, sk = _clip(seed, size, num_frames, identity, clip)
    frames = np.empty((num_frames, size, size, 3), dtype=np.uint8)
    visible = np.zeros((num_frames, len(MARKER_NAMES)), dtype=bool)
    for t in range(num_frames):
        canvas = _Canvas(_render_background(bg, sk, t, size))
        if character:
            _draw_character(canvas, ch, sk, t)
            visible[t] = canvas.visible_fractions(len(MARKER_NAMES)) >= VISIBLE_FRACTION
        frames[t] = np.rint(np.clip(canvas.image, 0.0, 1.0) * 255.0)
    names = ["nose" if name == "head" else name for name in MARKER_NAMES]
    keypoints = np.stack([sk[name] for name in names], axis=1).astype(np.float32)
    return Video(frames, keypoints, visible)


class _Job(NamedTuple):
    root: str
    split: str
    identity: int
    clip: int
    seed: int
    size: int
    num_frames: int


def video_name(identity: int, clip: int) -> str:
    """Directory name of a clip: ``id<identity>#<clip>`` (FOMM id_sampling convention)."""
    return f"id{identity:05d}#{clip:03d}"


def _write_video(job: _Job) -> int:
    video = render_video(job.seed, job.size, job.num_frames, job.identity, job.clip)
    folder = Path(job.root) / job.split / video_name(job.identity, job.clip)
    try:
        folder.mkdir()
        for t, frame in enumerate(video.frames):
            Image.fromarray(frame).save(folder / f"{t:06d}.png", compress_level=1)
        np.savez(
            folder.with_name(folder.name + ".npz"), keypoints=video.keypoints, visible=video.visible
        )
    except OSError as error:
        raise OutputError(f"cannot write {folder}: {error.strerror or error}") from error
    return len(video.frames)


def _prepare_root(root: Path, overwrite: bool) -> None:
    if root.exists() and not root.is_dir():
        raise OutputError(f"{root} exists and is not a directory")
    if root.is_dir() and any(root.iterdir()):
        if not overwrite:
            raise OutputError(f"{root} is not empty; use --overwrite to replace its dataset")
        for name in ("train", "test"):
            if (root / name).exists():
                shutil.rmtree(root / name)
        (root / "synthetic.json").unlink(missing_ok=True)
    try:
        for name in ("train", "test"):
            (root / name).mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"cannot write {root}: {error.strerror or error}") from error


def _plan(
    root: Path,
    num_videos: int,
    size: int,
    num_frames: int | tuple[int, int],
    seed: int,
    test_fraction: float,
    clips_per_identity: int,
) -> list[_Job]:
    """Clip ``index`` belongs to identity index // clips_per_identity; the last
    round(identities * test_fraction) identities (at least one, never all, when
    there are two or more and test_fraction > 0) go to test."""
    identities = math.ceil(num_videos / clips_per_identity)
    test_ids = round(identities * test_fraction)
    if identities >= 2 and test_fraction > 0:
        test_ids = min(max(test_ids, 1), identities - 1)
    jobs = []
    for index in range(num_videos):
        identity, clip = divmod(index, clips_per_identity)
        length = num_frames
        if isinstance(num_frames, tuple):
            length = int(
                np.random.default_rng((seed, 2, identity, clip)).integers(
                    num_frames[0], num_frames[1] + 1
                )
            )
        split = "test" if identity >= identities - test_ids else "train"
        jobs.append(_Job(str(root), split, identity, clip, seed, size, length))
    return jobs


def generate_dataset(
    root: str | Path,
    num_videos: int,
    size: int = 64,
    num_frames: int | tuple[int, int] = 32,
    seed: int = 0,
    test_fraction: float = 0.2,
    clips_per_identity: int = 4,
    workers: int = 1,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> DatasetSummary:
    """Write ``num_videos`` clips under ``root`` in the training layout (module docstring).

    Args:
        root: output directory; must be empty or missing unless ``overwrite``, which
            replaces its train/, test/ and synthetic.json.
        num_videos: number of clips (>= 1).
        size: frame height and width in pixels (>= 16).
        num_frames: frames per clip, or an inclusive (low, high) range drawn per clip.
        seed: dataset seed (>= 0); every clip is a function of (seed, identity, clip).
        test_fraction: fraction of identities (not clips) held out for test, in [0, 1).
        clips_per_identity: clips of each character (>= 1).
        workers: processes rendering in parallel; the output does not depend on it.
        progress: called as progress(done, total) after each clip.

    Raises:
        OutputError: ``root`` is not empty (without ``overwrite``) or not writable.
    """
    low, high = num_frames if isinstance(num_frames, tuple) else (num_frames, num_frames)
    if num_videos < 1 or size < 16 or not 1 <= low <= high or seed < 0:
        raise ValueError("need num_videos >= 1, size >= 16, 1 <= frames (low <= high), seed >= 0")
    if not 0.0 <= test_fraction < 1.0 or clips_per_identity < 1 or workers < 1:
        raise ValueError("need 0 <= test_fraction < 1, clips_per_identity >= 1, workers >= 1")
    start = time.perf_counter()
    root = Path(root)
    _prepare_root(root, overwrite)
    jobs = _plan(root, num_videos, size, num_frames, seed, test_fraction, clips_per_identity)
    frames = 0

    def consume(results: Iterator[int]) -> None:
        nonlocal frames
        for done, count in enumerate(results, start=1):
            frames += count
            if progress is not None:
                progress(done, len(jobs))

    if workers == 1:
        consume(map(_write_video, jobs))
    else:
        # spawn: forking a parent that already runs torch threads can deadlock.
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            consume(pool.imap_unordered(_write_video, jobs))
    info = {
        "generator": "tpsmm.data.synthetic",
        "seed": seed,
        "size": size,
        "num_frames": num_frames,
        "num_videos": num_videos,
        "test_fraction": test_fraction,
        "clips_per_identity": clips_per_identity,
        "marker_names": list(MARKER_NAMES),
        "marker_colours": MARKER_COLOURS.tolist(),
        "keypoints": "pixel (x, y); pixel centres at integers",
    }
    try:
        (root / "synthetic.json").write_text(json.dumps(info, indent=1) + "\n")
    except OSError as error:
        raise OutputError(f"cannot write {root}: {error.strerror or error}") from error
    test_videos = sum(job.split == "test" for job in jobs)
    return DatasetSummary(
        root, len(jobs) - test_videos, test_videos, frames, time.perf_counter() - start
    )
