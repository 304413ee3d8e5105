"""``yolo-attn eval``: the metrics of one checkpoint, by the evaluator of its own task."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

VERB = "eval"
TAKES_OVERRIDES = False


def add_parser(verbs: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``eval`` parser to ``verbs`` and return it."""
    p = verbs.add_parser(
        VERB,
        help="COCO mAP (pycocotools) of a detector, top-1/top-5 of a classifier, Ultralytics' validator mAP of a "
        "segment / pose / obb model (task read from --weights)",
    )
    p.add_argument("--weights", required=True, help="the checkpoint (best.pt); its task picks the evaluator")
    p.add_argument(
        "--data",
        required=True,
        help="detect: any YOLO-label data.yaml (COCO GT built when it has no coco_gt); classify: ImageFolder root; "
        "segment / pose / obb: the task's data.yaml",
    )
    p.add_argument("--imgsz", type=int, default=None, help="image size (default: the task's, 640; 224 for classify)")
    p.add_argument("--batch", type=int, default=16, help="batch size")
    p.add_argument("--device", default=None, help="cpu, 0, or 0,1,2,3 (Ultralytics syntax)")
    p.add_argument(
        "--backend", default="pycocotools", choices=("pycocotools", "faster-coco-eval"), help="COCO mAP backend"
    )
    p.add_argument("--conf", type=float, default=0.001, help="confidence threshold of the detections kept")
    p.add_argument("--iou", type=float, default=0.7, help="IoU threshold of non-maximum suppression")
    p.add_argument("--out", type=Path, default=None, help="where to write detections and metrics JSON")
    return p


def run(args: argparse.Namespace, overrides: dict) -> None:
    """Evaluate ``--weights`` on ``--data``; print the metrics and write them under ``--out``."""
    from yolo_attn.evaluation.classify_eval import checkpoint_task
    from yolo_attn.experiments.tasks import get_task

    spec = get_task(checkpoint_task(args.weights))  # the evaluator of the checkpoint's own task
    settings = {
        "task": spec.name,
        "data": spec.resolve_data(args.data),
        "imgsz": args.imgsz or spec.default_imgsz,
        "batch": args.batch,
        "backend": args.backend,
        "conf": args.conf,
        "iou": args.iou,
    }
    metrics = spec.evaluate(Path(args.weights), settings, args.device, args.out)
    print(spec.format(metrics))
    if args.out is not None and not spec.uses_backend:  # the COCO evaluator writes its own files there
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
