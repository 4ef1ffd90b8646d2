"""Finding the subject: detectors' detection rate, false positives and speed; and what
crop and paste-back cost in `tpsmm animate`, as ratios in one run.

Detectors, on frames with the truth known (scikit-image's photos, no download):

- ``heads``: the astronaut's real face moving over photo backgrounds at 320x240
  (tpsmm.testing.scenes.moving_head), with frames where it is hidden;
- ``lfw``: scikit-image's LFW subset, 100 faces and 100 non-faces (25x25 each, scaled to
  100x100 and padded to 160x160 so a face detector's window fits).

Found = the surest box lies on the true head (80% of it inside the head's box, on ``heads``);
a false positive is any box on a frame without a face. Then animation with the shipped demo
model of a character inside a 224x160 scene: fitted whole (``--crop none``) against
``--crop box`` with paste-back, and ``--crop face`` on the moving head (one more pass to
find the tubes). Also: the tubes' scene-cut score on the heads (motion, the head appearing,
cuts), and paste-back's L1 against a scene's truth, animated against the still source.

    python benchmarks/crop.py
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _common import cpu_description
from PIL import Image

from tpsmm.animation import Animator
from tpsmm.data.video import open_video, open_writer
from tpsmm.demo import CHECKPOINT_NAME, CONFIG, assets_dir
from tpsmm.framing.boxes import Rect
from tpsmm.framing.detectors import Detection, FaceDetector, make_detector
from tpsmm.framing.tubes import SCENE_CUT_THRESHOLD, thumbnail
from tpsmm.testing.scenes import CHARACTER_BOX, Shot, character_in_scene, moving_head


class HaarFaces:
    """OpenCV's Haar cascade (frontalface_default), the other candidate measured."""

    def __init__(self) -> None:
        import cv2

        self._cv2 = cv2
        self._cascade = cv2.CascadeClassifier(
            cv2.data.haarcascades + "haarcascade_frontalface_default.xml")

    def __call__(self, image: np.ndarray) -> list[Detection]:
        grey = self._cv2.cvtColor(image, self._cv2.COLOR_RGB2GRAY)
        found = self._cascade.detectMultiScale(grey, 1.1, 5)
        return [Detection(Rect(x, y, x + w, y + h), 1.0) for x, y, w, h in found]


def head_frames() -> tuple[np.ndarray, list[Rect | None]]:
    shots = [Shot("coffee", 30, (20, 30), (3.0, 1.0)), Shot("chelsea", 30, (200, 100), (-2.0, 0.0)),
             Shot("rocket", 30, (120, 60), (0.0, 0.5), hidden=range(10, 30))]
    return moving_head(shots)


def lfw_frames() -> tuple[np.ndarray, list[bool]]:
    from skimage import data

    images = data.lfw_subset()  # 100 faces, then 100 non-faces, (25, 25) float in [0, 1]
    frames = []
    for image in images:
        big = Image.fromarray((image * 255).astype(np.uint8)).resize((100, 100), Image.BICUBIC)
        grey = np.pad(np.asarray(big), 30, mode="edge")
        frames.append(np.repeat(grey[..., None], 3, axis=2))
    return np.stack(frames), [i < 100 for i in range(len(images))]


def measure(detector, frames: np.ndarray, truth: list) -> tuple[float, float, float, float]:
    """(found rate, false positive rate, ms a frame, size jitter): the mean change of the
    surest box's width from frame to frame where the true head keeps its size (px)."""
    found = false = 0
    started = time.perf_counter()
    results = [detector(frame) for frame in frames]
    seconds = time.perf_counter() - started
    for result, true in zip(results, truth, strict=True):
        if not true:
            false += bool(result)
        elif isinstance(true, Rect):  # the surest box lies on the head (hair to chin)
            box = result[0].rect if result else None
            inside = box and Rect(max(box.x0, true.x0), max(box.y0, true.y0),
                                  min(box.x1, true.x1), min(box.y1, true.y1))
            found += bool(box) and inside.width > 0 and inside.height > 0 \
                and inside.area > 0.8 * box.area
        else:
            found += bool(result)
    faces = sum(1 for t in truth if t)
    widths = [r[0].rect.width if r and t else np.nan for r, t in zip(results, truth, strict=True)]
    changes = np.abs(np.diff(widths))
    changes = changes[~np.isnan(changes)]
    jitter = changes.mean() if isinstance(truth[0], Rect) and len(changes) else np.nan
    return found / faces, false / (len(truth) - faces), 1e3 * seconds / len(frames), jitter


def scene_cut_scores(frames: np.ndarray) -> np.ndarray:
    """The tubes' cut score between consecutive frames (tpsmm.framing.tubes)."""
    small = [thumbnail(frame) for frame in frames]
    return np.array([np.abs(b - a).mean() for a, b in zip(small, small[1:], strict=False)])


def paste_back_l1(animator: Animator, folder: Path, seed: int, identity: int) -> tuple:
    """L1 (8-bit levels) against the true scene of a character animated in its window and
    pasted back, and of the still source pasted back (the scene's first frame)."""
    scene = character_in_scene(32, seed=seed, identity=identity)
    Image.fromarray(scene[0]).save(folder / "source.png")
    with open_writer(folder / "driving.mp4", 25) as writer:
        writer.write(scene)
    animator.animate(folder / "source.png", folder / "driving.mp4", folder / "pasted",
                     crop=CHARACTER_BOX)
    pasted = np.stack(list(open_video(folder / "pasted"))).astype(np.float64)
    return np.abs(pasted - scene).mean(), np.abs(scene[:1].astype(np.float64) - scene).mean()


def animate_seconds(animator: Animator, source: Path, driving: Path, out: Path, crop: str,
                    repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        animator.animate(source, driving, out, crop=crop)
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"on {cpu_description()}")

    sets = {"heads (320x240)": head_frames(), "lfw (160x160)": lfw_frames()}
    # Found on these sets alike; dlib's HOG is the face detector for its install size
    # (dlib-bin 11 MB; OpenCV 160 MB, needed only for bodies).
    detectors = {"dlib HOG, upsample 1 (face)": make_detector("face"),
                 "dlib HOG, upsample 0": FaceDetector(upsample=0),
                 "OpenCV Haar cascade": HaarFaces()}
    print(f"{'detector':30} {'set':16} {'found':>6} {'false+':>7} {'ms/frame':>9} "
          f"{'size jitter px':>15}")
    for name, detector in detectors.items():
        for set_name, (frames, truth) in sets.items():
            found, false, ms, jitter = measure(detector, frames, truth)
            print(f"{name:30} {set_name:16} {found:6.0%} {false:7.0%} {ms:9.1f} {jitter:15.2f}")

    frames, truth = sets["heads (320x240)"]
    scores = scene_cut_scores(frames)
    cuts = [29, 59]  # between the three 30-frame shots
    appear = [i for i in range(len(truth) - 1)
              if (truth[i] is None) != (truth[i + 1] is None)]
    motion = [i for i in range(len(scores)) if i not in cuts and i not in appear]
    print(f"\nscene-cut score (threshold {SCENE_CUT_THRESHOLD}): motion within a shot up to "
          f"{scores[motion].max():.3f}, the head appearing or vanishing up to "
          f"{scores[appear].max():.3f}, cuts at least {scores[cuts].min():.3f}")

    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        scene = character_in_scene(60)
        Image.fromarray(scene[0]).save(folder / "scene.png")
        heads, _ = moving_head([Shot("coffee", 60, (40, 40), (1.0, 0.5))])
        Image.fromarray(heads[0]).save(folder / "head.png")
        for name, frames in (("scene.mp4", scene), ("head.mp4", heads)):
            with open_writer(folder / name, 25) as writer:
                writer.write(frames)
        animator = Animator.from_checkpoint(assets_dir() / CHECKPOINT_NAME, CONFIG, device="cpu")
        print("\npaste-back, demo model, a character in a 224x160 scene, 32 frames: L1 against "
              "the true scene, animated / still source")
        for seed, identity in ((0, 0), (1, 3), (7, 11)):
            animated, still = paste_back_l1(animator, folder, seed, identity)
            print(f"  seed {seed}, character {identity}: {animated:.3f} / {still:.3f} = "
                  f"{animated / still:.2f}x")
        runs = {
            "fitted whole (--crop none)": ("scene", "none"),
            "--crop box + paste-back": ("scene", CHARACTER_BOX),
            "--crop face + paste-back": ("head", "face"),
        }
        times = {label: animate_seconds(animator, folder / f"{stem}.png", folder / f"{stem}.mp4",
                                        folder / "out.mp4", crop, args.repeats)
                 for label, (stem, crop) in runs.items()}
    base = times["fitted whole (--crop none)"]
    print(f"\nanimate 60 frames, demo model (64x64), best of {args.repeats}:")
    for label, seconds in times.items():
        print(f"  {label:30} {seconds:6.2f} s  {seconds / base:5.2f}x")


if __name__ == "__main__":
    main()
