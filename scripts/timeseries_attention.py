"""The sensor time-series system: a small CNN with and without spatial attention on synthetic activity windows.

Trains ``yolo_attn.demos.timeseries.TimeSeriesAttentionNet`` (stages conv -> SpatialAttention(k=(3, 1), pool="mean") ->
BatchNorm -> ReLU) with and without the attention gate, over seeds, with identical settings; writes one per-epoch CSV
per run, a summary table (val accuracy mean ± std, paired delta with the noise flag) and a plot of the attention
gates over time. See yolo_attn/demos/timeseries.py for the network and the data.

Usage:
    python scripts/timeseries_attention.py                                   # 3 seeds, 10 epochs, runs/timeseries/exp*
    python scripts/timeseries_attention.py --epochs 20 --seeds 0 1 2 3 4 --out runs/ts

A run with the default settings also writes its table to docs/benchmarks/timeseries.md (``--docs`` for any run).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

# Python puts this script's folder first on sys.path, where scripts/profile.py shadows the standard library's
# `profile` module, which torch imports (through cProfile) when the optimizer is built.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import torch  # noqa: E402

from yolo_attn.demos.timeseries import TrainSettings, run_comparison  # noqa: E402
from yolo_attn.profiling.publish import add_docs_argument, wants_docs, write_benchmark  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Parse the flags, run the comparison and print the table."""
    defaults = TrainSettings()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: a new runs/timeseries/exp*)")
    parser.add_argument("--batch", type=int, default=defaults.batch)
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--n-train", type=int, default=defaults.n_train)
    parser.add_argument("--n-val", type=int, default=defaults.n_val)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: the network is tiny)",
    )
    add_docs_argument(parser, "the table")
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.batch < 1 or args.threads < 1:
        parser.error(f"--epochs, --batch and --threads must be >= 1, got {args.epochs}, {args.batch}, {args.threads}")
    out = args.out
    if out is None:
        from ultralytics.utils.files import increment_path

        out = increment_path(Path("runs") / "timeseries" / "exp", mkdir=True)
    torch.set_num_threads(args.threads)
    settings = TrainSettings(epochs=args.epochs, batch=args.batch, lr=args.lr, n_train=args.n_train, n_val=args.n_val)
    start = time.perf_counter()
    table, _ = run_comparison(out, args.seeds, settings)
    wall = time.perf_counter() - start
    print(f"\n{table}\n\nCSVs, summary.md and attention_over_time.png in {out} ({wall:.0f} s)")
    default = parser.parse_args([])
    same = all(getattr(args, k) == getattr(default, k) for k in ("epochs", "seeds", "batch", "lr", "n_train", "n_val"))
    if wants_docs(args.docs, full_run=same):
        print(write_benchmark("timeseries", table, note=f"{wall:.0f} s wall, {args.threads} thread(s)."))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
