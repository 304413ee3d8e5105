"""COCO-evaluate a YOLO model on a subset: python scripts/eval.py runs/detect/train/weights/best.pt out/data.yaml."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from yolo_attn.evaluation import BACKENDS, evaluate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("weights", help="model weights (.pt) or model YAML")
    parser.add_argument("data", help="data.yaml written by build_subset (has a coco_gt key)")
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--device", default=None)
    parser.add_argument("--conf", type=float, default=0.001)
    parser.add_argument("--iou", type=float, default=0.7)
    parser.add_argument("--backend", choices=BACKENDS, default="pycocotools")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--no-ultralytics-val", action="store_true", help="skip Ultralytics' own val")
    args = parser.parse_args()
    report = evaluate(
        args.weights,
        args.data,
        imgsz=args.imgsz,
        batch=args.batch,
        device=args.device,
        conf=args.conf,
        iou=args.iou,
        backend=args.backend,
        out=args.out,
        ultralytics_val=not args.no_ultralytics_val,
    )
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
