"""Train and evaluate models x seeds under identical settings; write compare.csv / .md / .png.

Same as ``yolo-attn compare``. Example (the first model is the baseline; key=value pairs go to Ultralytics' train)::

    python scripts/compare.py --data subsets/pcd/data.yaml \
        --models yolov8n.yaml model_yamls/yolov8n-cbam.yaml model_yamls/yolov8n-eca.yaml \
        --seeds 0 1 2 --epochs 100 --imgsz 640 --batch 16 --device 0 workers=8

Rerun with ``--out <folder of the interrupted comparison>`` to resume it.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")  # before the first ultralytics import, which `import yolo_attn` makes
os.environ.setdefault("YOLO_AUTOINSTALL", "0")

from yolo_attn.offline import install_local_font


def parse_args() -> tuple[argparse.Namespace, dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="data.yaml with COCO ground truth (yolo-attn subset)")
    parser.add_argument("--models", nargs="+", required=True, help="model YAMLs or weights; the first is the baseline")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--device", default=None, help="cpu, 0, or 0,1,2,3 (each run one DDP job)")
    parser.add_argument("--backend", default="pycocotools", choices=("pycocotools", "faster-coco-eval"))
    parser.add_argument("--out", type=Path, default=None, help="comparison folder (default: new runs/compare/exp*)")
    parser.add_argument("--latency-runs", type=int, default=50, help="timed batch-1 passes per model (0: skip)")
    args, extra = parser.parse_known_args()
    bad = [a for a in extra if "=" not in a or a.startswith("-")]
    if bad:
        parser.error(f"unrecognized arguments: {' '.join(bad)} (pass training settings as key=value)")
    from ultralytics.cfg import smart_value

    return args, {k: smart_value(v) for k, v in (a.split("=", 1) for a in extra)}


def main() -> None:
    install_local_font()
    args, overrides = parse_args()
    from yolo_attn.experiments.compare import compare

    out = compare(
        args.data,
        args.models,
        args.seeds,
        args.epochs,
        imgsz=args.imgsz,
        batch=args.batch,
        device=args.device,
        out=args.out,
        train_overrides=overrides,
        backend=args.backend,
        latency_runs=args.latency_runs,
    )
    print((out / "compare.md").read_text())
    print(f"Comparison written to {out}")


if __name__ == "__main__":
    main()
