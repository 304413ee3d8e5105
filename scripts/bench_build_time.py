"""Build time of a model YAML with the registry against its plain Ultralytics baseline, as a ratio in one run.

Example:
    python scripts/bench_build_time.py --model model_yamls/yolov8x-cbam.yaml --baseline yolov8x.yaml --repeats 5

The default pair also writes docs/benchmarks/build_time.md (another pair only with --docs).
"""

from __future__ import annotations

import argparse
import statistics
import time

from ultralytics.nn.tasks import DetectionModel

import yolo_attn  # noqa: F401  (registers the blocks)
from yolo_attn.profiling.publish import add_docs_argument, wants_docs, write_benchmark


def build_seconds(cfg: str, repeats: int) -> list[float]:
    """Wall time of ``DetectionModel(cfg)`` (parse, stride probe, weight init), ``repeats`` times."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        DetectionModel(cfg, verbose=False)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="model_yamls/yolov8x-cbam.yaml")
    parser.add_argument("--baseline", default="yolov8x.yaml")
    parser.add_argument("--repeats", type=int, default=5)
    add_docs_argument(parser, "the table")
    args = parser.parse_args()
    defaults = parser.parse_args([])
    build_seconds(args.baseline, 1)  # warm-up: imports, allocator
    base, ours = [], []
    for _ in range(args.repeats):  # interleave so drift in machine load hits both alike
        base += build_seconds(args.baseline, 1)
        ours += build_seconds(args.model, 1)
    b, o = statistics.median(base), statistics.median(ours)
    table = f"| model | median build s ({args.repeats} runs) |\n| --- | --- |\n"
    table += f"| {args.baseline} | {b:.3f} |\n| {args.model} | {o:.3f} |"
    ratio = f"ratio {args.model} / {args.baseline}: {o / b:.3f}x"
    print(f"{table}\n{ratio}")
    full = (args.model, args.baseline) == (defaults.model, defaults.baseline)
    if wants_docs(args.docs, full_run=full):
        print(write_benchmark("build_time", table, note=ratio + " (runs interleaved, after one warm-up build)"))


if __name__ == "__main__":
    main()
