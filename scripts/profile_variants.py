"""Params, GFLOPs and batch-1 latency of every n-scale model_yamls variant against its Ultralytics baseline.

Each ``model_yamls/<family>-<variant>.yaml`` (family ``yolov8``, ``yolo11`` or ``yolo26``) is built at scale n through
its scaled name, ``model_yamls/<family>n-<variant>.yaml``, exactly as a user loads it, and compared with
``<family>n.yaml`` from Ultralytics. One markdown table, ratios to each row's baseline. Example::

    python scripts/profile_variants.py                     # CPU, 640 px, 20 timed passes after 5 warm-up passes
    python scripts/profile_variants.py --device 0 --runs 200 --warmup 50

Also writes docs/benchmarks/profile_variants_<device>.md (``--no-docs``: print only).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")  # before the first ultralytics import, which `import yolo_attn` makes
os.environ.setdefault("YOLO_AUTOINSTALL", "0")

YAML_DIR = Path(__file__).resolve().parents[1] / "yolo_attn" / "cfg" / "model_yamls"


def variants(yaml_dir: Path, scale: str = "n") -> dict[str, str]:
    """Return ``{scaled variant path: baseline name}`` for the unscaled YAMLs in ``yaml_dir``, grouped by baseline."""
    from yolo_attn.profiling.headers import SHIPPED_STEM, scaled_pair

    found = {}
    for path in sorted(yaml_dir.glob("*.yaml")):
        if SHIPPED_STEM.match(path.stem):
            scaled, baseline = scaled_pair(path, scale)
            found[str(scaled)] = baseline
    return dict(sorted(found.items(), key=lambda item: item[1], reverse=True))  # yolov8 rows, then yolo26, yolo11


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--yamls", type=Path, default=YAML_DIR, help="folder of unscaled variant YAMLs")
    parser.add_argument("--scale", default="n", choices=tuple("nsmlx"))
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--runs", type=int, default=20, help="timed batch-1 forward passes per model")
    parser.add_argument("--warmup", type=int, default=5, help="untimed passes before timing")
    from yolo_attn.profiling.publish import add_docs_argument, wants_docs, write_benchmark

    add_docs_argument(parser, "the table")
    args = parser.parse_args()
    from yolo_attn.profiling.cost import print_cost_table

    baselines = variants(args.yamls, args.scale)
    if not baselines:
        parser.error(f"no yolov8-*.yaml / yolo11-*.yaml / yolo26-*.yaml in {args.yamls}")
    table = print_cost_table(
        list(baselines), imgsz=args.imgsz, device=args.device, runs=args.runs, warmup=args.warmup, baselines=baselines
    )
    if wants_docs(args.docs, full_run=args.yamls == YAML_DIR):
        where = "cpu" if args.device == "cpu" else "gpu"
        note = f"Scale {args.scale}, {args.imgsz} px, {args.runs} timed passes after {args.warmup} warm-up passes."
        print(write_benchmark(f"profile_variants_{where}", table, device=args.device, note=note))


if __name__ == "__main__":
    main()
