"""Block micro-benchmark for the README: time / same-shape clone() at P3/P4/P5 of yolov8n, ops, ours vs plain.

Every figure is a median over paired, shuffled rounds (see ``yolo_attn.profiling.paired``). ``--models`` adds
whole-model tables: each yolo_attn model twice, as shipped ("new") and with its blocks' pre-issue-9 formulation
("plain": explicit products, shared MLP run twice, BatchNorms not folded), against the first model. Examples::

    python scripts/bench_blocks.py                                   # all blocks, 200 rounds, 2 threads
    python scripts/bench_blocks.py --blocks CBAM CoordAtt --compile  # also torch.compile'd blocks (slow)
    python scripts/bench_blocks.py --no-blocks --profile CBAM@P3 CoordAtt@P5  # torch.profiler: where the time goes
    python scripts/bench_blocks.py --allocator default               # glibc's own trimming (noisier: see --help)
    python scripts/bench_blocks.py --no-blocks --runtime onnxruntime \
        --models yolov8n.yaml model_yamls/yolov8n-cbam.yaml model_yamls/yolov8n-mhsa.yaml
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

# scripts/profile.py shadows the standard library's `profile`, which cProfile (imported by torch.onnx and torch.compile)
# needs: take this folder off the import path
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

os.environ.setdefault("YOLO_OFFLINE", "1")  # before the first ultralytics import, which `import yolo_attn` makes
os.environ.setdefault("YOLO_AUTOINSTALL", "0")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--blocks", nargs="+", default=None, help="block names (default: all)")
    parser.add_argument("--no-blocks", action="store_true", help="skip the block table")
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--rounds", type=int, default=200, help="paired rounds per block and shape")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile'd blocks")
    parser.add_argument("--models", nargs="+", default=None, help="whole models: the first is the baseline")
    parser.add_argument("--runtime", default="torch", choices=("torch", "onnxruntime"))
    parser.add_argument("--model-rounds", type=int, default=60, help="paired rounds of the whole-model table")
    parser.add_argument(
        "--profile", nargs="+", default=None, metavar="BLOCK@LEVEL", help="e.g. CBAM@P3: profiler table"
    )
    parser.add_argument(
        "--allocator",
        default="pinned",
        choices=("pinned", "default"),
        help="pinned: glibc keeps freed blocks (see yolo_attn.profiling.allocator); default: glibc's adaptive trimming",
    )
    args = parser.parse_args()
    if args.allocator == "pinned":
        from yolo_attn.profiling.allocator import pin_glibc_allocator

        print(f"allocator: glibc thresholds pinned: {pin_glibc_allocator()}")

    import yolo_attn  # noqa: F401  (registers the blocks)
    from yolo_attn.profiling.blocks import bench_blocks, blocks_table, profiler_table
    from yolo_attn.profiling.cost import load_model
    from yolo_attn.profiling.plain import plain_model
    from yolo_attn.profiling.runtime import runtime_costs, runtime_table

    for spec in args.profile or []:  # where the time goes, for the blocks that miss their goal
        name, _, level = spec.partition("@")
        print(profiler_table(name, level or "P3", args.imgsz, threads=args.threads))
    if not args.no_blocks:
        rows = bench_blocks(args.blocks, args.imgsz, args.rounds, args.threads, compiled=args.compile)
        print(blocks_table(rows))
    if args.models:
        models, names = [], []
        for spec in args.models:
            model, name = load_model(spec), Path(spec).stem
            if any(type(m).__module__.startswith("yolo_attn.modules") for m in model.modules()):
                models.append(plain_model(model))
                names.append(f"{name} (plain)")
                name = f"{name} (new)"
            models.append(model)
            names.append(name)
        rows = runtime_costs(
            models, args.imgsz, args.runtime, rounds=args.model_rounds, threads=args.threads, names=names
        )
        by_name = {row["model"]: row for row in rows}
        for row in rows:  # a plain twin hides its blocks from the counters: take params and FLOPs from the new twin
            twin = by_name.get(row["model"].replace(" (plain)", " (new)"))
            if twin is not row and twin is not None:
                row.update({key: twin[key] for key in ("params", "gflops", "gflops_torch")})
        print(runtime_table(rows))


if __name__ == "__main__":
    main()
