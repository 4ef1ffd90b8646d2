"""``tpsmm export``: a checkpoint as ONNX graphs with a manifest, for other engines and apps."""

from __future__ import annotations

import argparse
import json

from tpsmm.deploy.onnx_export import export_onnx
from tpsmm.model import TPSMM

FORMATS = ("onnx",)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export",
        help="write a checkpoint's networks as ONNX graphs",
        description="Export the keypoint detector, the source encoder, the per-frame "
        "generator as four graphs (the transforms, with the TPS solves; the dense motion "
        "network; the optical flow, with every sampling by it; the inpainting decoder: the "
        "second and fourth may run in reduced precision) and the AVD network as "
        "ONNX graphs (opset 17, dynamic batch) with manifest.json: input and output names, "
        "shapes, value ranges and how to chain them. Needs pip install 'tpsmm[deploy]'.",
    )
    p.add_argument("--config", default="vox-256", help="bundled config name or YAML path "
                   "(default vox-256)")
    p.add_argument("--checkpoint", required=True, help="reference-format checkpoint")
    p.add_argument("--format", choices=FORMATS, default="onnx", help="onnx (default)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the graphs")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    model = TPSMM.from_checkpoint(args.checkpoint, config=args.config)
    manifest = export_onnx(model, args.out)
    graphs = json.loads(manifest.read_text())["graphs"]
    print(f"export: {', '.join(g['file'] for g in graphs.values())} and {manifest.name} "
          f"-> {manifest.parent}")
    return 0
