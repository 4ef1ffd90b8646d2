"""``tpsmm animate`` and the Animator: golden outputs, video I/O, bad input, streaming."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
import wave
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from test_animate_inference import fake_face_alignment

from tpsmm import TPSMM, load_config
from tpsmm.animation import Animator
from tpsmm.animation.best_frame import FaceLandmarks
from tpsmm.checkpoint_file import atomic_save
from tpsmm.cli import main
from tpsmm.data.images import fit, load_image, to_tensor, to_uint8
from tpsmm.data.video import has_audio, open_video, open_writer
from tpsmm.devices import native_reduced_precision
from tpsmm.testing.golden import fill_with_rule
from tpsmm.testing.reference_loop import animate_frame_by_frame

pytestmark = pytest.mark.usefixtures("one_thread")


def _model_files(folder: Path, model_params: dict, drop: tuple[str, ...] = ()) -> dict:
    """A 64x64 config YAML and a reference-format checkpoint with rule weights in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    config = {"image_size": 64, "model_params": model_params}
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    model = TPSMM(load_config(config))
    for name, network in model.networks.items():
        if network is not None:
            fill_with_rule(network, name)
    checkpoint = {k: v for k, v in model.checkpoint_dict(epoch=0).items() if k not in drop}
    atomic_save(checkpoint, folder / "model.pth.tar")
    return {"config": folder / "config.yaml", "checkpoint": folder / "model.pth.tar",
            "model": model.eval()}


@pytest.fixture(scope="session")
def golden_files(tiny_case, tmp_path_factory) -> dict:
    """The tiny-64 golden model as files, as a user would have them."""
    return _model_files(tmp_path_factory.mktemp("golden"), tiny_case.meta["model_params"])


@pytest.fixture(scope="session")
def fast_files(tiny_case, tmp_path_factory) -> dict:
    """A smaller model still (keypoint ResNet of width 8, no background predictor)."""
    params = {**tiny_case.meta["model_params"], "kp_detector_params": {"width": 8}}
    params["common_params"] = {**params["common_params"], "bg": False}
    return _model_files(tmp_path_factory.mktemp("fast"), params)


@pytest.fixture(scope="session")
def fast_animator(fast_files) -> Animator:
    return Animator.from_checkpoint(fast_files["checkpoint"], fast_files["config"], device="cpu")


def _cli(files: dict, source: Path, driving: Path, output: Path, *options: str) -> int:
    return main(["animate", "--config", str(files["config"]), "--checkpoint",
                 str(files["checkpoint"]), "--source", str(source), "--driving", str(driving),
                 "--output", str(output), "-q", *options])


def _save_png(path: Path, image: np.ndarray | torch.Tensor) -> Path:
    """Save ``(H, W, 3)`` uint8 or a ``(3, H, W)`` float tensor in [0, 1] as a PNG."""
    if isinstance(image, torch.Tensor):
        image = to_uint8(image[None])[0]
    Image.fromarray(image).save(path)
    return path


def _frame_dir(path: Path, frames) -> Path:
    path.mkdir()
    for i, frame in enumerate(frames):
        _save_png(path / f"{i:03d}.png", frame)
    return path


def _read_frames(path: Path) -> np.ndarray:
    return np.stack(list(open_video(path)))


def _moving_frames(count: int, height: int = 64, width: int = 64, seed: int = 0) -> np.ndarray:
    """Smooth colour frames with a bright square moving right: ``(n, H, W, 3)`` uint8."""
    y, x = np.mgrid[:height, :width]
    rng = np.random.default_rng(seed)
    frames = np.empty((count, height, width, 3), np.uint8)
    for i in range(count):
        frames[i, ..., 0] = x * 255 // width
        frames[i, ..., 1] = y * 255 // height
        frames[i, ..., 2] = rng.integers(0, 256)
        left = (2 * i) % max(width - height // 4, 1)
        frames[i, height // 4 : height // 2, left : left + height // 4] = 255
    return frames


def _tone(path: Path, seconds: float, rate: int = 44100) -> Path:
    """A mono 16-bit WAV file of a 440 Hz tone."""
    time = np.arange(round(seconds * rate)) / rate
    samples = (8000 * np.sin(2 * np.pi * 440 * time)).astype("<i2")
    with wave.open(str(path), "wb") as file:
        file.setnchannels(1)
        file.setsampwidth(2)
        file.setframerate(rate)
        file.writeframes(samples.tobytes())
    return path


def _video(path: Path, frames: np.ndarray, fps: float | Fraction, audio: Path | None = None):
    with open_writer(path, fps, audio_from=audio) as writer:
        writer.write(frames)
    return path


# --------------------------------------------------------------------------- golden outputs

# The golden inputs are not 8-bit values, so PNG files of them are not the golden inputs:
# measured, 8-bit rounding of the tiny-64 inputs moves the golden model's predictions by up
# to 2.7/255 (its rule weights are far less smooth than trained ones). So the command is
# checked against the reference loop on the very 8-bit inputs it reads, and the Animator,
# which the command runs after decoding, against the golden arrays on the golden inputs.


@pytest.mark.parametrize("mode", ["standard", "relative", "avd"])
def test_cli_matches_the_reference_on_golden_weights(mode, tiny_case, golden_files, tmp_path):
    source = _save_png(tmp_path / "source.png", tiny_case.tensor("input.source")[0])
    initial, driving = tiny_case.tensor("input.driving_initial"), tiny_case.tensor("input.driving")
    frames = [initial[0], driving[0], driving[1], initial[1]]
    assert _cli(golden_files, source, _frame_dir(tmp_path / "driving", frames),
                tmp_path / "out", "--mode", mode) == 0

    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == [f"{i:06d}.png" for i in range(4)]
    output = _read_frames(tmp_path / "out").astype(int)
    read = to_tensor(_read_frames(tmp_path / "driving"))
    expected = animate_frame_by_frame(golden_files["model"], to_tensor(load_image(source)[None]),
                                   read, mode)
    assert np.abs(output - to_uint8(expected)).max() <= 1


@pytest.mark.parametrize("mode", ["standard", "relative", "avd"])
def test_animator_matches_golden_predictions_within_one_level(mode, tiny_case):
    animator = Animator(tiny_case.model(), device="cpu")
    initial, driving = tiny_case.tensor("input.driving_initial"), tiny_case.tensor("input.driving")
    golden = tiny_case.arrays[f"animate.{mode}.prediction"]
    # Relative motion is scaled by item 0's hull areas in the golden case, so the second
    # item only matches in the other modes.
    items = [0] if mode == "relative" else [0, 1]
    for item in items:
        source = animator.prepare(tiny_case.tensor("input.source")[item])
        frames = torch.stack([initial[item], driving[item]])
        frames_uint8 = to_uint8(animator.animate_frames(source, frames, mode=mode))
        error = np.abs(frames_uint8[1] / 255 - golden[item].transpose(1, 2, 0)).max()
        assert error <= 1 / 255, f"item {item}: {error * 255:.2f}/255"


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_reduced_precision_stays_close_to_fp32(precision, tiny_case):
    frames = torch.cat([tiny_case.tensor("input.driving_initial")[:1],
                        tiny_case.tensor("input.driving")])
    outputs = {}
    for name in ("fp32", precision):
        animator = Animator(tiny_case.model(), device="cpu", precision=name)
        source = animator.prepare(tiny_case.tensor("input.source")[0])
        outputs[name] = animator.animate_frames(source, frames)
    assert torch.isfinite(outputs[precision]).all()
    psnr = -10 * math.log10((outputs[precision] - outputs["fp32"]).pow(2).mean().item())
    # Measured with the dense motion network's hourglass and heads and the inpainting network
    # in reduced precision: bf16 57.8 dB, fp16 74.7 dB (AVX-512 BF16 CPU). With the
    # inpainting network alone they were 62.0 and 79.4 dB there, and bf16 1 dB less on an
    # AVX2 CPU (generic kernels), which the bf16 bound leaves room for.
    assert psnr >= {"bf16": 55.5, "fp16": 73.0}[precision], psnr


# --------------------------------------------------------------------------- videos


def test_mp4_keeps_frame_rate_and_audio(fast_files, tmp_path):
    rate = Fraction(30000, 1001)
    tone = _tone(tmp_path / "a.wav", 1)
    driving = _video(tmp_path / "driving.mp4", _moving_frames(12), rate, tone)
    source = _save_png(tmp_path / "source.png", _moving_frames(1, seed=5)[0])
    assert _cli(fast_files, source, driving, tmp_path / "out.mp4") == 0
    result = open_video(tmp_path / "out.mp4")
    assert result.fps == pytest.approx(float(rate), rel=1e-9)
    assert result.num_frames == 12 and result.size == (64, 64)
    assert has_audio(tmp_path / "out.mp4")
    with av.open(str(tmp_path / "out.mp4")) as container:
        samples = sum(frame.samples for frame in container.decode(audio=0))
    assert samples / 44100 == pytest.approx(12 / float(rate), abs=0.05)  # cut to the video


def test_other_fps_drops_the_audio_with_a_warning(fast_files, tmp_path, capsys):
    driving = _video(tmp_path / "d.mp4", _moving_frames(6), 25, _tone(tmp_path / "a.wav", 1))
    source = _save_png(tmp_path / "source.png", _moving_frames(1, seed=5)[0])
    assert _cli(fast_files, source, driving, tmp_path / "out.mp4", "--fps", "10") == 0
    assert "audio is left out" in capsys.readouterr().err
    assert open_video(tmp_path / "out.mp4").fps == pytest.approx(10)
    assert not has_audio(tmp_path / "out.mp4")


def test_gif_output_and_gif_input(fast_files, tmp_path):
    driving = _video(tmp_path / "d.gif", _moving_frames(5), 10)
    source = _save_png(tmp_path / "source.png", _moving_frames(1, seed=5)[0])
    assert _cli(fast_files, source, driving, tmp_path / "out.gif") == 0
    result = open_video(tmp_path / "out.gif")
    assert result.num_frames == 5 and result.fps == pytest.approx(10)


@pytest.mark.parametrize("fit_mode", ["crop", "pad", "stretch"])
def test_odd_and_non_square_inputs_are_fitted(fit_mode, fast_files, fast_animator, tmp_path):
    frames = _moving_frames(3, 47, 81)
    source_image = _moving_frames(1, 75, 33, seed=3)[0]
    source = _save_png(tmp_path / "source.png", source_image)
    driving = _frame_dir(tmp_path / "driving", frames)
    assert _cli(fast_files, source, driving, tmp_path / "out", "--fit", fit_mode) == 0
    output = _read_frames(tmp_path / "out")
    assert output.shape == (3, 64, 64, 3)
    # The same as fitting both inputs first and animating at the model size.
    fitted_source = fit(to_tensor(source_image[None]), 64, fit_mode)
    prepared = fast_animator.prepare(fitted_source)
    expected = fast_animator.animate_frames(prepared, fit(to_tensor(frames), 64, fit_mode))
    assert np.abs(output.astype(int) - to_uint8(expected)).max() <= 1


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "I;16"])
def test_source_images_of_any_mode_become_rgb(mode, fast_animator, tmp_path):
    grey = np.tile(np.arange(64, dtype=np.uint8)[None, :] * 4, (64, 1))
    rgb = np.stack([grey, grey[::-1], grey.T], -1)
    if mode in ("L", "LA", "I;16"):
        rgb = np.repeat(grey[..., None], 3, -1)
    image = Image.fromarray(rgb)
    if mode == "I;16":
        image = Image.fromarray(grey.astype(np.uint16) * 257)  # 16-bit, same grey levels
    elif mode == "P":
        image = image.quantize(256)
        rgb = np.asarray(image.convert("RGB"))
    else:
        image = image.convert(mode)
    path = tmp_path / "source.png"
    image.save(path)
    prepared = fast_animator.prepare(path)
    np.testing.assert_array_equal(to_uint8(prepared.image), rgb[None])


def test_results_do_not_depend_on_the_batch_size(fast_files, tmp_path):
    frames = _moving_frames(5)
    source = _moving_frames(1, seed=9)[0]
    outputs = []
    for batch_size in (1, 3):
        animator = Animator.from_checkpoint(fast_files["checkpoint"], fast_files["config"],
                                            device="cpu", batch_size=batch_size)
        out = tmp_path / f"out{batch_size}"
        result = animator.animate(source, _frame_dir(tmp_path / f"d{batch_size}", frames), out)
        assert result.frames == 5
        outputs.append(_read_frames(out).astype(int))
    assert np.abs(outputs[0] - outputs[1]).max() <= 1


def test_prepared_source_is_reused_without_recomputing(fast_animator, tmp_path, monkeypatch):
    source = fast_animator.prepare(_moving_frames(1, seed=2)[0])
    driving = _frame_dir(tmp_path / "d", _moving_frames(3))
    first = fast_animator.animate(source, driving, tmp_path / "a")

    def fail(*args, **kwargs):
        raise AssertionError("the source encoder ran again")

    monkeypatch.setattr(fast_animator.engine.model.inpainting_network, "encode", fail)
    second = fast_animator.animate(source, driving, tmp_path / "b")
    assert first.frames == second.frames == 3
    np.testing.assert_array_equal(_read_frames(tmp_path / "a"), _read_frames(tmp_path / "b"))


_PEAK_RSS = """
import sys
from pathlib import Path
from tpsmm.animation import Animator
config, checkpoint, source, driving, output = sys.argv[1:]
animator = Animator.from_checkpoint(checkpoint, config, device="cpu", batch_size=4)
result = animator.animate(source, driving, output)
status = Path("/proc/self/status").read_text().splitlines()
print(result.frames, next(int(line.split()[1]) for line in status if line.startswith("VmHWM")))
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux's VmHWM")
def test_streaming_holds_one_batch_not_the_video(fast_files, tmp_path):
    """Peak RSS of a fresh process (tracemalloc cannot see torch's tensors): 400 frames of
    256x256 (75 MiB as uint8, 300 MiB as float) cost no more than 40 frames."""
    source = _save_png(tmp_path / "source.png", _moving_frames(1, seed=2)[0])
    peaks = {}
    for count in (40, 400):
        driving = _video(tmp_path / f"{count}.mp4", _moving_frames(count, 256, 256), 25)
        done = subprocess.run(
            [sys.executable, "-c", _PEAK_RSS, str(fast_files["config"]),
             str(fast_files["checkpoint"]), str(source), str(driving),
             str(tmp_path / f"out{count}.mp4")],
            capture_output=True, text=True, check=True, timeout=300,
            env=dict(os.environ, OMP_NUM_THREADS="1"),
            # Apart from the test process: its stdin is pytest-xdist's channel.
            stdin=subprocess.DEVNULL, start_new_session=True)
        frames, peaks[count] = map(int, done.stdout.split())
        assert frames == count
    growth_mib = (peaks[400] - peaks[40]) / 1024
    # Measured +2.1 and +4.1 MiB; holding the decoded video would add at least 75 MiB.
    assert growth_mib < 12, peaks


def test_animate_keypoints_is_animate_frames_without_detection(fast_animator):
    frames = to_tensor(_moving_frames(4))
    prepared = fast_animator.prepare(frames[0])
    # The same batches as animate_frames detects on (convolutions round per batch shape).
    kp_driving, kp_first = fast_animator.keypoints(frames[1:]), fast_animator.keypoints(frames[:1])
    assert kp_driving.shape == (3, prepared.kp.shape[1], 2)
    for mode in ("relative", "standard"):
        expected = fast_animator.animate_frames(prepared, frames[1:], mode, reference=frames[:1])
        actual = fast_animator.animate_keypoints(prepared, kp_driving, kp_first, mode)
        torch.testing.assert_close(actual, expected, rtol=0, atol=0)
    with pytest.raises(ValueError, match="model size"):
        fast_animator.keypoints(frames[:, :, :32, :32])


# --------------------------------------------------------------------------- best frame


def test_best_frame_by_keypoints_is_the_source_pose(fast_animator, tmp_path):
    frames = _moving_frames(5)
    source_image = frames[3]
    driving = _frame_dir(tmp_path / "d", frames)
    result = fast_animator.animate(source_image, driving, tmp_path / "out", find_best_frame=True)
    assert (result.best_frame, result.best_frame_by) == (3, "keypoints")
    prepared = fast_animator.prepare(source_image)
    tensors = to_tensor(frames)
    expected = fast_animator.animate_frames(prepared, tensors, reference=tensors[3:4])
    assert np.abs(_read_frames(tmp_path / "out").astype(int) - to_uint8(expected)).max() <= 1


def test_best_frame_by_face_landmarks_when_available(fast_animator, tmp_path, monkeypatch):
    """Only the third-party package is replaced: our loading (its cached weights), landmark
    and distance code all run."""

    def corners(image):
        """Landmarks: the square's corners, or no face in frame 0."""
        ys, xs = np.nonzero(image.min(-1) == 255)
        if len(xs) == 0:
            return None
        return [np.array([[xs.min(), ys.min()], [xs.max(), ys.min()],
                          [xs.min(), ys.max()], [xs.max(), ys.max() + xs.min() % 7]])]

    fake_face_alignment(monkeypatch, tmp_path / "hub", corners, weights=True)
    assert isinstance(FaceLandmarks.load(torch.device("cpu")), FaceLandmarks)
    frames = _moving_frames(6)
    frames[0, frames[0].min(-1) == 255] = 0
    result = fast_animator.animate(frames[4], _frame_dir(tmp_path / "d", frames),
                                   tmp_path / "out", find_best_frame=True)
    assert (result.best_frame, result.best_frame_by) == (4, "face landmarks")


# --------------------------------------------------------------------------- bad input


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("tpsmm animate: error: ")
    return err[0]


def _nothing_left(folder: Path, keep: set[str]) -> None:
    assert {p.name for p in folder.iterdir()} == keep


@pytest.fixture()
def inputs(tmp_path) -> dict:
    return {
        "source": _save_png(tmp_path / "source.png", _moving_frames(1, seed=1)[0]),
        "driving": _frame_dir(tmp_path / "driving", _moving_frames(2)),
    }


def test_missing_inputs(fast_files, inputs, tmp_path, capsys):
    assert _cli(fast_files, tmp_path / "nope.png", inputs["driving"], tmp_path / "o") == 2
    assert "nope.png: no such file" in _error_line(capsys)
    assert _cli(fast_files, inputs["source"], tmp_path / "nope.mp4", tmp_path / "o") == 2
    assert "nope.mp4: no such file" in _error_line(capsys)
    _nothing_left(tmp_path, {"source.png", "driving"})


def test_a_source_that_is_not_an_image(fast_files, inputs, tmp_path, capsys):
    fake = tmp_path / "fake.png"
    fake.write_text("not a picture")
    assert _cli(fast_files, fake, inputs["driving"], tmp_path / "o.mp4") == 2
    assert "fake.png: not an image" in _error_line(capsys)


def test_truncated_video_names_the_frame_and_leaves_no_output(fast_files, inputs, tmp_path,
                                                                 capsys):
    noise = np.random.default_rng(0).integers(0, 256, (30, 64, 64, 3), dtype=np.uint8)
    path = _video(tmp_path / "cut.mp4", noise, 25)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert _cli(fast_files, inputs["source"], path, tmp_path / "out.mp4") == 2
    line = _error_line(capsys)
    assert "cut.mp4: decoding failed at frame " in line
    assert "nothing was written to" in line and "out.mp4" in line
    _nothing_left(tmp_path, {"source.png", "driving", "cut.mp4"})


class _DecoderDeath(BaseException):
    """Not an ``Exception``: what a decoder thread may die of beyond ordinary errors."""


class _ClosingFails:
    """Batches whose ``close()`` raises, as a decoder that fails to shut down."""

    def __init__(self, batches) -> None:
        self._batches = batches

    def __iter__(self):
        return self

    def __next__(self):
        return next(self._batches)

    def close(self) -> None:
        raise _DecoderDeath("closing the decoder failed")


def _dying_reader(path: Path, how: str):
    """The reader of ``path`` with a decoder that dies after its first batch (``how``: a
    BaseException or an unexpected Exception), or whose ``close()`` raises at the end."""
    reader = open_video(path)
    real = reader.iter_batches

    def dying(batch_size: int):
        batches = real(batch_size)
        yield next(batches)
        if how == "base-exception":
            raise _DecoderDeath("the decoder was killed")
        raise RuntimeError("libav: internal error")

    reader.iter_batches = (lambda size: _ClosingFails(real(size))) if how == "close" else dying
    return reader


@pytest.mark.parametrize("output", ["out.mp4", "frames"])
def test_sigterm_mid_video_stops_the_command_and_removes_its_temporary_output(
        output, fast_files, tmp_path):
    """``kill`` (SIGTERM) once ended the process at once, leaving the hidden temporary
    video or frame folder behind; now it stops as Ctrl-C does."""
    source = _save_png(tmp_path / "source.png", _moving_frames(1, seed=1)[0])
    driving = _video(tmp_path / "driving.mp4", _moving_frames(3000), 25)
    process = subprocess.Popen(
        [sys.executable, "-m", "tpsmm.cli", "animate", "--config", str(fast_files["config"]),
         "--checkpoint", str(fast_files["checkpoint"]), "--source", str(source),
         "--driving", str(driving), "--output", str(tmp_path / output), "-q"],
        stderr=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONWARNINGS="ignore"))
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(f".{output}.tmp-*")) and time.monotonic() < deadline:
        time.sleep(0.02)  # until the output is being written
    process.terminate()
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert stderr.strip() == "tpsmm animate: interrupted"
    _nothing_left(tmp_path, {"source.png", "driving.mp4"})


@pytest.mark.parametrize("how", ["base-exception", "exception", "close"])
def test_a_decoder_that_dies_mid_video_ends_the_command_in_one_line(
        how, fast_files, tmp_path, capsys, monkeypatch):
    """The decoder runs on a thread; however it dies, the command stops within seconds with
    one line and no output (the main loop once waited forever for a BaseException)."""
    source = _save_png(tmp_path / "source.png", _moving_frames(1, seed=1)[0])
    driving = _frame_dir(tmp_path / "driving", _moving_frames(12))
    monkeypatch.setattr("tpsmm.commands.animate.open_video",
                        lambda path: _dying_reader(Path(path), how))
    started = time.monotonic()
    assert _cli(fast_files, source, driving, tmp_path / "out.mp4", "--batch-size", "4") == 2
    assert time.monotonic() - started < 30
    line = _error_line(capsys)
    assert "driving: decoding failed" in line and "nothing was written to" in line
    _nothing_left(tmp_path, {"source.png", "driving"})


def test_unreadable_video(fast_files, inputs, tmp_path, capsys):
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(1).bytes(4096))
    assert _cli(fast_files, inputs["source"], garbage, tmp_path / "out.mp4") == 2
    assert "garbage.mp4: not a readable video" in _error_line(capsys)


@pytest.mark.parametrize("name", ["blocker/out.mp4", "out.avi"])
def test_unwritable_output(name, fast_files, inputs, tmp_path, capsys):
    (tmp_path / "blocker").write_text("a file, not a folder")
    assert _cli(fast_files, inputs["source"], inputs["driving"], tmp_path / name) == 2
    assert str(tmp_path / name) in _error_line(capsys)
    _nothing_left(tmp_path, {"source.png", "driving", "blocker"})


def test_checkpoint_config_mismatch(fast_files, inputs, tmp_path, capsys):
    args = ["animate", "--config", "vox-256", "--checkpoint", str(fast_files["checkpoint"]),
            "--source", str(inputs["source"]), "--driving", str(inputs["driving"]),
            "--output", str(tmp_path / "o.mp4")]
    assert main(args) == 2
    line = _error_line(capsys)
    assert "model.pth.tar: does not fit the config" in line and "vox-256" in line
    _nothing_left(tmp_path, {"source.png", "driving"})


def test_missing_checkpoint_and_config(fast_files, inputs, tmp_path, capsys):
    files = {**fast_files, "checkpoint": tmp_path / "none.pth.tar"}
    assert _cli(files, inputs["source"], inputs["driving"], tmp_path / "o") == 2
    assert "none.pth.tar: checkpoint not found" in _error_line(capsys)
    files = {**fast_files, "config": tmp_path / "none.yaml"}
    assert _cli(files, inputs["source"], inputs["driving"], tmp_path / "o") == 2
    assert "none.yaml: config file not found" in _error_line(capsys)


def test_avd_mode_needs_an_avd_network(tiny_case, inputs, tmp_path, capsys):
    params = {**tiny_case.meta["model_params"], "kp_detector_params": {"width": 8}}
    files = _model_files(tmp_path / "model", params, drop=("avd_network",))
    assert _cli(files, inputs["source"], inputs["driving"], tmp_path / "o", "--mode", "avd") == 2
    assert "model.pth.tar: checkpoint has no avd_network" in _error_line(capsys)
    assert not (tmp_path / "o").exists()
    files = _model_files(tmp_path / "model2", params, drop=("inpainting_network",))
    assert _cli(files, inputs["source"], inputs["driving"], tmp_path / "o") == 2
    assert "checkpoint has no inpainting_network" in _error_line(capsys)


def test_options_that_do_nothing_here_are_reported(fast_files, inputs, tmp_path, capsys):
    assert _cli(fast_files, inputs["source"], inputs["driving"], tmp_path / "o",
                "--mode", "standard", "--find-best-frame") == 0
    assert "--find-best-frame only changes --mode relative" in capsys.readouterr().err
    if not native_reduced_precision(torch.device("cpu"), "bf16"):
        assert _cli(fast_files, inputs["source"], inputs["driving"], tmp_path / "o2",
                    "--precision", "bf16", "--device", "cpu") == 0
        assert "no native bf16" in capsys.readouterr().err


def test_quiet_and_summary(fast_files, inputs, tmp_path, capsys):
    assert _cli(fast_files, inputs["source"], inputs["driving"], tmp_path / "o") == 0
    assert capsys.readouterr().out == ""
    args = ["animate", "--config", str(fast_files["config"]), "--checkpoint",
            str(fast_files["checkpoint"]), "--source", str(inputs["source"]), "--driving",
            str(inputs["driving"]), "--output", str(tmp_path / "o")]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "animate: 2 frames of 64x64 at 25 fps" in captured.out
    assert captured.err == ""  # no progress bar when stderr is not a terminal
