"""``tpsmm animate --crop``: a subject inside a larger frame cut out, animated, pasted back."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import yaml
from test_animate import _cli, _read_frames, _save_png

from tpsmm.cli import main
from tpsmm.data.video import open_writer
from tpsmm.demo import CHECKPOINT_NAME, CONFIG, assets_dir
from tpsmm.testing.scenes import CHARACTER_BOX, Shot, character_in_scene, moving_head

pytest.importorskip("skimage")
pytestmark = pytest.mark.usefixtures("one_thread")

DEMO = {"config": CONFIG, "checkpoint": assets_dir() / CHECKPOINT_NAME}


def _write(path, frames):
    with open_writer(path, 25) as writer:
        writer.write(frames)
    return path


def test_the_demo_model_animates_a_character_inside_a_scene_and_pastes_it_back(tmp_path):
    """The scene's truth is known: animated and pasted back beats the still source pasted
    back (benchmarks/crop.py: 0.69x its L1 over the whole frame, seed 0)."""
    scene = character_in_scene(32, seed=0, identity=0)
    source = _save_png(tmp_path / "source.png", scene[0])
    driving = _write(tmp_path / "scene.mp4", scene)
    assert _cli(DEMO, source, driving, tmp_path / "out", "--crop", CHARACTER_BOX) == 0
    out = _read_frames(tmp_path / "out").astype(np.float64)
    assert out.shape == scene.shape  # the source's size, not the model's 64x64
    animated = np.abs(out - scene).mean()
    still = np.abs(scene[:1].astype(np.float64) - scene).mean()
    assert animated < 0.8 * still, (animated, still)
    # Outside the window every pixel is the source's.
    outside = np.ones(scene.shape[1:3], bool)
    outside[48:112, 96:160] = False
    assert np.array_equal(out[:, outside], np.stack([scene[0][outside]] * len(out)))


def test_without_paste_back_the_crops_are_written(tmp_path):
    scene = character_in_scene(4, seed=1, identity=3)
    source = _save_png(tmp_path / "source.png", scene[0])
    driving = _write(tmp_path / "scene.mp4", scene)
    assert _cli(DEMO, source, driving, tmp_path / "out", "--crop", CHARACTER_BOX,
                "--no-paste-back") == 0
    assert _read_frames(tmp_path / "out").shape == (4, 64, 64, 3)


@pytest.fixture(scope="module")
def head_scene(tmp_path_factory):
    """A face in a 320x240 frame, a cut to another photo, and the face again."""
    pytest.importorskip("dlib")
    folder = tmp_path_factory.mktemp("heads")
    frames, _ = moving_head([Shot("coffee", 6, (60, 50), (1.0, 0.0)),
                             Shot("chelsea", 6, (170, 80), (-1.0, 0.0))])
    return _save_png(folder / "source.png", frames[0]), _write(folder / "heads.mp4", frames)


def test_relative_motion_starts_again_at_each_tube(head_scene, tmp_path):
    """At the first frame of each tube the driving keypoints equal the tube's reference, so
    the source is drawn at rest: the same picture as at frame 0."""
    source, driving = head_scene
    assert _cli(DEMO, source, driving, tmp_path / "out", "--crop", "face",
                "--no-paste-back") == 0
    out = _read_frames(tmp_path / "out")
    assert len(out) == 12
    assert np.array_equal(out[6], out[0])
    assert not np.array_equal(out[5], out[0])


def test_no_face_in_the_source_is_one_line_and_nothing_written(head_scene, tmp_path, capsys):
    from skimage import data

    _, driving = head_scene
    source = _save_png(tmp_path / "coffee.png", data.coffee())
    assert _cli(DEMO, source, driving, tmp_path / "out.mp4", "--crop", "face") == 2
    line = capsys.readouterr().err.strip()
    assert "\n" not in line and "coffee.png: no face found in the source image" in line
    assert list(tmp_path.iterdir()) == [source]


def test_a_video_where_the_face_is_never_found_is_one_line(head_scene, tmp_path, capsys):
    from skimage import data

    source, _ = head_scene
    driving = _write(tmp_path / "cup.mp4", np.repeat(data.coffee()[None, :240, :320], 5, 0))
    assert _cli(DEMO, source, driving, tmp_path / "out.mp4", "--crop", "face") == 2
    line = capsys.readouterr().err.strip()
    assert "\n" not in line and "cup.mp4: no face found in any frame" in line
    assert not (tmp_path / "out.mp4").exists()


def test_a_box_outside_the_source_is_one_line(tmp_path, capsys):
    scene = character_in_scene(3)
    source = _save_png(tmp_path / "source.png", scene[0])
    driving = _write(tmp_path / "scene.mp4", scene)
    assert _cli(DEMO, source, driving, tmp_path / "out.mp4", "--crop", "box:400,10,64,64") == 2
    line = capsys.readouterr().err.strip()
    assert "\n" not in line and "lies outside the 224x160 image" in line
    assert not (tmp_path / "out.mp4").exists()
    with pytest.raises(SystemExit):  # malformed: argparse's usage error
        _cli(DEMO, source, driving, tmp_path / "out.mp4", "--crop", "box:1,2")


def test_auto_without_the_detectors_warns_and_fits_the_frames_whole(tmp_path, capsys,
                                                                     monkeypatch):
    # A config whose data were faces (its name says vox), with dlib not installed.
    config = tmp_path / "vox-demo.yaml"
    config.write_text(yaml.safe_dump(yaml.safe_load(
        (assets_dir().parent.parent / "configs" / f"{CONFIG}.yaml").read_text())))
    monkeypatch.setitem(sys.modules, "dlib", None)
    scene = character_in_scene(3)
    source = _save_png(tmp_path / "source.png", scene[0])
    driving = _write(tmp_path / "scene.mp4", scene)
    files = {"config": config, "checkpoint": DEMO["checkpoint"]}
    assert _cli(files, source, driving, tmp_path / "out") == 0
    err = capsys.readouterr().err
    assert "warning: --crop auto: finding a face needs the dlib package: pip install " \
           "'tpsmm[crop]'" in err and err.count("\n") == 1
    assert _read_frames(tmp_path / "out").shape == (3, 64, 64, 3)
    assert main(["animate", "--config", str(config), "--checkpoint", str(DEMO["checkpoint"]),
                 "--source", str(source), "--driving", str(driving), "--output",
                 str(tmp_path / "o2"), "-q", "--crop", "face"]) == 2


def test_the_best_frame_is_found_in_each_tube(head_scene, tmp_path, capsys):
    source, driving = head_scene
    assert main(["animate", "--config", CONFIG, "--checkpoint", str(DEMO["checkpoint"]),
                 "--source", str(source), "--driving", str(driving), "--output",
                 str(tmp_path / "out"), "--crop", "face", "--find-best-frame"]) == 0
    summary = capsys.readouterr().out
    assert "reference frame" in summary and "2 tubes in the driving video" in summary
