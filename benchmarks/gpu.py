"""The GPU table in one run: ``benchmarks/animate.py``'s speed comparison on a CUDA device.

The reference-style per-frame loop against ``tpsmm animate`` in fp32, fp16 and bf16, each
eager and compiled (``torch.compile``), at batch sizes 4, 16 and 32, with every row's PSNR
against fp32; vox-256 at 256x256, golden rule weights, as ``benchmarks/animate.py``.

    python benchmarks/gpu.py                   # on a machine with a CUDA GPU
    python benchmarks/gpu.py --device cpu --frames 2 --batch-sizes 1 2 --precisions fp32 \\
        --no-compile                           # the CPU path (what its test runs)

Extra arguments go to ``benchmarks/animate.py`` (``--frames``, ``--rounds``, ...).
"""

from __future__ import annotations

import argparse
import sys

from animate import main as animate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda (default), or cpu to test")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "fp16", "bf16"])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[4, 16, 32])
    parser.add_argument("--no-compile", action="store_true", help="eager only")
    args, rest = parser.parse_known_args()
    argv = ["--device", args.device, "--precisions", *args.precisions, "--batch-sizes",
            *map(str, args.batch_sizes), "--backends", "--skip-rss", *rest]
    if not args.no_compile:
        argv.append("--compile")
    animate(argv)


if __name__ == "__main__":
    sys.exit(main())
