"""The character model: an identity's proportions and looks, and the backgrounds it stands in.

Lengths are in body units (fractions of the frame size at body scale 1); colours are RGB in
[0, 1] with a chroma of at most :data:`~tpsmm.data.synthetic.markers.MAX_TEXTURE_CHROMA`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tpsmm.data.synthetic.markers import MAX_TEXTURE_CHROMA, hue_to_rgb


@dataclass(frozen=True)
class Texture:
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
class Character:
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
    skin: Texture
    hair: Texture | None
    shirt: Texture
    trousers: Texture
    shoes: Texture
    long_sleeves: bool
    long_trousers: bool
    features: np.ndarray  # colour of eyes and mouth
    outline: np.ndarray
    outline_w: float  # body units; 0 for no outline
    back_side: int  # -1 or 1: the arm drawn behind torso and head


@dataclass(frozen=True)
class Background:
    wall: Texture
    floor: Texture
    horizon: float  # frame sizes from the top


def _muted(rng: np.random.Generator, value: tuple[float, float] = (0.15, 0.95)) -> np.ndarray:
    """A random colour whose chroma stays at or below MAX_TEXTURE_CHROMA."""
    chroma = rng.uniform(0.02, MAX_TEXTURE_CHROMA)
    low = rng.uniform(value[0], value[1] - chroma)
    return low + chroma * hue_to_rgb(rng.uniform(0.0, 360.0))


def _texture(
    rng: np.random.Generator,
    kinds: tuple[str, ...],
    period: tuple[float, float],
    value: tuple[float, float] = (0.15, 0.95),
) -> Texture:
    return Texture(
        base=_muted(rng, value),
        accent=_muted(rng, value),
        kind=kinds[rng.integers(len(kinds))],
        period=rng.uniform(*period),
        angle=rng.uniform(0.0, math.pi),
        phase=rng.uniform(0.0, 2.0 * math.pi),
    )


_GARMENTS = ("plain", "stripes", "stripes", "checker", "dots", "gradient")


def sample_character(rng: np.random.Generator) -> Character:
    torso_r = rng.uniform(0.055, 0.085)
    return Character(
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


def sample_background(rng: np.random.Generator) -> Background:
    kinds = ("stripes", "checker", "dots", "gradient", "waves", "waves")
    return Background(
        wall=_texture(rng, kinds, (0.08, 0.25)),
        floor=_texture(rng, kinds, (0.08, 0.25)),
        horizon=rng.uniform(0.5, 0.85),
    )
