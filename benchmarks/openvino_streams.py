"""OpenVINO's streams: one stream of every thread against one stream per thread.

The OpenVINO engine (:class:`tpsmm.deploy.engines.GraphEngine`) cuts each batch between
its streams and runs the parts at once, each through all the graphs of a call. This times
the per-frame graphs (keypoint detector, then the generator's four) of the vox-256 model
with the golden rule weights at 256x256 on batches of the golden driving frames, with
one stream of all threads and with the default of one stream per thread, interleaved,
best round kept, in fp32 and (where the CPU has it) bf16, and checks that both give the
same frames.

    python benchmarks/openvino_streams.py               # batch 4, 5 rounds
    python benchmarks/openvino_streams.py --batch 8 --rounds 3
"""

from __future__ import annotations

import os

# As in animate.py: passive OpenMP waiting on a shared machine (set before torch loads).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import importlib  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _common import cpu_description, load_average  # noqa: E402

from tpsmm import TPSMM, load_config  # noqa: E402
from tpsmm.deploy.engines import GraphEngine, openvino_capabilities  # noqa: E402
from tpsmm.deploy.onnx_export import export_onnx  # noqa: E402
from tpsmm.testing.golden import fill_with_rule  # noqa: E402

GOLDEN = Path(__file__).resolve().parents[1] / "tests" / "data" / "vox-256.npz"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=4, help="frames per batch (default 4)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    args = parser.parse_args(argv)

    model = TPSMM(load_config("vox-256"))
    for name, network in model.networks.items():
        if network is not None:
            fill_with_rule(network, name)
    model.bg_predictor = None
    golden = np.load(GOLDEN)
    source = torch.from_numpy(golden["input.source"])[:1]
    pair = torch.from_numpy(np.concatenate([golden["input.driving"],
                                            golden["input.driving_initial"]]))
    driving = pair.repeat(-(-args.batch // len(pair)), 1, 1, 1)[: args.batch]
    threads = torch.get_num_threads()
    precisions = ["fp32"]
    if "BF16" in openvino_capabilities(importlib.import_module("openvino")):
        precisions.append("bf16")
    print(f"device: cpu ({cpu_description()})")
    print(f"vox-256, 256x256, golden rule weights, batch {args.batch}, {threads} threads, "
          f"best of {args.rounds} interleaved rounds; load average {load_average()} before")

    with tempfile.TemporaryDirectory(prefix="tpsmm-streams-") as folder:
        export_onnx(model, folder)
        engines = {(precision, streams): GraphEngine(folder, "openvino", precision, threads,
                                                     streams)
                   for precision in precisions for streams in (1, threads)}
        maps = engines["fp32", 1].encode(source)
        kp_source = engines["fp32", 1].keypoints(source)
        frames, seconds = {}, {key: [] for key in engines}

        def frame_work(engine: GraphEngine) -> torch.Tensor:
            return engine.generate(source, kp_source, engine.keypoints(driving), maps)

        for engine in engines.values():  # warm-up
            frame_work(engine)
        for _ in range(args.rounds):
            for key, engine in engines.items():
                started = time.perf_counter()
                frames[key] = frame_work(engine)
                seconds[key].append(time.perf_counter() - started)

    print(f"\n{'precision':10s} {'1 stream s/frame':>17s} {f'{threads} streams s/frame':>18s} "
          f"{'speed-up':>9s} {'max |diff|':>11s}")
    for precision in precisions:
        one, many = (min(seconds[precision, s]) / args.batch for s in (1, threads))
        difference = (frames[precision, 1] - frames[precision, threads]).abs().max().item()
        print(f"{precision:10s} {one:17.3f} {many:18.3f} {one / many:8.2f}x {difference:11.1e}")
    print(f"load average {load_average()} after the runs")


if __name__ == "__main__":
    main()
