"""argparse types for the commands' numbers: one bad value is one line from argparse."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def _parse(kind: type, text: str) -> int | float:
    try:
        return kind(text)
    except ValueError:
        expected = "a whole number" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None


def at_least(minimum: int) -> Callable[[str], int]:
    """An integer >= ``minimum``."""

    def parse(text: str) -> int:
        value = _parse(int, text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


positive_int = at_least(1)
non_negative_int = at_least(0)


def positive_float(text: str) -> float:
    """A number > 0."""
    value = _parse(float, text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def fraction(text: str) -> float:
    """A number in [0, 1)."""
    value = _parse(float, text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def frame_count(text: str) -> int | tuple[int, int]:
    """``T`` or an inclusive range ``LOW-HIGH`` of frames per clip."""
    low, _, high = text.partition("-")
    try:
        bounds = (int(low), int(high or low))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected T or LOW-HIGH, got {text!r}") from None
    if not 1 <= bounds[0] <= bounds[1]:
        raise argparse.ArgumentTypeError(f"need 1 <= LOW <= HIGH, got {text!r}")
    return bounds[0] if bounds[0] == bounds[1] else bounds


def subject(*also: str) -> Callable[[str], str]:
    """A subject to find (``face``, ``body``, ``upper-body``, ``box:X,Y,W,H``) or one of
    ``also``; checked now, except whether the detector's package is installed (said later,
    in one line, with what to install)."""
    from tpsmm.errors import MissingExtraError
    from tpsmm.framing.detectors import make_detector

    def parse(text: str) -> str:
        if text not in also:
            try:
                make_detector(text)
            except ValueError as error:
                raise argparse.ArgumentTypeError(str(error)) from None
            except MissingExtraError:
                pass
        return text

    return parse
