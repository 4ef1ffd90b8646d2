"""Where the networks run and in which number format: devices and precisions.

Training and animation share these: ``fp32`` is full precision; ``bf16`` and ``fp16`` are
autocast contexts around the work that tolerates them (training: the whole step; animation:
the inpainting decoder), never the TPS solve, grids or normalisation statistics.
"""

from __future__ import annotations

import contextlib

import torch

from tpsmm.errors import TPSMMError

DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(device: str | torch.device) -> torch.device:
    """``auto`` is CUDA if there is a GPU, else Apple's MPS if present, else the CPU.

    Raises:
        TPSMMError: not a device name (``gpu``), or a CUDA or MPS device was asked for but
            this machine has none.
    """
    if str(device) != "auto":
        try:
            device = torch.device(device)
        except RuntimeError:
            raise TPSMMError(f"device {device!r}: not a device; use auto, cpu, cuda, cuda:N "
                             "or mps") from None
        available = {"cuda": torch.cuda.is_available, "mps": torch.backends.mps.is_available}
        if device.type in available and not available[device.type]():
            raise TPSMMError(f"device {device}: not available on this machine (or in this "
                             "build of torch); use --device cpu or auto")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Convolutions and matrix products in ``precision`` (fp32: a no-op context)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=PRECISIONS[precision])


def native_reduced_precision(device: torch.device, precision: str) -> bool:
    """Whether ``device`` computes ``precision`` convolutions in hardware.

    A CPU without AVX-512 BF16 / AMX (or AVX-512 FP16) runs reduced-precision convolutions
    with generic kernels. Measured on such a CPU (AVX2, 2 cores): 3-5x slower than fp32 for
    channels-last convolutions, 60x for transposed ones, two orders of magnitude for
    channels-first ones; the whole animation ~20x slower than fp32. GPUs count as native.
    """
    if precision == "fp32" or device.type != "cpu":
        return True
    check = {
        "bf16": getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None),
        "fp16": getattr(torch.ops.mkldnn, "_is_mkldnn_fp16_supported", None),
    }[precision]
    return bool(check is not None and check())
