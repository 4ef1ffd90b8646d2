"""The web page (Gradio): everything ``tpsmm animate`` does, from a browser, offline.

One job runs at a time (the queue tells the others their place); the cancel button and a
closed tab stop a running job at its next batch. Every error reaches the page as one line;
nothing from outside the server is loaded (Gradio's analytics are off and its page carries
its own fonts and scripts). Each job's files live in a folder of their own, removed once
the page has them; the whole working folder is emptied at start-up.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
import uuid
from pathlib import Path

import gradio as gr

from tpsmm.app.jobs import Cancelled, JobRequest, Limits, run_job
from tpsmm.app.models import AnimatorCache, ModelChoice, find_models
from tpsmm.config import bundled_configs
from tpsmm.demo import DRIVING_NAME, SOURCE_NAME, assets_dir
from tpsmm.errors import TPSMMError
from tpsmm.framing.plan import CROP_CHOICES

UPLOADED = "a checkpoint uploaded below"
MODES = {"relative": "relative: the source moves as the driving object moves",
         "standard": "standard: the driving keypoints as they are",
         "avd": "avd: pose from the driving video, shape from the source"}
log = logging.getLogger("tpsmm.serve")


class Page:
    """The page's state: the models offered, the loaded model, the running jobs' stop
    flags (by browser session) and the working folder."""

    def __init__(self, models_dir: str | Path | None, cache: AnimatorCache, limits: Limits,
                 work_dir: Path) -> None:
        self.choices = {choice.label: choice for choice in find_models(models_dir)}
        self.cache = cache
        self.limits = limits
        self.jobs_dir = work_dir / "jobs"
        self._stops: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    # ----------------------------------------------------------------------- handlers

    def _model(self, label: str, checkpoint: str | None, config: str | None) -> ModelChoice:
        if label != UPLOADED:
            return self.choices[label]
        if not checkpoint:
            raise gr.Error("Upload a checkpoint (.pth.tar) first, or choose another model.")
        return ModelChoice(UPLOADED, Path(checkpoint), config or "vox-256")

    def modes(self, label: str, checkpoint: str | None, config: str | None):
        """The mode list for a model: avd only when its checkpoint holds the AVD network."""
        try:
            model = self._model(label, checkpoint, config)
            avd = self.cache.has_avd(model.checkpoint, model.config)
        except (TPSMMError, gr.Error) as error:
            gr.Warning(str(error))
            avd = False
        choices = [(text, mode) for mode, text in MODES.items() if mode != "avd" or avd]
        return gr.update(choices=choices, value="relative")

    def run(self, source: str | None, driving: str | None, label: str,
            checkpoint: str | None, config: str | None, mode: str, crop: str, box: str,
            paste_back: bool, find_best_frame: bool, fps: float | None,
            request: gr.Request, progress=gr.Progress()):  # noqa: B008 (Gradio's API)
        """One job: returns the result, the comparison, the files to download, a summary
        and the job's folder (removed by :meth:`clean` once the page has the files)."""
        if not source:
            raise gr.Error("Choose a source image (upload, or take a webcam snapshot).")
        if not driving:
            raise gr.Error("Choose a driving video (upload, or record one with the webcam).")
        model = self._model(label, checkpoint, config)
        stop = threading.Event()
        with self._lock:
            self._stops[request.session_hash] = stop
        folder = self.jobs_dir / uuid.uuid4().hex
        started = time.monotonic()

        def report(stage: str, done: int, total: int) -> None:
            left = (time.monotonic() - started) / max(done, 1) * max(total - done, 0)
            progress((done, total), desc=f"{stage}: {done} of {total} frames, "
                     f"about {left:.0f} s left", unit="frames")

        try:
            animator = self.cache.get(model.checkpoint, model.config)
            job = JobRequest(Path(source), Path(driving), mode,
                             box.strip() if crop == "box:X,Y,W,H" else crop, paste_back,
                             find_best_frame, fps or None)
            result = run_job(job, animator, folder, self.limits, report, stop)
        except Cancelled:
            raise gr.Error("Cancelled.") from None
        except TPSMMError as error:
            raise gr.Error(str(error)) from None
        except ValueError as error:  # a malformed option, e.g. the crop box
            raise gr.Error(str(error)) from None
        except Exception as error:  # our bug: the page still gets one line, the log the rest
            log.exception("job failed")
            raise gr.Error(f"Internal error ({type(error).__name__}: {error}); the server's "
                           "log has the details.") from None
        finally:
            with self._lock:
                if self._stops.get(request.session_hash) is stop:
                    del self._stops[request.session_hash]
        files = [str(result.video), str(result.comparison)]
        return str(result.video), str(result.comparison), files, result.summary, str(folder)

    def stop(self, request: gr.Request) -> None:
        """Stop this browser session's running job (cancel button, closed tab)."""
        with self._lock:
            stop = self._stops.get(request.session_hash)
        if stop is not None:
            stop.set()

    @staticmethod
    def clean(folder: str | None) -> None:
        """Remove a finished job's folder (the page has its own copies of the files)."""
        if folder:
            shutil.rmtree(folder, ignore_errors=True)

    # ----------------------------------------------------------------------- layout

    def build(self) -> gr.Blocks:
        labels = [*self.choices, UPLOADED]
        with gr.Blocks(title="tpsmm: animate an image", analytics_enabled=False,
                       delete_cache=(600, 3600)) as blocks:
            gr.Markdown("# Thin-Plate Spline Motion Model\nMove the subject of a source image "
                        "as the subject of a driving video moves. " + self.limits.describe())
            with gr.Row():
                source = gr.Image(sources=["upload", "webcam"], type="filepath",
                                  label="Source image", elem_id="source")
                driving = gr.Video(sources=["upload", "webcam"], label="Driving video",
                                   elem_id="driving",
                                   webcam_options=gr.WebcamOptions(mirror=False))
            with gr.Row():
                model = gr.Dropdown(labels, value=labels[0], label="Model", elem_id="model")
                mode = gr.Radio([(t, m) for m, t in MODES.items() if m != "avd"],
                                value="relative", label="Mode", elem_id="mode")
            with gr.Row(visible=False) as upload_row:
                checkpoint = gr.File(label="Checkpoint (.pth.tar)", type="filepath",
                                     elem_id="checkpoint")
                config = gr.Dropdown(bundled_configs(), value="vox-256",
                                     label="Its config", elem_id="config")
            with gr.Row():
                crop = gr.Dropdown(list(CROP_CHOICES), value="auto", elem_id="crop",
                                   label="Crop (find the subject; auto: the model's)")
                box = gr.Textbox(label="Box, for box:X,Y,W,H (pixels of the source)",
                                 placeholder="box:120,40,256,256", elem_id="box")
                paste_back = gr.Checkbox(True, label="Paste back into the source image")
                best = gr.Checkbox(False, label="Find best frame (relative mode)")
                fps = gr.Number(0, label="Output fps (0: the driving video's)", minimum=0)
            with gr.Row():
                run = gr.Button("Animate", variant="primary", elem_id="run")
                cancel = gr.Button("Cancel", elem_id="cancel")
            summary = gr.Textbox(label="Summary", interactive=False, elem_id="summary")
            with gr.Row():
                result = gr.Video(label="Result", elem_id="result", interactive=False)
                comparison = gr.Video(label="Source | driving | result, with keypoints",
                                      elem_id="comparison", interactive=False)
            downloads = gr.File(label="Downloads", file_count="multiple", interactive=False,
                                elem_id="downloads")
            folder = gr.State(None)
            gr.Examples([[str(assets_dir() / SOURCE_NAME), str(assets_dir() / DRIVING_NAME)]],
                        inputs=[source, driving], label="Example (the demo's character)")

            model.change(lambda label: gr.update(visible=label == UPLOADED), model, upload_row)
            for trigger in (model.change, checkpoint.change, config.change):
                trigger(self.modes, [model, checkpoint, config], mode)
            job = run.click(self.run, [source, driving, model, checkpoint, config, mode, crop,
                                       box, paste_back, best, fps],
                            [result, comparison, downloads, summary, folder],
                            concurrency_limit=1, concurrency_id="device")
            job.then(self.clean, folder, None)
            cancel.click(self.stop, None, None, cancels=[job], queue=False)
            blocks.unload(self.stop)
        return blocks
