"""Finding the subject, the training data's crop, tubes and paste-back (tpsmm.framing)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tpsmm.data.images import Box, take_box, to_tensor
from tpsmm.errors import InputError, MissingExtraError
from tpsmm.framing.boxes import Rect, crop_window, parse_box, union
from tpsmm.framing.detectors import Detection, FixedBox, make_detector
from tpsmm.framing.paste_back import PasteBack, feather_mask, output_size
from tpsmm.framing.plan import VideoFraming, default_subject, resolve_crop, source_window
from tpsmm.framing.tubes import Scan, Tube, cover, find_tubes, scan_video
from tpsmm.testing.scenes import Shot, moving_head

skimage_data = pytest.importorskip("skimage.data")
cv2 = pytest.importorskip("cv2")
pytest.importorskip("dlib")


# --------------------------------------------------------------------------- geometry

def test_crop_window_is_the_square_around_the_subject_with_its_margin():
    # A 40x20 box: 0.1 of each side added, then the short side grown to a square.
    window = crop_window(Rect(100, 50, 140, 70), margin=0.1)
    assert window == Box(top=36, left=96, height=48, width=48)
    # Lift moves the centre up by that fraction of the side, nothing else.
    lifted = crop_window(Rect(100, 50, 140, 70), margin=0.1, lift=0.25)
    assert (lifted.top, lifted.left, lifted.height) == (24, 96, 48)


def test_a_window_leaving_the_image_is_padded_not_shifted():
    image = torch.ones(1, 3, 50, 50)
    window = crop_window(Rect(0, 10, 20, 30), margin=0.5)  # centred on (10, 20), side 40
    assert (window.left, window.top, window.width) == (-10, 0, 40)
    crop = take_box(image, window)
    # The subject stays at the centre: the part left of the image is black padding.
    assert crop[..., :10].abs().max() == 0 and crop[..., 10:].min() == 1


def test_boxes_parse_and_measure():
    assert parse_box("box:10,20,30,40") == Rect(10, 20, 40, 60)
    for bad in ("box:1,2,3", "box:-1,2,3,4", "10,20,30,40", "box:1,2,0,5"):
        with pytest.raises(ValueError):
            parse_box(bad)
    a, b = Rect(0, 0, 10, 10), Rect(5, 0, 15, 10)
    assert a.iou(b) == pytest.approx(50 / 150) and a.iou(Rect(20, 20, 30, 30)) == 0
    assert union([a, b]) == Rect(0, 0, 15, 10)


def test_each_config_has_the_subject_its_data_were_cropped_around():
    from tpsmm.config import load_config

    subjects = {name: default_subject(load_config(name))
                for name in ("vox-256", "taichi-256", "ted-384", "mgif-256", "synthetic-64")}
    assert subjects == {"vox-256": "face", "taichi-256": "body", "ted-384": "upper-body",
                        "mgif-256": None, "synthetic-64": None}


# --------------------------------------------------------------------------- detectors

def test_the_face_crop_holds_the_astronauts_whole_face():
    astronaut = skimage_data.astronaut()
    detector = make_detector("face")
    found = detector(astronaut)
    # OpenCV's Haar cascade, a detector of another kind, says where the face is.
    haar = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    (x, y, w, h), = haar.detectMultiScale(cv2.cvtColor(astronaut, cv2.COLOR_RGB2GRAY), 1.1, 5)
    assert found[0].rect.iou(Rect(x, y, x + w, y + h)) > 0.6
    window = crop_window(found[0].rect, detector.margin, detector.lift)
    outer = Rect(window.left, window.top, window.left + window.width, window.top + window.height)
    assert outer.contains(Rect(x, y, x + w, y + h))
    # As in VoxCeleb, the face fills about half the crop's width, not a fifth.
    assert 0.4 < w / window.width < 0.7


def test_photos_without_a_face_give_none():
    detector = make_detector("face")
    for name in ("coffee", "chelsea", "rocket"):
        assert detector(getattr(skimage_data, name)()) == []


def test_the_upper_body_reaches_below_the_face_and_a_box_is_given_as_is():
    astronaut = skimage_data.astronaut()
    face = make_detector("face")(astronaut)[0].rect
    body = make_detector("upper-body")(astronaut)[0].rect
    assert body.contains(face) and body.height > 3 * face.height
    box = FixedBox(Rect(1, 2, 30, 40))
    assert box(astronaut) == [Detection(Rect(1, 2, 30, 40), 1.0)]


def test_a_missing_detector_package_is_one_line_saying_what_to_install(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "dlib", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'tpsmm\[crop\]'"):
        make_detector("face")
    from tpsmm.config import load_config

    # auto: a note, and the frames are fitted whole as without a crop.
    detector, note = resolve_crop("auto", load_config("vox-256"))
    assert detector is None and "pip install 'tpsmm[crop]'" in note


# --------------------------------------------------------------------------- tubes

def _detections(*rects: Rect | None) -> Scan:
    return Scan([[] if r is None else [Detection(r, 1.0)] for r in rects],
                [False] * len(rects))


def test_a_tube_goes_on_while_the_box_overlaps_its_first_by_a_quarter():
    near = [Rect(i, 0, 10 + i, 10) for i in range(7)]  # IoU with the first: 1 .. 0.25
    far = Rect(20, 0, 30, 10)
    tubes = find_tubes(_detections(*near, far, far))
    assert [(t.start, t.stop, t.found) for t in tubes] == [(0, 7, 7), (7, 9, 2)]
    assert tubes[0].subject == Rect(0, 0, 16, 10)  # the union of its boxes


def test_short_gaps_are_bridged_long_ones_and_cuts_start_a_new_tube():
    box = Rect(0, 0, 10, 10)
    short = find_tubes(_detections(box, None, None, box), max_gap=2)
    assert [(t.start, t.stop, t.found) for t in short] == [(0, 4, 2)]
    long = find_tubes(_detections(box, None, None, None, box), max_gap=2)
    assert [(t.start, t.stop) for t in long] == [(0, 1), (4, 5)]
    scan = _detections(box, box, box)
    cut = find_tubes(Scan(scan.detections, [False, False, True]))
    assert [(t.start, t.stop) for t in cut] == [(0, 2), (2, 3)]
    # For animation, the frames between tubes join the tube before them.
    assert [(t.start, t.stop) for t in cover(long, 7)] == [(0, 4), (4, 7)]


@pytest.fixture(scope="module")
def head_video(tmp_path_factory):
    """Two shots of the astronaut's head moving in a 320x240 frame; in the second it is
    hidden for 8 frames (longer than the bridged gap) before it comes back."""
    from tpsmm.data.video import open_writer

    frames, truth = moving_head([
        Shot("coffee", 14, (40, 40), (1.5, 0.5)),
        Shot("chelsea", 22, (180, 90), (-1.0, 0.0), hidden=range(6, 20)),
    ])
    path = tmp_path_factory.mktemp("head") / "head.mp4"
    with open_writer(path, 25) as writer:
        writer.write(frames)
    return path, frames, truth


def test_tubes_follow_the_head_cover_it_and_do_not_jitter(head_video):
    from tpsmm.data.video import open_video

    path, _, truth = head_video
    detector = make_detector("face")
    scan = scan_video(open_video(path), detector)
    assert [i for i, cut in enumerate(scan.cuts) if cut] == [14]
    framing = VideoFraming.find(open_video(path), detector)
    # A new tube at the cut, and one when the head comes back after 14 frames away.
    assert [(t.start, t.stop) for t in framing.tubes] == [(0, 14), (14, 34), (34, 36)]
    for tube, window in zip(framing.tubes, framing.windows, strict=True):
        outer = Rect(window.left, window.top, window.left + window.width,
                     window.top + window.height)
        for index in range(tube.start, tube.stop):
            found = scan.detections[index]
            if found:  # the window holds the face in every frame of its tube
                assert outer.contains(found[0].rect), index
            if truth[index] is not None:  # and most of the head (hair to chin)
                head = truth[index]
                inner = Rect(max(head.x0, outer.x0), max(head.y0, outer.y0),
                             min(head.x1, outer.x1), min(head.y1, outer.y1))
                assert inner.area > 0.85 * head.area, index
    # Inside a tube the window does not move (0 px); the detector's own boxes do.
    raw = [d[0].rect for d in scan.detections[:14]]
    moved = [b.x0 - a.x0 for a, b in zip(truth[:13], truth[1:14], strict=True)]
    raw_jitter = max(abs(b.x0 - a.x0 - m) + abs(b.width - a.width)
                     for a, b, m in zip(raw[:-1], raw[1:], moved, strict=True))
    assert raw_jitter >= 2
    assert len({framing.windows[framing.tube_of(i)] for i in range(14)}) == 1


def test_a_video_without_the_subject_is_one_line(tmp_path):
    from tpsmm.data.video import open_video, open_writer

    path = tmp_path / "empty.mp4"
    with open_writer(path, 25) as writer:
        writer.write(np.repeat(skimage_data.coffee()[None, :240, :320], 4, axis=0))
    with pytest.raises(InputError, match=r"empty.mp4: no face found in any frame"):
        VideoFraming.find(open_video(path), make_detector("face"))


def test_a_source_without_the_subject_or_a_box_outside_it_is_one_line():
    coffee = skimage_data.coffee()
    with pytest.raises(InputError, match=r"coffee.png: no face found in the source image"):
        source_window(coffee, make_detector("face"), "coffee.png")
    with pytest.raises(InputError, match=r"lies outside the 600x400 image"):
        source_window(coffee, make_detector("box:700,10,50,50"), "coffee.png")


# --------------------------------------------------------------------------- paste-back

@pytest.mark.parametrize("window", [Box(40, 60, 64, 64), Box(-20, 250, 100, 100)])
def test_paste_back_changes_only_the_window_and_keeps_the_source_size(window):
    source = skimage_data.coffee()[:181, :301]  # odd sizes on purpose
    paste = PasteBack(source, window)
    crops = torch.rand(2, 3, 32, 32)
    frames = paste(crops)
    assert frames.shape == (2, 181, 301, 3) and frames.dtype == np.uint8
    outside = np.ones((181, 301), bool)
    outside[max(window.top, 0) : window.top + window.height,
            max(window.left, 0) : window.left + window.width] = False
    assert np.array_equal(frames[:, outside], np.stack([source[outside]] * 2))
    # The window's centre is the animated crop (mask 1 there).
    centre = (window.top + window.height // 2, window.left + window.width // 2)
    assert not np.array_equal(frames[0][centre], source[centre])


def test_the_feathered_mask_and_the_size_cap():
    mask = feather_mask(20, 0.25)
    assert mask.min() > 0 and mask[5:15, 5:15].min() == 1 and mask[0, 0] < 0.05
    assert output_size(3000, 4000, 1920) == (1440, 1920)
    assert output_size(300, 400, 1920) == (300, 400)
    source = to_tensor(skimage_data.coffee()[None])
    assert PasteBack((source[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8),
                     Box(0, 0, 100, 100), max_size=300).size == (200, 300)


def test_a_batch_splits_into_runs_of_its_tubes():
    rect = Rect(0, 0, 8, 8)
    framing = VideoFraming([Tube(0, 3, rect, 3), Tube(3, 5, rect, 2)],
                           [Box(0, 0, 8, 8), Box(2, 2, 8, 8)])
    frames = torch.rand(4, 3, 16, 16)
    framed, runs = framing.frame(frames, 2, 8)
    assert runs == [(0, slice(0, 1)), (1, slice(1, 4))]  # frames 2 | 3, 4, 5 (past the count)
    assert torch.equal(framed[1:], take_box(frames[1:], Box(2, 2, 8, 8)))
