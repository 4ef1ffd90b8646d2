"""The benchmark scripts run: ``benchmarks/gpu.py`` on its CPU path (no GPU here)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.slow(minutes=2)
def test_gpu_table_runs_on_the_cpu_path() -> None:
    command = [sys.executable, str(BENCHMARKS / "gpu.py"), "--device", "cpu", "--frames", "2",
               "--rounds", "1", "--batch-sizes", "1", "2", "--precisions", "fp32",
               "--no-compile"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, OMP_NUM_THREADS="1"), check=True)
    lines = done.stdout.splitlines()
    assert any(line.startswith("per-frame fp32 loop (reference)") for line in lines)
    for variant, against in (("fp32", "loop"), ("fp32 b1", "fp32"), ("fp32 b2", "fp32")):
        # Rows are "<label padded to 34> frames/s ratio  vs <against>: PSNR ..."
        [row] = [line for line in lines if line[:34].strip() == f"tpsmm animate {variant}"]
        psnr = float(row.split(f"vs {against}: PSNR ")[1].split(" dB")[0])
        assert psnr > 60, row  # fp32 against fp32: equal up to rounding
