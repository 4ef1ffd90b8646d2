"""Fuzzing the input files of ``tpsmm animate``, ``tpsmm reconstruct`` and ``tpsmm train``.

Broken files of every kind -- random bytes, valid files cut at random offsets, empty files,
wrong extensions, images whose headers claim absurd sizes -- are handed to each command in
each role: the source image and the driving video of ``animate``, the only video of a test
split (``reconstruct``) and of a train split (``train``). Every case must end in exit status
2 with one line on stderr that names the file (no traceback), and leave nothing behind.
(Cut GIFs are not tried as source images: the still of a GIF cut past its first frame is
whole.)

The cases are drawn from ``FUZZ_SEED`` (default 0); ``FUZZ_SEED=7 python -m pytest
tests/test_fuzz.py`` tries other random bytes and cut offsets.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from test_animate import _model_files, _moving_frames, _save_png
from test_train import tiny_config

from tpsmm.cli import main
from tpsmm.data.video import open_writer

pytestmark = pytest.mark.usefixtures("one_thread")

SEED = int(os.environ.get("FUZZ_SEED", "0"))
RANDOM_FILES = 6
CUTS_PER_FILE = 4
ROLES = ("source", "driving", "reconstruct", "train")


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_claiming(width: int, height: int) -> bytes:
    """A well-formed PNG whose header claims ``width`` x ``height`` but holds 16 bytes."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header)
            + _chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + _chunk(b"IEND", b""))


def _gif_claiming(width: int, height: int) -> bytes:
    screen = b"GIF89a" + struct.pack("<HHBBB", width, height, 0, 0, 0)
    image = b"," + struct.pack("<HHHHB", 0, 0, width, height, 0) + b"\x02\x02\x44\x01\x00"
    return screen + image + b";"


def _valid_files(folder: Path) -> dict[str, bytes]:
    """A small mp4, png and gif, to cut and rename."""
    frames = _moving_frames(8)
    for name in ("valid.mp4", "valid.gif"):
        with open_writer(folder / name, 25) as writer:
            writer.write(frames)
    Image.fromarray(frames[0]).save(folder / "valid.png")
    return {name: (folder / name).read_bytes() for name in ("valid.mp4", "valid.gif",
                                                             "valid.png")}


def _cases(folder: Path) -> list[tuple[str, bytes]]:
    """(file name, contents) of every broken input, drawn from :data:`SEED`."""
    rng = np.random.default_rng(SEED)
    valid = _valid_files(folder)
    cases = [(f"empty{suffix}", b"") for suffix in (".png", ".mp4", ".gif")]
    suffixes = (".png", ".jpg", ".mp4", ".gif", ".mov", ".webm")
    for index in range(RANDOM_FILES):
        size = int(rng.integers(1, 8192))
        cases.append((f"random{index}{suffixes[index % len(suffixes)]}", rng.bytes(size)))
    for name, data in valid.items():
        for offset in sorted(rng.integers(1, len(data) - 1, size=CUTS_PER_FILE)):
            cases.append((f"cut{offset}-{name}", data[:offset]))
    cases += [
        ("mp4-named.png", valid["valid.mp4"]),
        ("text-named.mp4", b"a text file, not a video\n" * 20),
        ("text-named.png", b"a text file, not an image\n" * 20),
        ("zeros.mp4", bytes(4096)),
        ("bomb.png", _png_claiming(100_000, 100_000)),
        ("wide.png", _png_claiming(65_535, 1)),
        ("bomb.gif", _gif_claiming(65_535, 65_535)),
    ]
    return cases


CASE_COUNT = 3 + RANDOM_FILES + 3 * CUTS_PER_FILE + 7
# The cut GIFs' places in _cases (after the cut mp4s): not tried as source images.
CUT_GIFS = range(3 + RANDOM_FILES + CUTS_PER_FILE, 3 + RANDOM_FILES + 2 * CUTS_PER_FILE)
PAIRS = [(case, role) for role in ROLES for case in range(CASE_COUNT)
         if not (role == "source" and case in CUT_GIFS)]


@pytest.fixture(scope="module")
def fuzz(tmp_path_factory, tiny_case) -> dict:
    """The broken files, a tiny model, and a valid file for every other input."""
    folder = tmp_path_factory.mktemp("fuzz")
    (folder / "valid").mkdir()
    cases = _cases(folder / "valid")
    assert len(cases) == CASE_COUNT
    assert all(cases[i][0].startswith("cut") and cases[i][0].endswith(".gif") for i in CUT_GIFS)
    params = {**tiny_case.meta["model_params"], "kp_detector_params": {"width": 8}}
    params["common_params"] = {**params["common_params"], "bg": False}
    model = _model_files(folder / "model", params)
    config = folder / "train.yaml"
    config.write_text(yaml.safe_dump(tiny_config()))
    return {"cases": cases, "model": model, "train_config": config,
            "source": _save_png(folder / "source.png", _moving_frames(1, seed=1)[0]),
            "driving": folder / "valid" / "valid.mp4"}


def _dataset(root: Path, split: str, broken: Path, valid: Path) -> Path:
    """``root`` with ``broken`` the only video of ``split`` (a valid one in the other)."""
    other = "test" if split == "train" else "train"
    for name in ("train", "test"):
        (root / name).mkdir(parents=True)
    broken.rename(root / split / broken.name)
    (root / other / "valid.mp4").write_bytes(valid.read_bytes())
    return root / split / broken.name


def _command(role: str, path: Path, fuzz: dict, work: Path) -> list[str]:
    model = fuzz["model"]
    if role in ("source", "driving"):
        source = path if role == "source" else fuzz["source"]
        driving = path if role == "driving" else fuzz["driving"]
        return ["animate", "--config", str(model["config"]), "--checkpoint",
                str(model["checkpoint"]), "--source", str(source), "--driving", str(driving),
                "--output", str(work / "out" / "result.mp4"), "-q"]
    if role == "reconstruct":
        return ["reconstruct", "--baseline", "copy-source", "--data", str(work / "data"),
                "--out", str(work / "out"), "--save-video", "-q"]
    return ["train", "--config", str(fuzz["train_config"]), "--data", str(work / "data"),
            "--out", str(work / "out"), "--threads", "1", "-q"]


@pytest.mark.parametrize(("case", "role"), PAIRS)
def test_a_broken_input_is_one_line_and_leaves_nothing(case, role, fuzz, tmp_path, capsys):
    name, data = fuzz["cases"][case]
    path = tmp_path / name
    path.write_bytes(data)
    if role in ("reconstruct", "train"):
        path = _dataset(tmp_path / "data", "test" if role == "reconstruct" else "train", path,
                        fuzz["driving"])
    status = main(_command(role, path, fuzz, tmp_path))
    err = capsys.readouterr().err.strip().splitlines()
    command = "animate" if role in ("source", "driving") else role
    assert status == 2, (name, err)
    assert len(err) == 1 and err[0].startswith(f"tpsmm {command}: error: "), err
    assert name in err[0], err
    assert not (tmp_path / "out").exists()  # no output, not even a folder for one
