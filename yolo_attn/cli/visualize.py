"""``yolo-attn visualize``: every block's attention map (or chosen layers' features) overlaid on images."""

from __future__ import annotations

import argparse
from pathlib import Path

VERB = "visualize"
TAKES_OVERRIDES = False


def add_parser(verbs: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``visualize`` parser to ``verbs`` and return it."""
    p = verbs.add_parser(VERB, help="attention maps of every block, overlaid on images (PNG grids)")
    p.add_argument("--weights", required=True, help="best.pt, or a model YAML (untrained)")
    p.add_argument("--source", type=Path, required=True, help="an image or a folder of images")
    p.add_argument("--imgsz", type=int, default=None, help="letterbox side (default 640; 224 for classifiers)")
    p.add_argument("--device", default="cpu", help="cpu, 0, ... (Ultralytics syntax)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: a new runs/visualize/exp*)")
    p.add_argument(
        "--features",
        default=None,
        metavar="2,4,6",
        help="layer indices: strongest channels of each beside the attention maps (+ Grad-CAM for classifiers)",
    )
    return p


def run(args: argparse.Namespace, overrides: dict) -> None:
    """Write the PNG grids and print their paths."""
    from yolo_attn.visualize import attention_maps, feature_maps

    if args.features is not None:
        paths = feature_maps(
            args.weights, args.source, args.features, imgsz=args.imgsz, out=args.out, device=args.device
        )
    else:
        paths = attention_maps(args.weights, args.source, imgsz=args.imgsz or 640, out=args.out, device=args.device)
    for path in paths:
        print(path)
