"""Tests of video reconstruction: tpsmm.evaluation.reconstruction and ``tpsmm reconstruct``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from test_train import tiny_config

from tpsmm import TPSMM, load_config
from tpsmm.cli import main
from tpsmm.data.dataset import FramesDataset
from tpsmm.data.synthetic import generate_dataset
from tpsmm.errors import ConfigError
from tpsmm.evaluation.extractors import MarkerExtractor, SavedIdentityModel, build_extractors
from tpsmm.evaluation.landmarks import akd, detect_video_markers, mkr
from tpsmm.evaluation.reconstruction import reconstruct

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic dataset with 2 test videos of 6 frames at 64x64."""
    path = tmp_path_factory.mktemp("synthetic")
    generate_dataset(path, 4, size=64, num_frames=6, clips_per_identity=2, test_fraction=0.5)
    return path


def _test_split(root: Path) -> FramesDataset:
    return FramesDataset(root, is_train=False)


class MeanColour(torch.nn.Module):
    """A stand-in identity network: the mean colour of the frame."""

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return frames.mean(dim=(2, 3))


def test_copy_source_baseline(root: Path, tmp_path: Path) -> None:
    dataset = _test_split(root)
    script = tmp_path / "identity.pt2"
    batch = torch.export.Dim("batch")
    program = torch.export.export(MeanColour(), (torch.rand(2, 3, 64, 64),),
                                  dynamic_shapes=({0: batch},))
    torch.export.save(program, script)
    report = reconstruct(dataset, baseline="copy-source",
                         keypoint_extractors=[MarkerExtractor()],
                         identity_extractors=[SavedIdentityModel(script)],
                         absent={"pose": "none here"}, out_dir=tmp_path / "out")
    assert report.method == "copy-source" and [v.frames for v in report.videos] == [6, 6]
    frames = torch.cat(list(dataset.iter_frames(0)))
    expected = (frames - frames[:1]).abs().mean(dim=(1, 2, 3))
    assert report.videos[0].l1 == pytest.approx(expected.mean().item(), rel=1e-6)
    all_frames = [torch.cat(list(dataset.iter_frames(i))) for i in range(2)]
    pooled = torch.cat([(f - f[:1]).abs().mean(dim=(1, 2, 3)) for f in all_frames]).mean()
    assert report.l1 == pytest.approx(pooled.item(), rel=1e-6)
    assert set(report.metrics) == {"markers", "aed"}
    # Copying frame 0 moves no marker: AKD and MKR are frame 0's markers against each
    # frame's, pooled over both videos; AED the squared distance of their mean colours.
    real = [np.stack(list(dataset.open_video(i))) for i in range(2)]
    found = [detect_video_markers(video) for video in real]
    kp_real, found_real = (np.concatenate(column) for column in zip(*found, strict=True))
    kp_copy = np.concatenate([np.repeat(p[:1], len(p), axis=0) for p, _ in found])
    found_copy = np.concatenate([np.repeat(f[:1], len(f), axis=0) for _, f in found])
    expected_akd = akd(kp_real, found_real, kp_copy, found_copy)
    assert expected_akd > 0.5  # the characters move
    assert report.metrics["markers"]["akd"] == pytest.approx(expected_akd, rel=1e-6)
    assert report.metrics["markers"]["mkr"] == pytest.approx(mkr(found_real, found_copy))
    colours = [torch.from_numpy(v).float().div(255).mean(dim=(1, 2)) for v in real]
    expected_aed = torch.cat([((c - c[:1]) ** 2).sum(dim=1) for c in colours]).mean()
    assert report.metrics["aed"]["aed"] == pytest.approx(expected_aed.item(), rel=1e-4)
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["absent"] == {"pose": "none here"}
    assert results["videos"][1]["metrics"]["markers"].keys() == {"akd", "mkr"}
    strip = np.asarray(Image.open(tmp_path / "out" / "png" / f"{dataset.videos[0].name}.png"))
    assert strip.shape == (64, 6 * 64, 3)
    assert np.array_equal(strip[:, 128:192], strip[:, :64])  # every prediction is frame 0


def test_model_reconstruction_is_batch_independent(root: Path) -> None:
    dataset = _test_split(root)
    torch.manual_seed(0)
    model = TPSMM(load_config(tiny_config()))
    whole = reconstruct(dataset, model, batch_size=16, max_videos=1)
    pieces = reconstruct(dataset, model, batch_size=4, max_videos=1)
    assert len(whole.videos) == 1 and not model.training
    assert whole.l1 == pytest.approx(pieces.l1, rel=1e-5)
    assert whole.metrics == {} and 0 < whole.l1 < 1


def test_extractor_selection(root: Path, tmp_path: Path) -> None:
    keypoints, identities, absent = build_extractors(None, root)
    assert [e.name for e in keypoints] == ["markers"] and identities == []
    assert {"face-alignment", "pose", "aed"} <= set(absent)
    keypoints, _, absent = build_extractors(["markers"], tmp_path)
    assert keypoints == [] and "synthetic.json" in absent["markers"]
    with pytest.raises(ConfigError, match="unknown metric"):
        build_extractors(["psnr"], root)
    with pytest.raises(ConfigError, match="model or a baseline"):
        reconstruct(_test_split(root))


def test_cli_with_a_checkpoint_and_a_baseline(root: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config()))
    checkpoint = tmp_path / "model.pth.tar"
    TPSMM(load_config(config)).save_checkpoint(checkpoint, epoch=0)
    assert main(["reconstruct", "--checkpoint", str(checkpoint), "--config", str(config),
                 "--data", str(root), "--save-video", "--videos", "1", "-q"]) == 0
    out = capsys.readouterr().out
    assert "reconstruct (model): 1 videos, 6 frames: L1" in out and "markers: AKD" in out
    assert (tmp_path / "reconstruction" / "mp4" / "id00001#000.mp4").is_file()
    assert main(["reconstruct", "--baseline", "copy-source", "--data", str(root),
                 "--out", str(tmp_path / "copy"), "-q"]) == 0
    assert json.loads((tmp_path / "copy" / "results.json").read_text())["method"] == "copy-source"
    assert main(["reconstruct", "--checkpoint", str(checkpoint), "--data", str(root)]) == 2
    assert "pass --config" in capsys.readouterr().err


def _tiny_model_files(tmp_path: Path) -> tuple[Path, Path]:
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config()))
    checkpoint = tmp_path / "model.pth.tar"
    TPSMM(load_config(config)).save_checkpoint(checkpoint, epoch=0)
    return config, checkpoint


def _one_error_line(capsys: pytest.CaptureFixture) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tpsmm reconstruct: error: "), err
    return err[0]


def test_a_video_that_breaks_midway_leaves_no_video(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    """--save-video once committed the mp4 of a video that failed after some frames, under
    its final name as if complete."""
    data = tmp_path / "data"
    generate_dataset(data, 2, size=64, num_frames=6, clips_per_identity=1, test_fraction=0.5)
    [video] = [p for p in (data / "test").iterdir() if p.is_dir()]
    (video / "000004.png").write_bytes(b"not a png any more")
    config, checkpoint = _tiny_model_files(tmp_path)
    out = tmp_path / "out"
    assert main(["reconstruct", "--checkpoint", str(checkpoint), "--config", str(config),
                 "--data", str(data), "--out", str(out), "--save-video", "--batch-size", "2",
                 "-q"]) == 2
    assert "000004.png: not an image" in _one_error_line(capsys)
    assert not (out / "mp4").exists() or not any((out / "mp4").iterdir())


@pytest.mark.parametrize(("device", "message"), [
    ("gpu", "device 'gpu': not a device"),
    pytest.param("cuda", "device cuda: not available on this machine",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="has CUDA")),
])
def test_devices_are_checked_before_the_checkpoint(root: Path, tmp_path: Path, device: str,
                                                   message: str,
                                                   capsys: pytest.CaptureFixture) -> None:
    """A missing CUDA was reported as "cannot read checkpoint"; "gpu" was a traceback."""
    config, checkpoint = _tiny_model_files(tmp_path)
    assert main(["reconstruct", "--checkpoint", str(checkpoint), "--config", str(config),
                 "--data", str(root), "--device", device, "-q"]) == 2
    assert message in _one_error_line(capsys)


def test_an_unwritable_out_is_one_line_before_any_work(root: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "blocker").write_text("a file, not a folder")
    assert main(["reconstruct", "--baseline", "copy-source", "--data", str(root),
                 "--out", str(tmp_path / "blocker" / "out"), "-q"]) == 2
    assert "blocker/out: cannot write (" in _one_error_line(capsys)
