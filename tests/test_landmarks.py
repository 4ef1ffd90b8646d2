"""dlib's face landmarks and embedding, offline: --find-best-frame and reconstruct's
dlib-68 / dlib-resnet metrics."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from test_animate import _frame_dir

from tpsmm import TPSMM, load_config
from tpsmm.animation import Animator
from tpsmm.animation.best_frame import DlibFaceLandmarks, load_face_landmarks, shape_distance
from tpsmm.checkpoint_file import atomic_save
from tpsmm.cli import main
from tpsmm.data.video import open_writer
from tpsmm.errors import MissingExtraError
from tpsmm.evaluation.extractors import build_extractors
from tpsmm.framing.boxes import crop_window
from tpsmm.framing.detectors import make_detector
from tpsmm.framing.landmarks import DlibFaceEmbedding, DlibLandmarks
from tpsmm.testing.golden import fill_with_rule
from tpsmm.testing.scenes import ASTRONAUT_HEAD, Shot, moving_head

skimage_data = pytest.importorskip("skimage.data")
pytest.importorskip("dlib")
if importlib.util.find_spec("face_recognition_models") is None:
    pytest.skip("needs pip install 'tpsmm[landmarks]'", allow_module_level=True)
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def landmarks() -> DlibLandmarks:
    return DlibLandmarks()


def _head(size: int = 256, angle: float = 0.0, scale: float = 1.0) -> np.ndarray:
    """The astronaut's head at ``size`` pixels, turned by ``angle`` degrees in the image
    plane and zoomed by ``scale`` about its centre: ``(size, size, 3)`` uint8."""
    x0, y0, x1, y1 = ASTRONAUT_HEAD
    head = Image.fromarray(skimage_data.astronaut()).crop((x0 - 20, y0, x1 + 20, y1))
    head = head.rotate(angle, resample=Image.Resampling.BICUBIC)
    width, height = head.size
    crop = (width / 2 * (1 - 1 / scale), height / 2 * (1 - 1 / scale),
            width / 2 * (1 + 1 / scale), height / 2 * (1 + 1 / scale))
    return np.asarray(head.resize((size, size), Image.Resampling.BICUBIC, box=crop))


def test_68_landmarks_lie_on_the_face_in_order(landmarks):
    astronaut = skimage_data.astronaut()
    points = landmarks(astronaut)
    assert points.shape == (68, 2)
    detector = make_detector("face")
    box = detector(astronaut)[0].rect
    window = crop_window(box, detector.margin, detector.lift)
    assert (points[:, 0] > window.left).all() and (points[:, 0] < window.left + window.width).all()
    assert (points[:, 1] > window.top).all() and (points[:, 1] < window.top + window.height).all()
    eyes, nose_tip, mouth = points[36:48, 1].mean(), points[30, 1], points[48:68, 1].mean()
    assert eyes < nose_tip < mouth
    assert landmarks(skimage_data.coffee()) is None


def test_the_pose_closest_to_the_source_is_the_same_pose_at_another_size(landmarks):
    source = landmarks(_head())
    frames = [_head(angle=20), _head(scale=1.2), _head(angle=-15)]
    distances = [shape_distance(source, landmarks(frame)) for frame in frames]
    assert int(np.argmin(distances)) == 1, distances


def test_find_best_frame_uses_dlib_landmarks_offline(tmp_path, tiny_case):
    """A 256-px model (golden rule weights, tiny widths): the reference frame is chosen by
    dlib's landmarks, named so, when face_alignment is not installed."""
    assert importlib.util.find_spec("face_alignment") is None
    config = {"image_size": 256, "model_params": tiny_case.meta["model_params"]}
    model = TPSMM(load_config(config))
    for name, network in model.networks.items():
        if network is not None:
            fill_with_rule(network, name)
    atomic_save(model.checkpoint_dict(epoch=0), tmp_path / "model.pth.tar")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    animator = Animator.from_checkpoint(tmp_path / "model.pth.tar", tmp_path / "config.yaml",
                                        device="cpu")
    assert isinstance(load_face_landmarks(torch.device("cpu")), DlibFaceLandmarks)
    frames = [_head(angle=20), _head(angle=-15), _head(scale=1.15), _head(angle=10)]
    result = animator.animate(_head(), _frame_dir(tmp_path / "driving", frames),
                              tmp_path / "out", find_best_frame=True)
    assert (result.best_frame, result.best_frame_by) == (2, "dlib-68 face landmarks")


def test_the_face_embedding_tells_one_face_from_its_copy_and_no_face(landmarks):
    embedding = DlibFaceEmbedding(landmarks)
    one, same = embedding(_head()), embedding(_head(scale=1.2, angle=5))
    other = embedding(_head(angle=180))  # upside down: not found as a face
    assert one.shape == (128,) and np.linalg.norm(one - same) < 0.3  # dlib's "same": < 0.6
    assert other is None


def test_missing_models_say_what_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "face_recognition_models"
                        else real(name, *a))
    with pytest.raises(MissingExtraError, match=r"pip install 'tpsmm\[landmarks\]'"):
        DlibLandmarks()
    assert DlibFaceLandmarks.load(torch.device("cpu")) is None
    _, _, absent = build_extractors(["dlib-68", "dlib-resnet"], ".")
    assert "tpsmm[landmarks]" in absent["dlib-68"] and "tpsmm[landmarks]" in absent["dlib-resnet"]


def test_reconstruct_reports_dlib_metrics_under_their_names(tmp_path, capsys):
    """copy-source on a face video: AKD is how far the head moved; the identity is the
    same face (a small AED), measured only on the frames where both have a face."""
    root = tmp_path / "faces"
    frames, _ = moving_head([Shot("coffee", 6, (60, 40), (4.0, 0.0), hidden=range(5, 6))],
                            height=220, width=260, head_width=150)
    (root / "test").mkdir(parents=True)
    (root / "train").mkdir()
    with open_writer(root / "test" / "head.mp4", 25) as writer:
        writer.write(frames)
    assert main(["reconstruct", "--baseline", "copy-source", "--data", str(root), "--metrics",
                 "dlib-68,dlib-resnet", "--out", str(tmp_path / "out"), "-q"]) == 0
    lines = capsys.readouterr().out.splitlines()
    akd = next(line for line in lines if line.strip().startswith("dlib-68:"))
    aed = next(line for line in lines if line.strip().startswith("dlib-resnet:"))
    akd_value = float(akd.split("AKD ")[1].split(",")[0])
    mkr_value = float(akd.split("MKR ")[1])
    # Frames 0-4 moved 0-16 px right of frame 0: AKD, the mean over x and y, is 4 px.
    # Frame 5 has no face in the real frame: not counted (MKR counts landmarks the
    # prediction misses) and left out of AED, which is otherwise NaN.
    assert 3.5 < akd_value < 4.5 and mkr_value == 0
    assert float(aed.split("AED ")[1]) < 0.1


def test_landmarks_and_embedding_detect_each_face_once(monkeypatch):
    """reconstruct's dlib-68 then dlib-resnet on the same frames: one detection per frame."""
    extractors = build_extractors(["dlib-68", "dlib-resnet"], ".")
    [landmark_extractor], [identity_extractor] = extractors[0], extractors[1]
    detector = landmark_extractor.landmarks.detector
    calls = []
    real_call = type(detector).__call__
    monkeypatch.setattr(type(detector), "__call__",
                        lambda self, image: calls.append(1) or real_call(self, image))
    frames = np.stack([_head(), _head(scale=1.2), _head()])
    points, found = landmark_extractor(frames)
    embeddings = identity_extractor(frames)
    assert found.all() and not np.isnan(embeddings).any()
    assert len(calls) == 2  # the first and third frame are the same image
    # What is kept is what would be found again.
    fresh = DlibLandmarks()
    assert np.array_equal(points[1], fresh(frames[1]))
