"""Engines: what runs the networks for the :class:`~tpsmm.animation.Animator`.

An engine does the four network calls of animation; everything around them (decoding,
fitting, the keypoint arithmetic of the modes, encoding) stays the Animator's, so every
backend streams, keeps the sound and takes the same options.

- :class:`TorchEngine` (``torch``, default): the model rewritten by
  :func:`~tpsmm.animation.inference.optimize_for_inference`, any device and precision.
- :class:`GraphEngine` (``onnxruntime``, ``openvino``): the ONNX graphs of
  :func:`~tpsmm.deploy.onnx_export.export_onnx`, exported to a temporary folder when the
  engine is made, on the CPU in fp32.

Tensors: ``frames (B, 3, S, S)`` in [0, 1]; keypoints ``(B, K*5, 2)`` in [-1, 1]; encoder
maps as the inpainting network's ``encode`` gives them.
"""

from __future__ import annotations

import importlib
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from tpsmm.animation.inference import optimize_for_inference
from tpsmm.deploy.onnx_export import MANIFEST, export_onnx
from tpsmm.devices import autocast
from tpsmm.errors import ConfigError
from tpsmm.generator import generate
from tpsmm.model import TPSMM

BACKENDS = ("torch", "onnxruntime", "openvino")


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
                             decoder_context=autocast(self.device, self.precision))
        return generated["prediction"][:count].float()

    def avd(self, kp_source: torch.Tensor, kp_driving: torch.Tensor) -> torch.Tensor:
        return self.model.avd_network({"fg_kp": kp_source}, {"fg_kp": kp_driving})["fg_kp"]


class GraphEngine:
    """The exported graphs run by onnxruntime or OpenVINO, on the CPU in fp32.

    Args:
        folder: a folder written by :func:`export_onnx` (its ``manifest.json``).
        backend: ``onnxruntime`` or ``openvino``.
        threads: intra-op threads (torch's count by default, as the torch engine uses).
    """

    device = torch.device("cpu")
    precision = "fp32"

    def __init__(self, folder: str | Path, backend: str, threads: int | None = None) -> None:
        self.folder = Path(folder)
        manifest = json.loads((self.folder / MANIFEST).read_text())
        threads = threads or torch.get_num_threads()
        run = {"onnxruntime": _onnxruntime_session,
               "openvino": _openvino_session}[backend]
        self._graphs = {name: run(self.folder / graph["file"], threads)
                        for name, graph in manifest["graphs"].items()}
        self._outputs = {name: [o["name"] for o in graph["outputs"]]
                         for name, graph in manifest["graphs"].items()}
        self._temporary: tempfile.TemporaryDirectory | None = None

    @classmethod
    def exporting(cls, model: TPSMM, backend: str) -> GraphEngine:
        """Export ``model`` to a temporary folder (removed with the engine) and load it."""
        _runtime(backend)  # a missing package is said before the export's seconds
        temporary = tempfile.TemporaryDirectory(prefix="tpsmm-onnx-")
        try:
            export_onnx(model, temporary.name)
            engine = cls(temporary.name, backend)
        except BaseException:
            temporary.cleanup()
            raise
        engine._temporary = temporary
        return engine

    def _run(self, graph: str, inputs: dict[str, torch.Tensor]) -> list[np.ndarray]:
        arrays = {name: np.ascontiguousarray(value.detach().float().cpu().numpy())
                  for name, value in inputs.items()}
        return self._graphs[graph](arrays)

    def keypoints(self, frames: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self._run("kp_detector", {"image": frames})[0])

    def encode(self, source: torch.Tensor) -> list[torch.Tensor]:
        return [torch.from_numpy(m) for m in self._run("source_encoder", {"source": source})]

    def generate(self, source: torch.Tensor, kp_source: torch.Tensor, kp_driving: torch.Tensor,
                 encoder_maps: list[torch.Tensor]) -> torch.Tensor:
        inputs = {"source": source, "kp_source": kp_source, "kp_driving": kp_driving}
        inputs.update({f"encoder_map_{i}": m for i, m in enumerate(encoder_maps)})
        return torch.from_numpy(self._run("generator", inputs)[0])

    def avd(self, kp_source: torch.Tensor, kp_driving: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self._run("avd_network", {"kp_source": kp_source,
                                                          "kp_driving": kp_driving})[0])


def _runtime(backend: str):
    """The runtime package of ``backend``, or one line saying how to install it."""
    module = {"onnxruntime": "onnxruntime", "openvino": "openvino"}[backend]
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(f"--backend {backend} needs the {module} package: "
                          "pip install 'tpsmm[deploy]'") from None


def _onnxruntime_session(path: Path, threads: int):
    ort = _runtime("onnxruntime")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda inputs: session.run(None, inputs)


def _openvino_session(path: Path, threads: int):
    ov = _runtime("openvino")
    core = ov.Core()
    # fp32 inference precision: OpenVINO would otherwise run bf16 on CPUs that have it.
    compiled = core.compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32",
                                                     "INFERENCE_NUM_THREADS": threads})
    outputs = list(compiled.outputs)

    def run(inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        results = compiled(inputs)
        return [np.asarray(results[output]) for output in outputs]

    return run


def make_engine(model: TPSMM, backend: str, device: torch.device, precision: str,
                compile_batch: int | None = None) -> TorchEngine | GraphEngine:
    """The engine ``backend`` names for ``model`` (which a torch engine takes over);
    ``compile_batch`` as for :class:`TorchEngine`."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "torch":
        return TorchEngine(model, device, precision, compile_batch)
    if compile_batch is not None:
        raise ConfigError(f"--compile is for --backend torch; {backend} optimises its graphs "
                          "itself")
    if device.type != "cpu" or precision != "fp32":
        raise ConfigError(f"--backend {backend} runs on the CPU in fp32 here; use --backend "
                          "torch for other devices and precisions")
    return GraphEngine.exporting(model, backend)
