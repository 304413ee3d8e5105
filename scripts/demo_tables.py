"""Run the demos and write their comparison tables to docs/benchmarks/ (the tables the docs show for each demo).

Each demo runs as a user runs it, ``yolo-attn demo [--task T] --out DIR`` (CPU, embedded data, minutes each), and
its report's table (``DIR/compare/compare.md``) is written with the command, the machine, the date, the commit and
the wall time (``yolo_attn.profiling.publish``):

    python scripts/demo_tables.py                            # detect   -> docs/benchmarks/demo_detect.md
    python scripts/demo_tables.py --task classify            # classify -> docs/benchmarks/demo_classify.md
    python scripts/demo_tables.py --task segment pose obb    # one file for the three, docs/benchmarks/demo_tasks.md
    python scripts/demo_tables.py --task classify --out runs/demo_cls   # keep (or resume) the demo folder
"""

from __future__ import annotations

import argparse
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FILES = {"detect": "demo_detect", "classify": "demo_classify", "segment": "demo_tasks", "pose": "demo_tasks"}
FILES["obb"] = "demo_tasks"
TASKS = tuple(FILES)


def first_table(report: Path) -> str:
    """Return the first markdown table of a ``compare.md``."""
    lines, table = report.read_text().splitlines(), []
    for line in lines:
        if line.startswith("|"):
            table.append(line)
        elif table:
            break
    if not table:
        raise SystemExit(f"{report}: no table")
    return "\n".join(table)


def run_demo(task: str, out: Path) -> tuple[str, float, float]:
    """Run one demo; return its table, wall seconds and CPU seconds (user + sys of the demo process)."""
    command = [sys.executable, "-m", "yolo_attn", "demo", "--out", str(out)]  # = yolo-attn demo
    if task != "detect":
        command[4:4] = ["--task", task]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return first_table(out / "compare" / "compare.md"), wall, cpu


def main() -> int:
    """Run the demos named by ``--task`` and write their tables."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--task", nargs="+", default=["detect"], choices=("detect", "classify", "segment", "pose", "obb")
    )
    parser.add_argument("--out", type=Path, default=None, help="demo folder (one task) or parent folder (several)")
    args = parser.parse_args()
    if len({FILES[t] for t in args.task}) > 1:
        parser.error("one file per run: detect, classify, or any of segment/pose/obb together")
    from yolo_attn.profiling.publish import write_benchmark

    scratch = Path(tempfile.mkdtemp(prefix="demo_tables_")) if args.out is None else None
    parts = []
    for task in args.task:
        folder = args.out if args.out is not None and len(args.task) == 1 else (args.out or scratch) / task
        table, wall, cpu = run_demo(task, folder)
        minutes, seconds = divmod(round(wall), 60)
        timing = f"`yolo-attn demo --task {task}`: {minutes} min {seconds} s wall, {cpu:.0f} s CPU (user + sys)"
        parts.append(table if len(args.task) == 1 else f"**{task}**\n\n{table}")
        parts.append(timing)
    if scratch is not None:
        shutil.rmtree(scratch, ignore_errors=True)
    note = "The first table of each run's `compare/compare.md`, as the report writes it."
    print(write_benchmark(FILES[args.task[0]], "\n\n".join(parts), note=note))
    return 0


if __name__ == "__main__":
    sys.exit(main())
