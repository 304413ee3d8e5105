"""``yolo-attn demo``: the whole pipeline on embedded synthetic data, on the CPU, without downloads."""

from __future__ import annotations

import argparse
from pathlib import Path

VERB = "demo"
TAKES_OVERRIDES = False


def add_parser(verbs: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``demo`` parser to ``verbs`` and return it."""
    from yolo_attn.experiments.tasks import TASKS

    p = verbs.add_parser(VERB, help="the whole pipeline on embedded synthetic data, CPU, no downloads")
    p.add_argument(
        "--task",
        choices=tuple(TASKS),
        default="detect",
        help="detect: YOLOv8n vs CBAM vs ECA on synthetic COCO; classify: yolov8n-cls vs SE vs CBAM; segment, pose, "
        "obb: yolov8n-{seg,pose,obb} vs CBAM vs ECA on synthetic polygons, keypoints, rotated boxes",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output folder (default: a new runs/demo/exp*); pass an interrupted demo's folder to resume it",
    )
    return p


def run(args: argparse.Namespace, overrides: dict) -> None:
    """Run the demo of ``--task``."""
    from yolo_attn.demos.classify import run_classify_demo
    from yolo_attn.demos.detect import run_demo
    from yolo_attn.demos.tasks import run_task_demo

    if args.task == "detect":
        run_demo(args.out)
    elif args.task == "classify":
        run_classify_demo(args.out)
    else:  # segment, pose, obb
        run_task_demo(args.task, args.out)
