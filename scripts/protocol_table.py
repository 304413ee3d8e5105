"""The fine-tuning protocol table of the docs: the demo's fine-tuning under each option, one compare folder each.

Needs a demo folder after its pretraining (``yolo-attn demo --out DEMO``: ``DEMO/data/subset/data.yaml`` and
``DEMO/pretrain/weights/last.pt``). Each option runs, as a user would,

    yolo-attn compare --data DEMO/data/subset/data.yaml --models yolov8n.yaml yolov8n-cbam.yaml yolov8n-eca.yaml
        --seeds 0 1 --epochs 10 --imgsz 128 --batch 8 --device cpu --latency-runs 0
        --pretrained DEMO/pretrain/weights/last.pt optimizer=AdamW lr0=0.001 warmup_epochs=1 close_mosaic=5
        val=False workers=0 --out OUT/<option> <the option's attn_* settings>

(a finished folder is reused: compare resumes), then the table is read from each folder's ``compare.csv`` and written
to ``docs/benchmarks/protocol.md`` (``yolo_attn.profiling.publish``). Example::

    python scripts/protocol_table.py --demo runs/demo/exp --out runs/protocol      # CPU, about 8 demo fine-tunings
    python scripts/protocol_table.py --demo runs/demo/exp --out runs/protocol --no-run   # the table from the folders
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
from pathlib import Path

#: Protocol options, in table order: the first column and the settings passed to compare.
OPTIONS = (
    ("Ultralytics' groups: `attn_mix_decay=True attn_lr_mult=1`", "attn_mix_decay=True attn_lr_mult=1"),
    ("`attn_mix_decay=False attn_lr_mult=1`", "attn_mix_decay=False attn_lr_mult=1"),
    ("`attn_mix_decay=False attn_lr_mult=10`", "attn_mix_decay=False attn_lr_mult=10"),
    ("`attn_mix_decay=False attn_lr_mult=30` (**default**)", "attn_mix_decay=False attn_lr_mult=30"),
    ("`attn_mix_decay=False attn_lr_mult=100`", "attn_mix_decay=False attn_lr_mult=100"),
    (
        "`attn_mix_decay=False attn_lr_mult=1 attn_warmup_epochs=2`",
        "attn_mix_decay=False attn_lr_mult=1 attn_warmup_epochs=2",
    ),
    (
        "`attn_mix_decay=False attn_lr_mult=10 attn_warmup_epochs=2`",
        "attn_mix_decay=False attn_lr_mult=10 attn_warmup_epochs=2",
    ),
    (
        "`attn_mix_decay=False attn_lr_mult=1 attn_mix_init=0.1` (not the identity at step 0)",
        "attn_mix_decay=False attn_lr_mult=1 attn_mix_init=0.1",
    ),
)
MODELS = ("yolov8n.yaml", "yolov8n-cbam.yaml", "yolov8n-eca.yaml")
FIXED = (
    "--seeds 0 1 --epochs 10 --imgsz 128 --batch 8 --device cpu --latency-runs 0 "
    "optimizer=AdamW lr0=0.001 warmup_epochs=1 close_mosaic=5 val=False workers=0"
)
METRIC = "map50_95"


def folder_name(settings: str) -> str:
    """The compare folder of one option: its settings, joined."""
    return settings.replace("attn_", "").replace("=", "").replace(" ", "_")


def compare_command(demo: Path, out: Path, settings: str) -> list[str]:
    """The ``yolo-attn compare`` command of one option (as ``python -m yolo_attn``)."""
    data, weights = demo / "data" / "subset" / "data.yaml", demo / "pretrain" / "weights" / "last.pt"
    return [
        *(sys.executable, "-m", "yolo_attn", "compare", "--data", str(data), "--models", *MODELS),
        *FIXED.split(),
        *("--pretrained", str(weights), "--out", str(out / folder_name(settings))),
        *settings.split(),
    ]


def _engagement(row: dict[str, str]) -> str:
    if not row.get("engagement_mean"):
        return "–"
    mean, low, high = (100 * float(row[f"engagement_{k}"]) for k in ("mean", "min", "max"))
    return f"{mean:.2f}% [{low:.2f}%, {high:.2f}%]"


def _delta(row: dict[str, str]) -> str:
    prefix = f"delta_{METRIC}_"
    if not row.get(prefix + "mean"):
        return "–"
    mean = float(row[prefix + "mean"])
    if not row.get(prefix + "low"):
        return f"{mean:+.4f}"
    low, high = float(row[prefix + "low"]), float(row[prefix + "high"])
    noise = " *noise*" if row.get(prefix + "noise") == "True" else ""
    return f"{mean:+.4f} [{low:+.4f}, {high:+.4f}]{noise}"


def protocol_table(out: Path) -> str:
    """The markdown table of the options' folders under ``out`` (each must hold its ``compare.csv``)."""
    head = ["protocol", "baseline mAP50-95"]
    head += [f"{b} {c}" for b in ("CBAM", "ECA") for c in ("engagement", "Δ mAP50-95 [95% interval]")]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, settings in OPTIONS:
        with (out / folder_name(settings) / "compare.csv").open() as f:
            rows = {row["stem"]: row for row in csv.DictReader(f)}
        base = rows["yolov8n"]
        cells = [label, f"{float(base[f'{METRIC}_mean']):.4f} ± {float(base[f'{METRIC}_std'] or 0):.4f}"]
        for stem in ("yolov8n-cbam", "yolov8n-eca"):
            cells += [_engagement(rows[stem]), _delta(rows[stem])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    """Run the missing option folders, then write the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo", type=Path, required=True, help="a demo folder after its pretraining")
    parser.add_argument("--out", type=Path, required=True, help="parent of the option folders")
    parser.add_argument("--no-run", action="store_true", help="only read the folders' compare.csv")
    args = parser.parse_args()
    if not args.no_run:
        for _, settings in OPTIONS:
            subprocess.run(compare_command(args.demo, args.out, settings), check=True)
    from yolo_attn.profiling.publish import write_benchmark

    note = (
        "Engagement: mean [min, max] over 4 blocks x 2 seeds. Δ: paired per-seed difference to the baseline of the "
        "same folder, mean [95% interval over the 2 seeds] (*noise*: the interval contains 0). Each row is one "
        f"`yolo-attn compare` folder: `--models {' '.join(MODELS)} {FIXED}` with the demo's data and pretrained "
        "weights and the row's settings."
    )
    print(write_benchmark("protocol", protocol_table(args.out), note=note))
    return 0


if __name__ == "__main__":
    sys.exit(main())
