"""ONNX export and the onnxruntime / OpenVINO engines, held to the golden weights and inputs."""

from __future__ import annotations

import importlib
import json

import numpy as np
import pytest
import torch
from test_animate import _cli, _frame_dir, _model_files, _moving_frames, _read_frames, _save_png
from test_golden import ATOL, FULL_RESOLUTION_IMAGE_ATOL

from tpsmm.cli import main
from tpsmm.deploy import engines
from tpsmm.deploy.engines import GraphEngine
from tpsmm.deploy.onnx_export import GENERATOR_GRAPHS, export_onnx
from tpsmm.errors import ConfigError
from tpsmm.generator import generate
from tpsmm.geometry.tps import gauss_jordan_inverse, radial_kernel

onnxruntime = pytest.importorskip("onnxruntime")
pytest.importorskip("openvino")
pytestmark = pytest.mark.usefixtures("one_thread")


def _tps_system(kp: torch.Tensor) -> torch.Tensor:
    """The 8x8 keypoint TPS systems of ``kp: (B, K*5, 2)``, as solve_tps builds them."""
    kp = kp.reshape(kp.shape[0], -1, 5, 2)
    batch, groups, n, _ = kp.shape
    kernel = radial_kernel(torch.norm(kp.unsqueeze(-2) - kp.unsqueeze(-3), dim=-1) ** 2)
    p = torch.cat([kp, kp.new_ones(batch, groups, n, 1)], dim=-1)
    top = torch.cat([kernel, p], dim=-1)
    bottom = torch.cat([p.transpose(-1, -2), p.new_zeros(batch, groups, 3, 3)], dim=-1)
    return torch.cat([top, bottom], dim=-2) + 0.01 * torch.eye(n + 3)


@pytest.mark.parametrize("case_name", ["tiny-64", "vox-256"])
def test_gauss_jordan_inverse_is_the_inverse(case_name, tiny_case, vox_case) -> None:
    case = tiny_case if case_name == "tiny-64" else vox_case
    for key in ("kp_detector.source", "kp_detector.driving"):
        system = _tps_system(case.tensor(key))
        expected = torch.linalg.inv(system)
        error = (gauss_jordan_inverse(system) - expected).abs().max() / expected.abs().max()
        assert error < 3e-7  # measured 1.5e-7 to 2.5e-7


def _torch_outputs(model, source, driving) -> dict[str, torch.Tensor]:
    """The networks as the reference chains them for animation (no background motion)."""
    with torch.no_grad():
        kp_source = model.kp_detector(source)["fg_kp"]
        kp_driving = model.kp_detector(driving)["fg_kp"]
        generated = generate(model.dense_motion_network, model.inpainting_network,
                             source.expand_as(driving), kp_source.expand_as(kp_driving),
                             kp_driving)
        avd = model.avd_network({"fg_kp": kp_source.expand_as(kp_driving)},
                                {"fg_kp": kp_driving})["fg_kp"]
    outputs = {"kp_source": kp_source, "kp_driving": kp_driving, "avd": avd,
               "prediction": generated["prediction"], "deformed": generated["deformed"],
               "deformation": generated["motion"]["deformation"]}
    outputs.update({f"occlusion_{i}": m for i, m in enumerate(generated["occlusion_map"])})
    # The warped encoder maps, numbered as the encoder maps (the network lists them deepest
    # first).
    warped = generated["warped_encoder_maps"][::-1]
    outputs.update({f"warped_map_{i}": m for i, m in enumerate(warped)})
    return outputs


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
@pytest.mark.parametrize("case_name", ["tiny-64", pytest.param("vox-256",
                                                               marks=pytest.mark.slow)])
def test_exported_graphs_match_torch_on_the_golden_case(case_name, backend, tiny_case,
                                                        vox_case, tmp_path) -> None:
    """Every output of every graph within 1e-4 of torch's (the prediction at 256x256 as in
    test_golden): keypoints, AVD keypoints, flow, occlusion maps, warped encoder maps and
    source, prediction (source: the golden source; driving: the golden batch)."""
    case = tiny_case if case_name == "tiny-64" else vox_case
    model = case.model()
    model.bg_predictor = None
    source = case.tensor("input.source")[:1]
    driving = case.tensor("input.driving")
    expected = _torch_outputs(model, source, driving)
    manifest = json.loads(export_onnx(model, tmp_path).read_text())
    assert set(manifest["graphs"]) == {"kp_detector", "source_encoder", *GENERATOR_GRAPHS,
                                       "avd_network"}
    assert manifest["opset"] >= 16 and manifest["image_size"] == case.meta["image_size"]
    assert [name for name, graph in manifest["graphs"].items()
            if graph["reduced_precision"]] == ["dense_motion", "inpainting_decoder"]
    motion = {spec["name"]: spec for spec in manifest["graphs"]["transformations"]["inputs"]}
    assert motion["kp_driving"]["shape"][0] == "batch"
    size = case.meta["image_size"]
    assert motion["source"]["shape"] == [1, 3, size, size]

    engine = GraphEngine(tmp_path, backend)
    kp_source = engine.keypoints(source)
    kp_driving = engine.keypoints(driving)
    maps = engine.encode(source)
    inputs = {"source": source, "kp_source": kp_source, "kp_driving": kp_driving}
    inputs.update({f"encoder_map_{i}": m for i, m in enumerate(maps)})
    # The generator's graphs chained by name, every output checked.
    wanted = [name for name in expected if name not in ("kp_source", "kp_driving", "avd")]
    got = engine.run_graphs(GENERATOR_GRAPHS, inputs, wanted)
    got.update(kp_source=kp_source, kp_driving=kp_driving,
               avd=engine.avd(kp_source.expand_as(kp_driving), kp_driving))
    assert set(got) == set(expected)
    for name, value in expected.items():
        difference = (torch.as_tensor(got[name]) - value).abs().max().item()
        # The full-resolution images at 256x256 get test_golden's measured exception
        # (convolution numerics amplified by sampling a high-contrast image): measured
        # up to 1.3e-4 (OpenVINO, the warped source; the prediction 9.8e-5); everything
        # else <= 4.8e-5 but the warped encoder maps. Those are features up to ~6.6
        # sampled where they change fastest, so they are held relative to their largest
        # value: measured up to 1.5e-4 of it (OpenVINO, the 256x256 map), others <= 6.1e-5.
        image = name in ("prediction", "deformed")
        atol = FULL_RESOLUTION_IMAGE_ATOL.get(case_name, ATOL) if image else ATOL
        if name.startswith("warped_map_"):
            atol = 2.5e-4 * value.abs().max().item()
        assert difference <= atol, f"{name}: {difference:.2e}"


def test_openvino_streams_split_the_batch_without_changing_it(tiny_case, tmp_path) -> None:
    """Two streams of one thread (a batch of 3 cut into 2 and 1 frames, each through every
    generator graph) against one. The source's maps come from one engine: the source
    encoder has no batch to cut and runs in one stream of both threads."""
    model = tiny_case.model()
    model.bg_predictor = None
    export_onnx(model, tmp_path)
    source = tiny_case.tensor("input.source")[:1]
    driving = torch.cat([tiny_case.tensor("input.driving"),
                         tiny_case.tensor("input.driving_initial")])[:3]
    engines = [GraphEngine(tmp_path, "openvino", threads=threads) for threads in (1, 2)]
    maps = engines[0].encode(source)
    results = []
    for engine in engines:
        kp_source, kp_driving = engine.keypoints(source), engine.keypoints(driving)
        results.append((kp_driving, engine.generate(source, kp_source, kp_driving, maps)))
    assert results[1][1].shape == (3, 3, 64, 64)
    for one, two in zip(*results, strict=True):
        assert (one - two).abs().max() <= 1e-6  # measured: 0 for both


@pytest.fixture(scope="module")
def avd_files(tiny_case, tmp_path_factory) -> dict:
    """The tiny-64 golden model with its AVD network, as files."""
    return _model_files(tmp_path_factory.mktemp("avd"), tiny_case.meta["model_params"])


@pytest.mark.parametrize("mode", ["relative", "standard", "avd"])
@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_animate_through_each_backend_is_within_one_level_of_torch(backend, mode, avd_files,
                                                                    tmp_path) -> None:
    source = _save_png(tmp_path / "source.png", _moving_frames(1, seed=1)[0])
    driving = _frame_dir(tmp_path / "driving", _moving_frames(6))
    outputs = {}
    for name in ("torch", backend):
        outputs[name] = tmp_path / f"out-{name}"
        assert _cli(avd_files, source, driving, outputs[name], "--mode", mode, "--backend",
                    name, "--device", "cpu", "--batch-size", "4") == 0
    expected, got = _read_frames(outputs["torch"]), _read_frames(outputs[backend])
    assert got.shape == expected.shape == (6, 64, 64, 3)
    assert np.abs(got.astype(int) - expected).max() <= 1


def test_export_command_and_a_missing_runtime(avd_files, tmp_path, monkeypatch, capsys) -> None:
    assert main(["export", "--config", str(avd_files["config"]), "--checkpoint",
                 str(avd_files["checkpoint"]), "--out", str(tmp_path / "graphs")]) == 0
    files = {p.name for p in (tmp_path / "graphs").iterdir()}
    assert files == {f"{graph}.onnx" for graph in ("kp_detector", "source_encoder",
                                                   *GENERATOR_GRAPHS, "avd_network")} | {
        "manifest.json"}
    real = importlib.import_module

    def without_runtime(name, *args, **kwargs):
        if name == "onnxruntime":
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(importlib, "import_module", without_runtime)
    source = _save_png(tmp_path / "source.png", _moving_frames(1, seed=1)[0])
    capsys.readouterr()
    assert _cli(avd_files, source, _frame_dir(tmp_path / "d", _moving_frames(2)),
                tmp_path / "out.mp4", "--backend", "onnxruntime") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs the onnxruntime package: pip install" in err[0], err
    assert not (tmp_path / "out.mp4").exists()


def test_an_interrupted_export_leaves_no_manifest_over_mixed_graphs(avd_files, tmp_path,
                                                                     monkeypatch) -> None:
    """Killed while replacing an earlier export: the old manifest is gone, so nothing
    reads the folder as one model's graphs, and no temporary file is left."""
    graphs = tmp_path / "graphs"
    command = ["export", "--config", str(avd_files["config"]), "--checkpoint",
               str(avd_files["checkpoint"]), "--out", str(graphs)]
    assert main(command) == 0
    before = {p.name: p.read_bytes() for p in graphs.iterdir()}
    real_export, written = torch.onnx.export, []

    def killed_on_the_third_graph(*args, **kwargs):
        if len(written) == 2:
            args[2].write(b"part of a graph")
            raise KeyboardInterrupt
        written.append(real_export(*args, **kwargs))

    monkeypatch.setattr(torch.onnx, "export", killed_on_the_third_graph)
    assert main(command) == 130
    after = {p.name: p.read_bytes() for p in graphs.iterdir()}
    assert set(after) == set(before) - {"manifest.json"}  # no manifest, no temporary file
    assert all(after[name] == before[name] for name in after)  # each file whole
    monkeypatch.setattr(torch.onnx, "export", real_export)
    assert main(command) == 0 and (graphs / "manifest.json").read_bytes() == \
        before["manifest.json"]


def test_graph_backends_refuse_precisions_they_do_not_run(avd_files, tmp_path, capsys,
                                                         monkeypatch) -> None:
    source = _save_png(tmp_path / "source.png", _moving_frames(1, seed=1)[0])
    driving = _frame_dir(tmp_path / "d", _moving_frames(2))
    for backend, precision in (("onnxruntime", "bf16"), ("openvino", "fp16")):
        assert _cli(avd_files, source, driving, tmp_path / "o.mp4", "--backend", backend,
                    "--precision", precision) == 2
        assert f"--backend {backend} runs fp32" in capsys.readouterr().err
    # A CPU without bf16 instructions, where OpenVINO would silently run fp32.
    monkeypatch.setattr(engines, "openvino_capabilities", lambda openvino: ["FP32", "INT8"])
    assert _cli(avd_files, source, driving, tmp_path / "o.mp4", "--backend", "openvino",
                "--precision", "bf16") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs a CPU with bf16 instructions" in err[0], err
    assert not (tmp_path / "o.mp4").exists()


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return 10 * np.log10(255**2 / np.mean((a.astype(float) - b.astype(float)) ** 2))


def test_openvino_bf16_keeps_the_transforms_and_sampling_in_fp32(avd_files, tmp_path) -> None:
    """OpenVINO in bf16 against fp32 torch: measured 54.3 dB, as the torch engine's bf16
    (54.4 dB): both run the dense motion network's hourglass and the inpainting decoder in
    bf16 (54.9 dB before the graphs' residual blocks took Winograd's F(2, 3)). With every
    graph in bf16 it was 31.4 dB (the TPS solves and the sampling grids in bf16). On a CPU
    without bf16 instructions: the one-line refusal (also tested above on any CPU)."""
    source = _save_png(tmp_path / "source.png", _moving_frames(1, seed=1)[0])
    driving = _frame_dir(tmp_path / "driving", _moving_frames(6))
    if "BF16" not in engines.openvino_capabilities(importlib.import_module("openvino")):
        assert _cli(avd_files, source, driving, tmp_path / "o.mp4", "--backend", "openvino",
                    "--precision", "bf16") == 2
        return
    frames = {}
    for backend, precision in (("torch", "fp32"), ("torch", "bf16"), ("openvino", "bf16")):
        out = tmp_path / f"{backend}-{precision}"
        assert _cli(avd_files, source, driving, out, "--backend", backend, "--precision",
                    precision, "--device", "cpu", "--batch-size", "4") == 0
        frames[backend, precision] = _read_frames(out)
    reference = frames["torch", "fp32"]
    torch_bf16 = _psnr(frames["torch", "bf16"], reference)
    openvino_bf16 = _psnr(frames["openvino", "bf16"], reference)
    assert torch_bf16 > 52 and openvino_bf16 > 52, (torch_bf16, openvino_bf16)


def test_crop_and_paste_back_through_openvino(tmp_path) -> None:
    """The engine sits behind the Animator: a cut window animated by OpenVINO and pasted
    back into a 224x160 scene is within one level of torch's."""
    pytest.importorskip("skimage")
    from test_animate_crop import DEMO, _write

    from tpsmm.testing.scenes import CHARACTER_BOX, character_in_scene

    scene = character_in_scene(6, seed=2, identity=1)
    source = _save_png(tmp_path / "source.png", scene[0])
    driving = _write(tmp_path / "scene.mp4", scene)
    outputs = {}
    for backend in ("torch", "openvino"):
        assert _cli(DEMO, source, driving, tmp_path / backend, "--crop", CHARACTER_BOX,
                    "--backend", backend, "--device", "cpu") == 0
        outputs[backend] = _read_frames(tmp_path / backend).astype(int)
    assert outputs["openvino"].shape == scene.shape
    assert np.abs(outputs["openvino"] - outputs["torch"]).max() <= 1  # measured: 1


def test_graph_folders_that_do_not_fit_are_one_line(tiny_case, tmp_path) -> None:
    """No manifest, a broken one, or graphs of another manifest version (an export by an
    older tpsmm, whose generator was two graphs): ConfigError naming the folder."""
    export_onnx(tiny_case.model(), tmp_path)
    manifest = tmp_path / "manifest.json"
    written = json.loads(manifest.read_text())
    cases = {"no manifest.json; write the graphs with tpsmm export": None,
             "manifest.json: unreadable": "{not json",
             "manifest version 2, this tpsmm runs version 3: export them again":
                 json.dumps(dict(written, version=2))}
    for message, text in cases.items():
        manifest.unlink(missing_ok=True)
        if text is not None:
            manifest.write_text(text)
        with pytest.raises(ConfigError, match=message) as raised:
            GraphEngine(tmp_path, "onnxruntime")
        assert str(tmp_path) in str(raised.value) and "\n" not in str(raised.value)
    manifest.write_text(json.dumps(written))
    assert GraphEngine(tmp_path, "onnxruntime").keypoints(
        tiny_case.tensor("input.source")[:1]).shape == (1, written["num_keypoints"], 2)
