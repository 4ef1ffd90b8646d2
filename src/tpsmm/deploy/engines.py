"""Engines: what runs the networks for the :class:`~tpsmm.animation.Animator`.

An engine does the four network calls of animation; everything around them (decoding,
fitting, the keypoint arithmetic of the modes, encoding) stays the Animator's, so every
backend streams, keeps the sound and takes the same options.

- :class:`TorchEngine` (``torch``, default): the model rewritten by
  :func:`~tpsmm.animation.inference.optimize_for_inference`, any device and precision.
- :class:`GraphEngine` (``onnxruntime``, ``openvino``): the ONNX graphs of
  :func:`~tpsmm.deploy.onnx_export.export_onnx`, exported to a temporary folder when the
  engine is made, on the CPU: fp32, or with OpenVINO the graphs that may run in reduced
  precision (the dense motion network, the inpainting decoder) in bf16.

Tensors: ``frames (B, 3, S, S)`` in [0, 1]; keypoints ``(B, K*5, 2)`` in [-1, 1]; encoder
maps as the inpainting network's ``encode`` gives them.
"""

from __future__ import annotations

import functools
import importlib
import json
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from tpsmm.animation.inference import optimize_for_inference
from tpsmm.deploy.onnx_export import GENERATOR_GRAPHS, MANIFEST, MANIFEST_VERSION, export_onnx
from tpsmm.errors import ConfigError
from tpsmm.generator import generate
from tpsmm.model import TPSMM

BACKENDS = ("torch", "onnxruntime", "openvino")
# What each graph backend runs: OpenVINO's CPU plugin has bf16 kernels where the CPU has bf16
# instructions; onnxruntime's CPU provider has none worth having for convolutions.
_GRAPH_PRECISIONS = {"onnxruntime": ("fp32",), "openvino": ("fp32", "bf16")}


class TorchEngine:
    """The networks in torch, rewritten for inference on ``device`` in ``precision``.

    ``compile_batch``: compile the keypoint detector, dense motion and inpainting networks
    with ``torch.compile`` for batches of this many frames (smaller ones are padded to it,
    so that no other shape is ever compiled). Compiled code cannot call NNPACK, so the
    direct convolutions are kept; the source encoder, run once, stays eager.
    """

    def __init__(self, model: TPSMM, device: torch.device, precision: str,
                 compile_batch: int | None = None) -> None:
        model.bg_predictor = None  # animation never moves the background, as the reference
        self.model = optimize_for_inference(model, device, precision,
                                            winograd=compile_batch is None)
        self.device = device
        self.precision = precision
        self.compile_batch = compile_batch
        if compile_batch is not None:
            for network in (self.model.kp_detector, self.model.dense_motion_network,
                            self.model.inpainting_network):
                network.forward = torch.compile(network.forward, dynamic=False)

    def _padded(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` with its last item repeated up to the compiled batch."""
        missing = (self.compile_batch or 0) - tensor.shape[0]
        if missing <= 0:
            return tensor
        return torch.cat([tensor, tensor[-1:].expand(missing, *tensor.shape[1:])])

    def keypoints(self, frames: torch.Tensor) -> torch.Tensor:
        return self.model.kp_detector(self._padded(frames))["fg_kp"][: frames.shape[0]]

    def encode(self, source: torch.Tensor) -> list[torch.Tensor]:
        return self.model.inpainting_network.encode(source)

    def generate(self, source: torch.Tensor, kp_source: torch.Tensor, kp_driving: torch.Tensor,
                 encoder_maps: list[torch.Tensor]) -> torch.Tensor:
        """``kp_source: (1, K*5, 2)`` -> ``(B, 3, S, S)`` fp32 in [0, 1]."""
        count = kp_driving.shape[0]
        kp_driving = self._padded(kp_driving)
        generated = generate(self.model.dense_motion_network, self.model.inpainting_network,
                             source, kp_source.expand(kp_driving.shape[0], -1, -1), kp_driving,
                             encoder_maps=encoder_maps,
                             precision=self.precision)
        return generated["prediction"][:count].float()

    def avd(self, kp_source: torch.Tensor, kp_driving: torch.Tensor) -> torch.Tensor:
        return self.model.avd_network({"fg_kp": kp_source}, {"fg_kp": kp_driving})["fg_kp"]


class GraphEngine:
    """The exported graphs run by onnxruntime or OpenVINO, on the CPU.

    Args:
        folder: a folder written by :func:`export_onnx` (its ``manifest.json``).
        backend: ``onnxruntime`` or ``openvino``.
        precision: ``fp32``, or ``bf16`` with OpenVINO on a CPU with bf16 instructions: the
            graphs the manifest marks ``reduced_precision`` (the dense motion network and
            the inpainting decoder) in bf16, every other graph in fp32.
        threads: intra-op threads (torch's count by default, as the torch engine uses).
        streams: OpenVINO's streams, which share the threads; each takes a part of every
            batch through all the graphs of a call (default: one per thread, but no more
            than ``batch_size``: measured on 2 cores only, ``benchmarks/openvino_streams.py``).
            A graph without a batch axis (the source encoder) runs in one stream.
        batch_size: the frames per batch the engine will mostly be given.
    """

    device = torch.device("cpu")

    def __init__(self, folder: str | Path, backend: str, precision: str = "fp32",
                 threads: int | None = None, streams: int | None = None,
                 batch_size: int | None = None) -> None:
        _check_runtime(backend, precision)
        self.folder = Path(folder)
        self.precision = precision
        manifest = _read_manifest(self.folder)
        threads = threads or torch.get_num_threads()
        self._inputs = {name: [i["name"] for i in graph["inputs"]]
                        for name, graph in manifest["graphs"].items()}
        self._batched = {name: {i["name"] for i in graph["inputs"] if i["shape"][0] == "batch"}
                         for name, graph in manifest["graphs"].items()}
        if backend == "onnxruntime":
            self._streams = dict.fromkeys(manifest["graphs"], 1)
            self._graphs = {name: _onnxruntime_graph(self.folder / graph["file"], threads)
                            for name, graph in manifest["graphs"].items()}
        else:
            # A graph without a batch (the source encoder's one image) gets every thread in
            # one stream.
            streams = streams or min(threads, batch_size or threads)
            self._streams = {name: streams if self._batched[name] else 1
                             for name in manifest["graphs"]}
            core = _runtime("openvino").Core()
            self._graphs = {
                name: _openvino_graph(core, self.folder / graph["file"], threads,
                                      self._streams[name],
                                      precision if graph["reduced_precision"] else "fp32")
                for name, graph in manifest["graphs"].items()}
        self._outputs = {name: [o["name"] for o in graph["outputs"]]
                         for name, graph in manifest["graphs"].items()}
        self._temporary: tempfile.TemporaryDirectory | None = None

    @classmethod
    def exporting(cls, model: TPSMM, backend: str, precision: str = "fp32",
                  batch_size: int | None = None) -> GraphEngine:
        """Export ``model`` to a temporary folder (removed with the engine) and load it."""
        _check_runtime(backend, precision)  # said before the export's seconds
        temporary = tempfile.TemporaryDirectory(prefix="tpsmm-onnx-")
        try:
            export_onnx(model, temporary.name)
            engine = cls(temporary.name, backend, precision, batch_size=batch_size)
        except BaseException:
            temporary.cleanup()
            raise
        engine._temporary = temporary
        return engine

    def run_graphs(self, graphs: Sequence[str], inputs: dict[str, torch.Tensor],
                   wanted: list[str]) -> dict[str, torch.Tensor]:
        """Run ``graphs`` in order, each taking its inputs by name from ``inputs`` and the
        outputs of the graphs before it; returns the ``wanted`` outputs.

        The batch (the inputs with a batch axis in the manifest) is cut into one part per
        stream, and each part goes through every graph in its own stream, so that no
        stream waits for the others between graphs and the maps passed between graphs
        are never joined into one batch.
        """
        values = {name: np.ascontiguousarray(value.detach().float().cpu().numpy())
                  for name, value in inputs.items()}
        batched = set().union(*(self._batched[graph] for graph in graphs)) & set(values)
        size = max((len(values[name]) for name in batched), default=1)
        streams = min(self._streams[graph] for graph in graphs)
        bounds = np.linspace(0, size, min(streams, size) + 1).round().astype(int)

        def run_part(stream: int, start: int, end: int) -> list[np.ndarray]:
            known = {name: value[start:end] if name in batched else value
                     for name, value in values.items()}
            for graph in graphs:
                outputs = self._graphs[graph]({n: known[n] for n in self._inputs[graph]},
                                              stream)
                known.update(zip(self._outputs[graph], outputs, strict=True))
            return [known[name] for name in wanted]

        parts = [(stream, int(bounds[stream]), int(bounds[stream + 1]))
                 for stream in range(len(bounds) - 1)]
        if len(parts) == 1:
            results = [run_part(*parts[0])]
        else:
            with ThreadPoolExecutor(len(parts) - 1) as pool:
                others = [pool.submit(run_part, *part) for part in parts[1:]]
                results = [run_part(*parts[0])] + [other.result() for other in others]
        # Joined or copied once: a graph's outputs are its request's buffers, reused by its
        # next run.
        return {name: torch.from_numpy(np.concatenate(arrays) if len(arrays) > 1
                                       else arrays[0].copy())
                for name, *arrays in zip(wanted, *results, strict=True)}

    def keypoints(self, frames: torch.Tensor) -> torch.Tensor:
        return self.run_graphs(["kp_detector"], {"image": frames}, ["kp"])["kp"]

    def encode(self, source: torch.Tensor) -> list[torch.Tensor]:
        names = self._outputs["source_encoder"]
        maps = self.run_graphs(["source_encoder"], {"source": source}, names)
        return [maps[name] for name in names]

    def generate(self, source: torch.Tensor, kp_source: torch.Tensor, kp_driving: torch.Tensor,
                 encoder_maps: list[torch.Tensor]) -> torch.Tensor:
        inputs = {"source": source, "kp_source": kp_source, "kp_driving": kp_driving}
        inputs.update({f"encoder_map_{i}": m for i, m in enumerate(encoder_maps)})
        return self.run_graphs(GENERATOR_GRAPHS, inputs, ["prediction"])["prediction"]

    def avd(self, kp_source: torch.Tensor, kp_driving: torch.Tensor) -> torch.Tensor:
        return self.run_graphs(["avd_network"], {"kp_source": kp_source,
                                                 "kp_driving": kp_driving}, ["kp"])["kp"]


def _read_manifest(folder: Path) -> dict:
    """``folder``'s manifest, or one line saying why its graphs cannot be used."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except FileNotFoundError:
        raise ConfigError(f"{folder}: no {MANIFEST}; write the graphs with tpsmm export") \
            from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(f"{folder / MANIFEST}: unreadable ({error})") from None
    version = manifest.get("version") if isinstance(manifest, dict) else None
    if version != MANIFEST_VERSION:
        raise ConfigError(f"{folder}: graphs of manifest version {version}, this tpsmm runs "
                          f"version {MANIFEST_VERSION}: export them again with tpsmm export")
    return manifest


def _runtime(backend: str):
    """The runtime package of ``backend``, or one line saying how to install it."""
    module = {"onnxruntime": "onnxruntime", "openvino": "openvino"}[backend]
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(f"--backend {backend} needs the {module} package: "
                          "pip install 'tpsmm[deploy]'") from None


def _onnxruntime_graph(path: Path, threads: int):
    """The graph at ``path`` as ``run(inputs, stream) -> outputs`` (one stream)."""
    ort = _runtime("onnxruntime")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda inputs, stream: session.run(None, inputs)


def _check_runtime(backend: str, precision: str) -> None:
    """One line if ``backend``'s package is missing or it cannot run ``precision`` here."""
    if precision not in _GRAPH_PRECISIONS[backend]:
        raise ConfigError(f"--backend {backend} runs {' or '.join(_GRAPH_PRECISIONS[backend])}, "
                          f"not {precision}; --backend torch runs every precision")
    runtime = _runtime(backend)
    if precision == "bf16" and "BF16" not in openvino_capabilities(runtime):
        # OpenVINO would silently run fp32 instead.
        raise ConfigError("--backend openvino --precision bf16 needs a CPU with bf16 "
                          "instructions (AVX-512 BF16 or AMX); this one has none: use fp32")


@functools.cache  # asked before an export and again by the engine it makes
def openvino_capabilities(openvino) -> list[str]:
    """What OpenVINO's CPU plugin can run on this CPU (``BF16``, ``FP32``, ...)."""
    return list(openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


def _openvino_graph(core, path: Path, threads: int, streams: int, precision: str):
    """The graph at ``path`` as ``run(inputs, stream) -> outputs``, compiled for ``streams``
    streams sharing ``threads`` threads, one request per stream: calls for different
    streams run at once (with a stream per thread, the small layers that parallelise
    poorly inside one request run side by side: ``benchmarks/openvino_streams.py``).
    The outputs are the request's buffers, valid until its next run."""
    # The precision is set either way: OpenVINO would otherwise run bf16 wherever it can.
    hint = {"fp32": "f32", "bf16": "bf16"}[precision]
    compiled = core.compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": hint,
                                                     "INFERENCE_NUM_THREADS": threads,
                                                     "NUM_STREAMS": streams})
    outputs = list(compiled.outputs)
    requests = [compiled.create_infer_request() for _ in range(streams)]

    def run(inputs: dict[str, np.ndarray], stream: int) -> list[np.ndarray]:
        request = requests[stream]
        # Read in place, not copied: the arrays stay alive and unchanged until it returns.
        request.infer(inputs, share_inputs=True)
        return [request.get_tensor(output).data for output in outputs]

    return run


def make_engine(model: TPSMM, backend: str, device: torch.device, precision: str,
                compile_batch: int | None = None,
                batch_size: int | None = None) -> TorchEngine | GraphEngine:
    """The engine ``backend`` names for ``model`` (which a torch engine takes over);
    ``compile_batch`` as for :class:`TorchEngine`, ``batch_size`` for :class:`GraphEngine`."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "torch":
        return TorchEngine(model, device, precision, compile_batch)
    if compile_batch is not None:
        raise ConfigError(f"--compile is for --backend torch; {backend} optimises its graphs "
                          "itself")
    if device.type != "cpu":
        raise ConfigError(f"--backend {backend} runs on the CPU here; use --backend torch "
                          "for other devices")
    return GraphEngine.exporting(model, backend, precision, batch_size)
