"""argparse types for the commands' numbers (one bad value is one line from argparse), and
the options that choose what runs the networks, shared by ``animate`` and ``serve``."""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch

from tpsmm.deploy.engines import BACKENDS
from tpsmm.devices import DEVICES, PRECISIONS, native_reduced_precision


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


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    """``--device``, ``--precision`` and ``--backend``."""
    parser.add_argument("--device", choices=DEVICES, default="auto",
                        help="auto: CUDA, else MPS, else the CPU (default)")
    parser.add_argument("--precision", choices=tuple(PRECISIONS), default="fp32",
                        help="precision of the per-frame convolutions of the dense motion and "
                        "inpainting networks, ~98%% of the work (default fp32); bf16/fp16 are "
                        "faster on GPUs and CPUs with native support, and much slower on CPUs "
                        "without")
    parser.add_argument("--backend", choices=BACKENDS, default="torch",
                        help="what runs the networks: torch (default, any device), or the "
                        "model's ONNX graphs in onnxruntime (CPU, fp32) or openvino (CPU, "
                        "fp32, or bf16 where the CPU has it: the fastest CPU path); pip "
                        "install 'tpsmm[deploy]'")


def slow_precision_warning(device: torch.device, backend: str, precision: str) -> str | None:
    """The warning for a torch precision that ``device`` runs without hardware support (the
    graph backends refuse such a precision instead), or None."""
    if backend != "torch" or native_reduced_precision(device, precision):
        return None
    return (f"this CPU has no native {precision} instructions (AVX-512 BF16/FP16 or AMX): "
            f"{precision} runs much slower than fp32 here (measured ~20x on AVX2)")
