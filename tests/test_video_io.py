"""Reading and writing videos: containers, GIFs, frame directories and strips."""

from __future__ import annotations

import inspect
import os
import tracemalloc
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from tpsmm import files
from tpsmm.checkpoint_file import atomic_save
from tpsmm.data.video import has_audio, open_video, open_writer
from tpsmm.data.video.writing import EncodingWriter
from tpsmm.errors import InputError, OutputError


def _frames(count: int, height: int = 64, width: int = 64) -> np.ndarray:
    """Smooth frames (compress well) with a bright square moving right: ``(n, H, W, 3)``."""
    y, x = np.mgrid[:height, :width]
    frames = np.empty((count, height, width, 3), np.uint8)
    for i in range(count):
        frames[i, ..., 0] = x * 255 // width
        frames[i, ..., 1] = y * 255 // height
        frames[i, ..., 2] = (i * 40) % 256
        frames[i, 8:24, 2 * i % (width - 16) :][:, :16] = 255
    return frames


def _write(path: Path, frames: np.ndarray, fps: float = 25, **options) -> Path:
    with open_writer(path, fps, **options) as writer:
        writer.write(frames[: len(frames) // 2])
        writer.write(frames[len(frames) // 2 :])
    return path


def _read_all(path: Path, **options) -> np.ndarray:
    return np.stack(list(open_video(path, **options)))


def _write_with_pyav(
    path: Path,
    frames: np.ndarray,
    fps: int = 25,
    gop: int = 250,
    audio_seconds: float = 0.0,
    rotation: int = 0,
) -> Path:
    """An H.264 file made without our writer: choose keyframes, add a 440 Hz tone, rotate."""
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=fps)
        video.height, video.width = frames.shape[1:3]
        video.pix_fmt, video.gop_size = "yuv420p", gop
        if rotation:
            video.set_display_rotation(rotation)
        audio = container.add_stream("aac", rate=44100, layout="stereo") if audio_seconds else None
        for i, array in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            frame.pts = i
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        if audio is not None:
            time = np.arange(round(audio_seconds * 44100)) / 44100
            tone = np.tile(0.3 * np.sin(2 * np.pi * 440 * time), (2, 1)).astype(np.float32)
            for start in range(0, tone.shape[1], 1024):
                chunk = av.AudioFrame.from_ndarray(
                    np.ascontiguousarray(tone[:, start : start + 1024]), format="fltp"
                )
                chunk.sample_rate, chunk.pts, chunk.time_base = 44100, start, Fraction(1, 44100)
                container.mux(audio.encode(chunk))
            container.mux(audio.encode(None))
    return path


# --------------------------------------------------------------------------- round trips


def test_mp4_round_trip_is_close(tmp_path: Path) -> None:
    frames = _frames(10)
    reader = open_video(_write(tmp_path / "a.mp4", frames))
    assert (reader.num_frames, reader.size, reader.fps) == (10, (64, 64), 25)
    assert not reader.has_audio
    decoded = _read_all(reader.path)
    assert decoded.shape == frames.shape and decoded.dtype == np.uint8
    assert np.abs(decoded.astype(int) - frames).mean() < 3


@pytest.mark.parametrize("suffix", [".mov", ".mkv"])
def test_other_containers_round_trip(tmp_path: Path, suffix: str) -> None:
    frames = _frames(6)
    reader = open_video(_write(tmp_path / f"a{suffix}", frames))
    assert reader.num_frames == 6
    assert np.abs(_read_all(reader.path).astype(int) - frames).mean() < 3


def test_odd_sizes_are_padded_by_one_pixel(tmp_path: Path) -> None:
    frames = _frames(4, 33, 47)
    decoded = _read_all(_write(tmp_path / "odd.mp4", frames))
    assert decoded.shape == (4, 34, 48, 3)
    assert np.abs(decoded[:, :33, :47].astype(int) - frames).mean() < 3


def test_gif_round_trip_keeps_frames_and_rate(tmp_path: Path) -> None:
    frames = _frames(8) // 64 * 64  # few colours: the palette holds them all
    reader = open_video(_write(tmp_path / "a.gif", frames, fps=10))
    assert reader.num_frames == 8 and reader.fps == pytest.approx(10)
    np.testing.assert_array_equal(_read_all(reader.path), frames)


def test_png_directory_round_trip_is_exact(tmp_path: Path) -> None:
    frames = _frames(5)
    out = _write(tmp_path / "frames", frames)
    assert sorted(p.name for p in out.iterdir()) == [f"{i:06d}.png" for i in range(5)]
    reader = open_video(out)
    assert (reader.num_frames, reader.fps, reader.has_audio) == (5, 25.0, False)
    np.testing.assert_array_equal(_read_all(out), frames)


def test_frame_directory_is_read_in_natural_order(tmp_path: Path) -> None:
    frames = _frames(11)
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(tmp_path / f"f{i}.png")
    (tmp_path / "notes.txt").write_text("not a frame")
    np.testing.assert_array_equal(_read_all(tmp_path), frames)  # f2 before f10


def test_frame_directory_converts_greyscale_frames(tmp_path: Path) -> None:
    Image.new("L", (8, 8), 77).save(tmp_path / "0.png")
    Image.new("RGBA", (8, 8), (1, 2, 3, 0)).save(tmp_path / "1.png")
    decoded = _read_all(tmp_path)
    assert decoded[0].tolist() == np.full((8, 8, 3), 77).tolist()
    assert decoded[1].tolist() == np.tile([1, 2, 3], (8, 8, 1)).tolist()


def test_strip_round_trip_is_exact(tmp_path: Path) -> None:
    frames = _frames(5, 32, 48)
    Image.fromarray(np.concatenate(list(frames), axis=1)).save(tmp_path / "strip.png")
    reader = open_video(tmp_path / "strip.png", frame_shape=(32, 48))
    assert (reader.num_frames, reader.size, reader.fps) == (5, (32, 48), 25.0)
    np.testing.assert_array_equal(_read_all(reader.path, frame_shape=(32, 48)), frames)
    np.testing.assert_array_equal(reader.read([4, 1]), frames[[4, 1]])


def test_strip_frames_are_square_by_default(tmp_path: Path) -> None:
    frames = _frames(3, 32, 32)
    Image.fromarray(np.concatenate(list(frames), axis=1)).save(tmp_path / "strip.png")
    np.testing.assert_array_equal(_read_all(tmp_path / "strip.png"), frames)
    with pytest.raises(InputError, match="strip.png: a 32x96 image is not a strip of 32x40"):
        open_video(tmp_path / "strip.png", frame_shape=(32, 40))


# --------------------------------------------------------------------------- rate and audio


@pytest.mark.parametrize("fps", [25, 30000 / 1001, Fraction(24000, 1001), 12.5])
def test_frame_rate_is_kept_exactly(tmp_path: Path, fps: float) -> None:
    path = _write(tmp_path / "a.mp4", _frames(4), fps=fps)
    with av.open(str(path)) as container:
        assert container.streams.video[0].average_rate == Fraction(fps).limit_denominator(1001)
    assert open_video(path).fps == pytest.approx(float(fps), rel=1e-12)


def test_audio_is_copied_and_cut_to_the_video(tmp_path: Path) -> None:
    source = _write_with_pyav(tmp_path / "src.mp4", _frames(50), audio_seconds=2.0)
    assert has_audio(source) and open_video(source).has_audio
    out = _write(tmp_path / "out.mp4", _frames(25), fps=25, audio_from=source)  # 1 second
    assert has_audio(out) and open_video(out).has_audio
    with av.open(str(out)) as container:
        audio = container.streams.audio[0]
        assert audio.codec_context.name == "aac" and audio.sample_rate == 44100
        samples = sum(frame.samples for frame in container.decode(audio=0))
    assert samples / 44100 == pytest.approx(1.0, abs=0.05)


def test_audio_start_skips_into_the_source(tmp_path: Path) -> None:
    source = _write_with_pyav(tmp_path / "src.mp4", _frames(50), audio_seconds=2.0)
    out = _write(tmp_path / "out.mp4", _frames(25), audio_from=source, audio_start=1.5)
    with av.open(str(out)) as container:
        samples = sum(frame.samples for frame in container.decode(audio=0))
    assert samples / 44100 == pytest.approx(0.5, abs=0.05)  # only half a second was left


def test_a_source_without_audio_gives_a_silent_video(tmp_path: Path) -> None:
    source = _write(tmp_path / "silent.mp4", _frames(4))
    out = _write(tmp_path / "out.mp4", _frames(4), audio_from=source)
    assert not has_audio(out)


# --------------------------------------------------------------------------- random access


def test_read_matches_iteration_for_a_directory(tmp_path: Path) -> None:
    out = _write(tmp_path / "frames", _frames(6))
    reader = open_video(out)
    frames = _read_all(out)
    np.testing.assert_array_equal(reader.read([5, 0, 3, 3]), frames[[5, 0, 3, 3]])
    assert reader.read([]).shape == (0, 64, 64, 3)


def test_read_matches_iteration_for_an_mp4(tmp_path: Path) -> None:
    path = _write_with_pyav(tmp_path / "a.mp4", _frames(40), gop=8)  # keyframes to seek to
    reader = open_video(path)
    frames = _read_all(path)
    assert len(frames) == reader.num_frames == 40
    for indices in ([0], [39], [17, 3], [9, 9, 30], [8, 16, 24]):
        np.testing.assert_array_equal(reader.read(indices), frames[indices])
    with pytest.raises(IndexError):
        reader.read([40])


def test_rotated_phone_videos_are_turned_upright(tmp_path: Path) -> None:
    frames = _frames(2, 32, 48)
    reader = open_video(_write_with_pyav(tmp_path / "r.mp4", frames, rotation=90))
    assert reader.size == (48, 32)
    upright = np.rot90(frames, 1, axes=(1, 2))
    assert np.abs(_read_all(reader.path).astype(int) - upright).mean() < 8  # wrong turns: ~100
    assert np.abs(reader.read([1]).astype(int) - upright[1:]).mean() < 8


# --------------------------------------------------------------------------- bad input


def test_truncated_mp4_yields_the_good_frames_then_fails(tmp_path: Path) -> None:
    noise = np.random.default_rng(0).integers(0, 256, (30, 64, 64, 3), dtype=np.uint8)
    path = _write(tmp_path / "cut.mp4", noise)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    reader = open_video(path)
    batches = []
    with pytest.raises(InputError, match=r"cut\.mp4: decoding failed at frame \d+ \(") as raised:
        for batch in reader.iter_batches(4):
            batches.append(batch)
    decoded = sum(len(batch) for batch in batches)
    assert 0 < decoded < 30 and f"frame {decoded} " in str(raised.value)


def test_garbage_missing_and_empty_inputs_raise_input_error(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(os.urandom(4096))
    with pytest.raises(InputError, match=r"garbage\.mp4: not a readable video \("):
        open_video(garbage)
    with pytest.raises(InputError, match=r"nope\.mp4: no such file"):
        open_video(tmp_path / "nope.mp4")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="empty: no frame images"):
        open_video(tmp_path / "empty")


def test_video_without_frames_raises_input_error(tmp_path: Path) -> None:
    path = tmp_path / "none.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width = stream.height = 64
    with pytest.raises(InputError, match=r"none\.mp4: "):
        open_video(path)


# --------------------------------------------------------------------------- streaming


def test_batches_are_streamed_not_accumulated(tmp_path: Path) -> None:
    path = _write(tmp_path / "long.mp4", _frames(300))
    batches = open_video(path).iter_batches(10)
    assert inspect.isgenerator(batches)
    tracemalloc.start()
    try:
        count = sum(len(batch) for batch in batches)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 300
    assert peak < _frames(300).nbytes / 5  # a few batches at most, not the whole video


# --------------------------------------------------------------------------- writing


@pytest.mark.parametrize("name", ["a.mp4", "a.gif", "frames"])
def test_failed_writes_leave_nothing(tmp_path: Path, name: str) -> None:
    with pytest.raises(RuntimeError), open_writer(tmp_path / name, 25) as writer:
        writer.write(_frames(3))
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["a.mp4", "a.gif", "frames"])
def test_successful_writes_leave_only_the_output(tmp_path: Path, name: str) -> None:
    _write(tmp_path / name, _frames(3))
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_output_appears_only_when_complete(tmp_path: Path) -> None:
    with open_writer(tmp_path / "a.mp4", 25) as writer:
        writer.write(_frames(3))
        assert not (tmp_path / "a.mp4").exists()
    assert (tmp_path / "a.mp4").exists()


def test_rewriting_a_frame_directory_replaces_it(tmp_path: Path) -> None:
    out = _write(tmp_path / "frames", _frames(6))
    _write(out, _frames(2))
    assert len(list(out.iterdir())) == 2


def test_unwritable_outputs_raise_output_error_at_open(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "keep.txt").write_text("precious")
    cases = {
        blocker / "a.mp4": "cannot create folder",
        blocker: "exists and is not a directory",
        tmp_path / "mine": "directory holds files other than numbered PNG frames",
        tmp_path / "a.webm": "cannot write .webm files",
    }
    for path, problem in cases.items():
        with pytest.raises(OutputError, match=f"{path}: {problem}"):
            open_writer(path, 25)
    assert (tmp_path / "mine" / "keep.txt").read_text() == "precious"


@pytest.mark.parametrize("name", ["a.mp4", "frames"])
def test_permission_denied_raises_output_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    # Simulated, since the tests may run as root, which ignores permissions.
    monkeypatch.setattr(files, "_create_unique", refuse)
    with pytest.raises(OutputError, match=f"{name}: cannot write \\(Permission denied\\)"):
        open_writer(tmp_path / name, 25)


@pytest.mark.parametrize("name", ["out.mp4", "frames"])
def test_outputs_get_the_usual_permissions(tmp_path: Path, name: str) -> None:
    """Atomic writes go through a private temporary file; the result must not stay private."""
    mask = os.umask(0o022)
    try:
        with open_writer(tmp_path / name, 25) as writer:
            writer.write(np.zeros((2, 16, 16, 3), np.uint8))
    finally:
        os.umask(mask)
    expected = 0o755 if name == "frames" else 0o644
    assert (tmp_path / name).stat().st_mode & 0o777 == expected


def test_checkpoints_get_the_usual_permissions(tmp_path: Path) -> None:
    mask = os.umask(0o022)
    try:
        atomic_save({"epoch": 1}, tmp_path / "c.pth")
    finally:
        os.umask(mask)
    assert (tmp_path / "c.pth").stat().st_mode & 0o777 == 0o644


def test_writes_never_set_the_umask(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Reading the umask means setting it process-wide, which races with other threads
    creating files; the kernel applies it to files created with 0666 and 0777 instead."""
    mask = os.umask(0o027)
    try:
        def refuse(_mask: int) -> int:
            raise AssertionError("the umask was set while writing")

        monkeypatch.setattr(os, "umask", refuse)
        for name in ("out.mp4", "frames"):
            with open_writer(tmp_path / name, 25) as writer:
                writer.write(np.zeros((2, 16, 16, 3), np.uint8))
        atomic_save({"epoch": 1}, tmp_path / "c.pth")
        monkeypatch.undo()
    finally:
        os.umask(mask)
    assert (tmp_path / "out.mp4").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "frames").stat().st_mode & 0o777 == 0o750
    assert (tmp_path / "c.pth").stat().st_mode & 0o777 == 0o640


def test_a_failed_encoder_setup_leaves_no_container_behind(tmp_path: Path) -> None:
    """The container was opened, then adding its stream failed: both it and its temporary
    file stayed."""
    class Encoder(EncodingWriter):
        def _write(self, frames: np.ndarray) -> None:
            raise AssertionError("never reached")

    with pytest.raises(OutputError, match=r"out\.mp4: cannot write"):
        Encoder(tmp_path / "out.mp4", "no-such-codec", Fraction(25), {})
    assert list(tmp_path.iterdir()) == []


def test_frames_a_killed_replacement_left_hidden_are_removed(tmp_path: Path) -> None:
    """A run killed between the two renames of replacing a frame folder left the old frames
    in a hidden folder that nothing ever removed."""
    stale = tmp_path / ".frames.tmp-0123456789ab-old"
    stale.mkdir()
    (stale / "000000.png").write_bytes(b"old frame")
    with open_writer(tmp_path / "frames", 25) as writer:
        writer.write(np.zeros((1, 16, 16, 3), np.uint8))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames"]
