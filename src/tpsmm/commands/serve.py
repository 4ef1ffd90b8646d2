"""``tpsmm serve``: the web page for animating, on this machine."""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path

from tpsmm.commands.arguments import (
    add_engine_arguments,
    at_least,
    positive_float,
    slow_precision_warning,
)
from tpsmm.devices import resolve_device
from tpsmm.errors import InputError, MissingExtraError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "serve",
        help="a web page for animating, served from this machine",
        description="Serve a page (Gradio) that does what tpsmm animate does: a source image "
        "and a driving video (uploaded, or from the webcam), a model (the demo's, the "
        "published checkpoints and training runs in --models, or one uploaded), crop and "
        "paste-back. One job at a time; works offline. Needs pip install 'tpsmm[app]'.",
    )
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; "
                   "0.0.0.0 for every network)")
    p.add_argument("--port", type=at_least(1), default=7860, help="port (default 7860)")
    p.add_argument("--models", metavar="DIR",
                   help="folder with published checkpoints (vox.pth.tar, taichi.pth.tar, "
                   "ted.pth.tar, mgif.pth.tar) and training runs (config.yaml + last.pth.tar)")
    add_engine_arguments(p)
    p.add_argument("--max-upload-mb", type=at_least(1), default=200,
                   help="largest file accepted (default 200 MB)")
    p.add_argument("--max-seconds", type=positive_float, default=60.0,
                   help="longest driving video (default 60 s)")
    p.add_argument("--max-video-side", type=at_least(16), default=1920,
                   help="driving video's longest side (default 1920 px)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if importlib.util.find_spec("gradio") is None:
        raise MissingExtraError("tpsmm serve needs Gradio: pip install 'tpsmm[app]'")
    if args.models is not None and not Path(args.models).is_dir():
        raise InputError(f"{args.models}: no such folder (--models)")
    device = str(resolve_device(args.device))
    # Gradio reads these when it is imported: no usage statistics, its files in our folder.
    work = Path(tempfile.gettempdir()) / f"tpsmm-serve-{args.port}"
    shutil.rmtree(work, ignore_errors=True)  # what a previous server left
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ["GRADIO_TEMP_DIR"] = str(work / "gradio")
    from tpsmm.app.jobs import Limits
    from tpsmm.app.models import AnimatorCache, find_models
    from tpsmm.app.page import Page

    limits = Limits(upload_mb=args.max_upload_mb, seconds=args.max_seconds,
                    video_side=args.max_video_side)
    cache = AnimatorCache(device, args.precision, args.backend)
    # The demo model loaded now: a backend or precision that cannot run here is one line
    # before the page is up, not a message on every job.
    demo = find_models(None)[0]
    cache.get(demo.checkpoint, demo.config)
    warning = slow_precision_warning(resolve_device(device), args.backend, args.precision)
    if warning is not None:
        print(f"serve: warning: {warning}", file=sys.stderr)
    page = Page(args.models, cache, limits, work)
    blocks = page.build()
    blocks.queue(default_concurrency_limit=1)
    print(f"serve: http://{args.host}:{args.port} ({device}, {args.precision}, "
          f"{args.backend}; Ctrl-C stops)", flush=True)
    try:
        blocks.launch(server_name=args.host, server_port=args.port, share=False,
                      max_file_size=f"{args.max_upload_mb}mb", footer_links=[],
                      allowed_paths=[str(page.jobs_dir)], enable_monitoring=False,
                      quiet=True, ssr_mode=False, show_error=True)
    except KeyboardInterrupt:
        pass  # Ctrl-C or SIGTERM: Gradio catches it or not, depending on where it lands
    finally:
        # Uploads and results live as long as the server: nobody's photo or video is left
        # in the temporary folder once it stops.
        shutil.rmtree(work, ignore_errors=True)
    print("serve: stopped", flush=True)
    return 0
