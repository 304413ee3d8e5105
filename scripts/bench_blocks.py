"""Block micro-benchmark for the docs: time / same-shape clone() at P3/P4/P5 of yolov8n, ops, ours vs plain.

Every figure is a median over paired, shuffled rounds (see ``yolo_attn.profiling.paired``). ``--models`` adds
whole-model tables: each yolo_attn model twice, as shipped ("new") and with its blocks' pre-issue-9 formulation
("plain": explicit products, shared MLP run twice, BatchNorms not folded), against the first model. Examples::

    python scripts/bench_blocks.py                                   # all blocks, 200 rounds, 2 threads
    python scripts/bench_blocks.py --blocks CBAM CoordAtt --compile  # also torch.compile'd blocks (slow)
    python scripts/bench_blocks.py --no-blocks --profile CBAM@P3 CoordAtt@P5  # torch.profiler: where the time goes
    python scripts/bench_blocks.py --allocator default               # glibc's own trimming (noisier: see --help)
    python scripts/bench_blocks.py --no-blocks --runtime onnxruntime \
        --models yolov8n.yaml model_yamls/yolov8n-cbam.yaml model_yamls/yolov8n-mhsa.yaml
    python scripts/bench_blocks.py --train                   # training: fwd+bwd / clone, saved bytes, mix price,
                                                             # whole-model steps; from scratch and fine-tuned
    python scripts/bench_blocks.py --train --train-parts steps --step-rounds 5   # only the whole-model steps
    python scripts/bench_blocks.py --cost-table              # the block cost table (params, GFLOPs, eager, ORT)

Each table is also written to ``docs/benchmarks/<name>.md`` with the command, the machine, the date and the commit
(``yolo_attn.profiling.publish``), which the documentation site includes: blocks_inference, whole_models_<runtime>,
cost_table, train_blocks, mix_price, train_steps. A run with ``--blocks`` writes nothing there unless ``--docs``.

Every registered block is benchmarked: at its declared ``bench_levels``, else at the levels of its standard sites.
Fine-tuned means the block after ``start_as_identity()`` with its ``identity_mix`` set to 0.3 (``--mix``).
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
    from yolo_attn.profiling.publish import add_docs_argument, wants_docs

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
    train = parser.add_argument_group("training (--train) and cost table (--cost-table)")
    train.add_argument("--train", action="store_true", help="training tables instead of the inference block table")
    train.add_argument(
        "--train-parts",
        nargs="+",
        default=["blocks", "mix", "steps"],
        choices=("blocks", "mix", "steps"),
        help="blocks: fwd+bwd / clone and saved bytes; mix: eval with mix / without; steps: whole-model train steps",
    )
    train.add_argument("--train-rounds", type=int, default=30, help="paired rounds of the block training table")
    train.add_argument("--train-batch", type=int, default=2, help="batch of the block training table")
    train.add_argument("--mix-rounds", type=int, default=150, help="paired rounds of the mix table")
    train.add_argument("--mix-threads", type=int, default=1, help="threads of the mix table")
    train.add_argument("--mix", type=float, default=0.3, help="identity mix of the fine-tuned blocks")
    train.add_argument("--step-rounds", type=int, default=10, help="paired rounds per block of the training steps")
    train.add_argument("--step-imgsz", type=int, default=320)
    train.add_argument("--step-batch", type=int, default=8)
    train.add_argument("--cost-table", action="store_true", help="the block cost table of the docs, every block")
    train.add_argument(
        "--cost-runtimes", nargs="*", default=["torch", "onnxruntime"], help="runtimes of the cost table (none: static)"
    )
    train.add_argument("--no-fine-tuned", action="store_true", help="cost table: scratch models only")
    train.add_argument(
        "--inside-table",
        action="store_true",
        help="params and GFLOPs each channel block adds to YOLO11n as rows and inside its C3k2 rows (static)",
    )
    add_docs_argument(parser, "each table")
    args = parser.parse_args()
    args.docs = wants_docs(args.docs, full_run=args.blocks is None)
    if args.allocator == "pinned":
        from yolo_attn.profiling.allocator import pin_glibc_allocator

        print(f"allocator: glibc thresholds pinned: {pin_glibc_allocator()}")

    import yolo_attn  # noqa: F401  (registers the blocks)
    from yolo_attn.profiling.blocks import bench_blocks, blocks_table, profiler_table
    from yolo_attn.profiling.plain import plain_model
    from yolo_attn.profiling.publish import write_benchmark
    from yolo_attn.profiling.runtime import runtime_costs, runtime_table
    from yolo_attn.utils.models import load_model

    for spec in args.profile or []:  # where the time goes, for the blocks that miss their goal
        name, _, level = spec.partition("@")
        print(profiler_table(name, level or "P3", args.imgsz, threads=args.threads))
    if args.train:
        train_tables(args)
    if args.cost_table:
        from yolo_attn.profiling.block_costs import block_costs, block_costs_table

        rows, skipped = block_costs(
            args.blocks,
            args.imgsz,
            args.cost_runtimes,
            rounds=args.model_rounds,
            threads=args.threads,
            tuned=not args.no_fine_tuned,
            mix=args.mix,
            on_runtime=lambda partial: print(block_costs_table(partial) + "\n", flush=True),
        )
        print(block_costs_table(rows, skipped))
        if args.docs:
            print(write_benchmark("cost_table", block_costs_table(rows, skipped), note=_settings(args, "model_rounds")))
    if args.inside_table:
        from yolo_attn.profiling.block_costs import inside_costs, inside_costs_table

        rows, skipped = inside_costs(args.blocks, args.imgsz)
        print(inside_costs_table(rows, skipped))
        if args.docs:
            note = f"Static counts (Ultralytics' counter on the fused model) at {args.imgsz} px; no latency measured."
            print(write_benchmark("inside_costs", inside_costs_table(rows, skipped), note=note))
    if not (args.no_blocks or args.train or args.cost_table or args.inside_table):
        rows = bench_blocks(args.blocks, args.imgsz, args.rounds, args.threads, compiled=args.compile)
        print(blocks_table(rows))
        if args.docs:
            print(write_benchmark("blocks_inference", blocks_table(rows), note=_settings(args, "rounds", "imgsz")))
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
        if args.docs:
            table = runtime_table(rows)
            print(write_benchmark(f"whole_models_{args.runtime}", table, note=_settings(args, "model_rounds")))


def train_tables(args: argparse.Namespace) -> None:
    """Print the training tables that ``--train-parts`` selects."""
    from yolo_attn.profiling.publish import write_benchmark
    from yolo_attn.profiling.train_step import bench_train_steps, train_steps_header, train_steps_line
    from yolo_attn.profiling.training import bench_blocks_train, bench_mix, mix_table, train_table

    if "blocks" in args.train_parts:
        rows = bench_blocks_train(
            args.blocks, args.imgsz, args.train_rounds, args.threads, batch=args.train_batch, mix=args.mix
        )
        print(
            f"Training, forward + backward over a clone's, {args.imgsz} px levels, batch {args.train_batch}, "
            f"{args.train_rounds} rounds, {args.threads} threads; saved activations exclude parameters and the input:"
        )
        print(train_table(rows), flush=True)
        if args.docs:
            print(
                write_benchmark("train_blocks", train_table(rows), note=_settings(args, "train_rounds", "train_batch"))
            )
    if "mix" in args.train_parts:
        rows = bench_mix(args.blocks, args.imgsz, args.mix_rounds, args.mix_threads, mix=args.mix)
        where = f"{args.mix_rounds} rounds, {args.mix_threads} threads"
        print(f"\nEval, fused, mix {args.mix} / no mix, same weights, {where}:")
        print(mix_table(rows), flush=True)
        if args.docs:
            print(
                write_benchmark("mix_price", mix_table(rows), note=_settings(args, "mix_rounds", "mix_threads", "mix"))
            )
    if "steps" in args.train_parts:
        from yolo_attn import registry
        from yolo_attn.profiling.block_costs import yolov8n_variants

        names = args.blocks or [s.name for s in registry.specs()]
        buildable, skipped = yolov8n_variants(names)
        print(f"\nWhole-model training steps (forward, Ultralytics loss, backward, SGD step), {args.threads} threads:")
        print(train_steps_header(args.step_batch, args.step_imgsz, args.step_rounds), flush=True)
        rows = bench_train_steps(
            list(buildable),
            args.step_imgsz,
            args.step_batch,
            args.step_rounds,
            args.threads,
            mix=args.mix,
            on_row=lambda row: print(train_steps_line(row), flush=True),
        )
        if rows:
            print(f"\nyolov8n: {rows[0]['baseline_mem'] / 2**20:.0f} MiB saved for backward.")
        for name in skipped:
            print(f"{name}: no yolov8n variant")
        if rows and args.docs:
            from yolo_attn.profiling.train_step import train_steps_table

            note = _settings(args, "step_rounds", "step_imgsz", "step_batch")
            note += "".join(f"; {name}: no yolov8n variant" for name in skipped)
            print(write_benchmark("train_steps", train_steps_table(rows), note=note))


def _settings(args: argparse.Namespace, *names: str) -> str:
    """The settings a table depends on, as one line for its docs file (threads and allocator always)."""
    shown = {"threads": args.threads, "allocator": args.allocator, **{name: getattr(args, name) for name in names}}
    return "Settings: " + ", ".join(f"{key.replace('_', '-')} {value}" for key, value in shown.items())


if __name__ == "__main__":
    main()
