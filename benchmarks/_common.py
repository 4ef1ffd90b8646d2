"""What the benchmark scripts share."""

from __future__ import annotations

import argparse
import os
import platform
import resource
from pathlib import Path

import torch

from tpsmm.demo import CHECKPOINT_NAME, CONFIG, assets_dir


def peak_rss_kib() -> int:
    """This process's peak resident memory in KiB.

    VmHWM belongs to the address space, which ``exec`` replaces; ``ru_maxrss`` is kept
    across ``exec`` on Linux, so in a child of a large parent it reports the parent's peak.
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS


def cpu_description() -> str:
    """The CPU's name, cores, torch threads and its wide-vector / bf16 instruction sets."""
    flags = set()
    name = platform.processor() or "CPU"
    if Path("/proc/cpuinfo").exists():
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and name == "CPU":
                name = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    wide = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "avx512_fp16") if f in flags]
    return f"{name}, {os.cpu_count()} cores, {torch.get_num_threads()} threads, {' '.join(wide)}"


def load_average() -> str:
    """The 1-minute load average (how busy the machine was), or "?"."""
    return Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else "?"


def add_demo_model_arguments(parser: argparse.ArgumentParser) -> None:
    """--checkpoint, --config, --threads and --no-bg, as the synthetic-data benchmarks take
    them (default: the shipped demo model)."""
    parser.add_argument("--checkpoint", default=str(assets_dir() / CHECKPOINT_NAME))
    parser.add_argument("--config", default=CONFIG)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--no-bg", action="store_true",
                        help="leave the background still even if the checkpoint has a "
                        "background predictor (as tpsmm reconstruct --no-bg)")
