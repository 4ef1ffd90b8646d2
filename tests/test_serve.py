"""``tpsmm serve``: the page driven in a real headless Chromium (Debian's, through
Playwright), and its job logic without a browser."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from tpsmm.app.jobs import Cancelled, JobRequest, Limits, check_inputs, run_job
from tpsmm.app.models import DEMO_LABEL, AnimatorCache, find_models
from tpsmm.data.video import has_audio, open_video
from tpsmm.demo import DRIVING_NAME, SOURCE_NAME, assets_dir
from tpsmm.errors import InputError

CHROMIUM = Path("/usr/bin/chromium")
DEMO_FRAMES = 100  # the shipped driving video's length
pytestmark = pytest.mark.usefixtures("one_thread")


# --------------------------------------------------------------------------- without a browser

def test_the_models_offered(tmp_path):
    (tmp_path / "vox.pth.tar").write_bytes(b"")
    run = tmp_path / "runs" / "mine"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("")
    (run / "last.pth.tar").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("")
    labels = [(c.label, c.config) for c in find_models(tmp_path)]
    assert labels == [(DEMO_LABEL, "synthetic-64"), ("run: runs/mine", run / "config.yaml"),
                      ("vox-256: vox.pth.tar", "vox-256")]


def test_a_checkpoint_that_fails_to_load_leaves_the_cache_usable():
    from tpsmm.errors import CheckpointError

    demo = find_models(None)[0]
    cache = AnimatorCache("cpu")
    first = cache.get(demo.checkpoint, demo.config)
    with pytest.raises(CheckpointError, match="does not fit the config"):
        cache.get(demo.checkpoint, "vox-256")
    again = cache.get(demo.checkpoint, demo.config)
    assert again is not None and again is not first  # loaded again, not the stale entry


def test_the_page_animates_through_the_backend_it_was_started_with():
    pytest.importorskip("openvino")
    from tpsmm.data.images import to_tensor

    demo = find_models(None)[0]
    frames = to_tensor(np.stack(list(open_video(assets_dir() / DRIVING_NAME)))[:8])
    results = {}
    for backend in ("torch", "openvino"):
        animator = AnimatorCache("cpu", "fp32", backend).get(demo.checkpoint, demo.config)
        assert animator.backend == backend
        source = animator.prepare(assets_dir() / SOURCE_NAME)
        results[backend] = animator.animate_frames(source, frames)
    assert (results["openvino"] - results["torch"]).abs().max() < 1 / 255


def test_serve_refuses_an_engine_it_cannot_run_before_serving(capsys):
    from tpsmm.cli import main

    pytest.importorskip("gradio")
    assert main(["serve", "--port", str(_free_port()), "--backend", "onnxruntime",
                 "--precision", "bf16"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--backend onnxruntime runs fp32, not bf16" in err[0], err


@pytest.fixture(scope="module")
def demo_animator():
    choice = find_models(None)[0]
    return AnimatorCache("cpu").get(choice.checkpoint, choice.config)


def test_a_job_stops_when_asked_and_leaves_nothing(demo_animator, tmp_path):
    stop = threading.Event()
    seen = []

    def report(stage, done, total):
        seen.append((stage, done, total))
        stop.set()  # as if the cancel button was pressed during the first batch

    request = JobRequest(assets_dir() / SOURCE_NAME, assets_dir() / DRIVING_NAME)
    with pytest.raises(Cancelled):
        run_job(request, demo_animator, tmp_path / "job", Limits(), report, stop)
    assert seen == [("animate", demo_animator.batch_size, DEMO_FRAMES)]
    assert not (tmp_path / "job").exists()


def test_limits_are_one_line_each(tmp_path):
    request = JobRequest(assets_dir() / SOURCE_NAME, assets_dir() / DRIVING_NAME)
    with pytest.raises(InputError, match=r"driving.mp4: 4.0 s is longer than this page's "
                                         r"limit of 2 s"):
        check_inputs(request, Limits(seconds=2))
    with pytest.raises(InputError, match=r"64x64 is larger than this page's limit of 32 px"):
        check_inputs(request, Limits(video_side=32))
    with pytest.raises(InputError, match=r"source.png: 64x64 is larger"):
        check_inputs(request, Limits(image_side=32))


# --------------------------------------------------------------------------- in a browser

def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _serve(folder: Path, *options: str):
    """Start ``tpsmm serve`` on a free port; yields its address and its working folder."""
    pytest.importorskip("gradio")
    if not CHROMIUM.exists():
        pytest.skip("needs Debian's chromium (apt-get install chromium)")
    port = _free_port()
    log = folder / "serve.log"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(log, "w") as output:
        process = subprocess.Popen([sys.executable, "-m", "tpsmm.cli", "serve", "--port",
                                    str(port), "--device", "cpu", *options], stdout=output,
                                   stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"tpsmm serve did not start:\n{log.read_text()}")
            time.sleep(0.5)
    work = Path(tempfile.gettempdir()) / f"tpsmm-serve-{port}"
    yield url, work
    process.terminate()
    assert process.wait(timeout=30) == 0, log.read_text()  # stopping is how a server ends
    assert not work.exists()  # the uploads and results go with the server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from _serve(tmp_path_factory.mktemp("serve"))


def _browser_page(playwright, url: str, browser=None):
    """A page of ``url`` in a new headless Chromium (or a new tab of ``browser``), logging
    every request it makes in ``page.requests``."""
    browser = browser or playwright.chromium.launch(
        executable_path=str(CHROMIUM),
        # root needs --no-sandbox; the rest keep Chromium from calling its own servers.
        args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
              "--disable-component-update", "--disable-sync", "--no-first-run"])
    page = browser.new_page(viewport={"width": 1400, "height": 1500})
    page.requests = []
    page.on("request", lambda request: page.requests.append(request.url))
    page.goto(url)
    page.wait_for_selector("#run")
    return browser, page


@pytest.fixture
def page(server):
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser, page = _browser_page(playwright, server[0])
        yield page
        browser.close()


def _upload(page, element: str, path: Path) -> None:
    page.locator(f"#{element} input[type=file]").set_input_files(str(path))


def _summary(page) -> str:
    """The summary once the job has finished."""
    page.wait_for_function(
        "() => document.querySelector('#summary textarea')?.value.includes('frames')",
        timeout=120_000)
    return page.locator("#summary textarea").input_value()


def _start(page, driving: Path) -> None:
    """Start a job with the shipped source and ``driving``."""
    _upload(page, "source", assets_dir() / SOURCE_NAME)
    _upload(page, "driving", driving)
    page.wait_for_selector("#driving video")
    page.click("#run")


def _example_runs_at_once(page) -> None:
    """The shipped example runs to its end within 40 s (alone it takes ~6 s; behind the
    long job it would wait over a minute)."""
    started = time.monotonic()
    _start(page, assets_dir() / DRIVING_NAME)
    assert _summary(page).startswith(f"{DEMO_FRAMES} frames")
    assert time.monotonic() - started < 40


def _no_job_folders(work: Path) -> None:
    """The server's job folders are all gone (within 10 s)."""
    jobs = work / "jobs"
    deadline = time.monotonic() + 10
    while any(jobs.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(jobs.iterdir())


@pytest.mark.slow(minutes=1)
def test_the_page_animates_the_example_with_its_sound_and_loads_nothing_from_outside(
        page, server, tmp_path):
    _start(page, assets_dir() / DRIVING_NAME)
    summary = _summary(page)
    assert summary.startswith(f"{DEMO_FRAMES} frames of 64x64") and "with sound" in summary
    source = page.locator("#result video").get_attribute("src")
    video = tmp_path / "result.mp4"
    video.write_bytes(page.request.get(source).body())
    reader = open_video(video)
    assert reader.num_frames == DEMO_FRAMES and has_audio(video)
    # 64-px panels, magnified 4x
    comparison = page.locator("#comparison video").get_attribute("src")
    assert open_video_bytes(page, comparison, tmp_path).size == (256, 768)
    if os.environ.get("TPSMM_SCREENSHOT"):  # the README's picture
        page.screenshot(path=os.environ["TPSMM_SCREENSHOT"], full_page=True)
    outside = [url for url in page.requests
               if not url.startswith((server[0], "data:", "blob:"))]
    assert outside == [] and len(page.requests) > 10
    _no_job_folders(server[1])  # the job's own folder is gone once the page has its files


def open_video_bytes(page, url: str, folder: Path):
    path = folder / "comparison.mp4"
    path.write_bytes(page.request.get(url).body())
    return open_video(path)


@pytest.mark.slow(minutes=1)
def test_a_broken_video_is_a_message_on_the_page(page, tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, np.uint8).tobytes())
    _upload(page, "source", assets_dir() / SOURCE_NAME)
    _upload(page, "driving", broken)
    page.click("#run")
    message = page.get_by_text("broken.mp4: not a readable video")
    message.first.wait_for(timeout=60_000)
    assert "Traceback" not in page.content()


@pytest.mark.slow(minutes=1)
def test_one_click_on_the_example_then_animate(page):
    page.locator("text=Example (the demo's character)").scroll_into_view_if_needed()
    page.locator(".gallery-item, tr.tr-body, button.gallery").first.click()
    page.wait_for_selector("#driving video")
    page.click("#run")
    assert _summary(page).startswith(f"{DEMO_FRAMES} frames")


@pytest.mark.slow(minutes=1)
def test_an_uploaded_checkpoint_that_does_not_fit_its_config_is_a_message(page):
    page.locator("#model input").click()
    page.get_by_role("option", name="a checkpoint uploaded below").click()
    _upload(page, "checkpoint", assets_dir() / "synthetic-64.pth")
    # The config chooser keeps vox-256, which this checkpoint was not trained with.
    _upload(page, "source", assets_dir() / SOURCE_NAME)
    _upload(page, "driving", assets_dir() / DRIVING_NAME)
    page.click("#run")
    page.get_by_text("does not fit the config").first.wait_for(timeout=60_000)
    assert "Traceback" not in page.content()


def test_serve_refuses_a_models_folder_that_is_not_there(tmp_path, capsys):
    from tpsmm.cli import main

    pytest.importorskip("gradio")
    assert main(["serve", "--models", str(tmp_path / "none")]) == 2
    assert "none: no such folder (--models)" in capsys.readouterr().err


@pytest.mark.slow(minutes=1)
def test_the_limits_are_messages_on_the_page(tmp_path):
    """A server with small limits: a file too large, a video too long."""
    sync_api = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists():
        pytest.skip("needs Debian's chromium (apt-get install chromium)")
    servers = _serve(tmp_path, "--max-upload-mb", "1", "--max-seconds", "2")
    url, _ = next(servers)
    big = tmp_path / "big.mp4"
    big.write_bytes(bytes(2_000_000))
    try:
        with sync_api.sync_playwright() as playwright:
            browser, page = _browser_page(playwright, url)
            assert "Files up to 1 MB; driving videos up to 2 s" in page.content()
            _upload(page, "driving", big)
            page.get_by_text('exceed the maximum allowed size of 1.0 Mb: "big.mp4"').first \
                .wait_for(timeout=30_000)
            page.reload()
            page.wait_for_selector("#run")
            _upload(page, "source", assets_dir() / SOURCE_NAME)
            _upload(page, "driving", assets_dir() / DRIVING_NAME)
            page.wait_for_selector("#driving video")
            page.click("#run")
            page.get_by_text("4.0 s is longer than this page's limit of 2 s").first.wait_for(
                timeout=60_000)
            browser.close()
    finally:
        next(servers, None)


@pytest.fixture(scope="module")
def long_video(tmp_path_factory) -> Path:
    """The demo's driving video 14 times over: 1400 frames, 56 s, over a minute of work."""
    from tpsmm.data.video import open_writer

    frames = np.stack(list(open_video(assets_dir() / DRIVING_NAME)))
    path = tmp_path_factory.mktemp("long") / "long.mp4"
    with open_writer(path, 25) as writer:
        for _ in range(14):
            writer.write(frames)
    return path


@pytest.mark.slow(minutes=1)
def test_cancel_and_a_closed_tab_stop_the_job_and_free_the_worker(server, long_video):
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser, first = _browser_page(playwright, server[0])
        _start(first, long_video)
        first.get_by_text("of 1400 frames").first.wait_for(timeout=60_000)
        first.click("#cancel")
        first.reload()
        first.wait_for_selector("#run")
        _example_runs_at_once(first)
        # The same with the tab closed mid-job, and the next job from another tab.
        first.reload()
        first.wait_for_selector("#run")
        _start(first, long_video)
        first.get_by_text("of 1400 frames").first.wait_for(timeout=60_000)
        first.close()
        _, second = _browser_page(playwright, server[0], browser)
        _example_runs_at_once(second)
        browser.close()
    _no_job_folders(server[1])  # stopped jobs leave no files behind
