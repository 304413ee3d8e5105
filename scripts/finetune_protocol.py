"""Does the default fine-tuning protocol engage every block family under every optimizer? The evidence grid.

On the detect demo's data and its pretrained yolov8n (`yolo_attn.demos.detect`: built once, or reused from --demo), it
runs ``yolo-attn compare`` once per (epochs, optimizer, protocol): the baseline and the given blocks, 2 seeds, the
demo's settings otherwise, and writes one table from the comparisons' own files (``compare.csv``, ``runs/*.json``) to
docs/benchmarks/finetune_protocol.md (``--no-docs``: printed only), with the command, the machine, the date and the
commit. The table is rewritten after every comparison, so an interrupted grid leaves the part that ran (and a rerun with
the same --out keeps the finished runs).

A protocol is ``default``, ``old`` (the default before the mixes' own step), or one ``attn_*`` setting such as
``attn_mix_lr=0.1`` (a sweep of that setting); ``NAME:OPT1,OPT2`` runs it under those optimizers only.

python scripts/finetune_protocol.py --epochs 10 --optimizers SGD AdamW auto --blocks cbam eca ema simam --seeds 0 1
python scripts/finetune_protocol.py --epochs 10 --optimizers SGD AdamW --protocols default old:SGD --blocks cbam eca
python scripts/finetune_protocol.py --epochs 10 --optimizers SGD AdamW --protocols attn_mix_lr=0.01 default \
    attn_mix_lr=0.1 --doc mix_lr_sweep
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OPTIMIZERS = {  # the demo's settings, but the optimizer
    "SGD": ["optimizer=SGD", "lr0=0.01"],
    "AdamW": ["optimizer=AdamW", "lr0=0.001"],
    "auto": ["optimizer=auto"],
}
COMMON = ["warmup_epochs=1", "close_mosaic=5", "val=False", "workers=0"]
TABLES = ("finetune_protocol", "mix_lr_sweep")  # the docs/benchmarks files this script writes (--doc)
PROTOCOLS = {  # name -> attn_* settings; "old": the earlier default (the run's optimizer steps the mix)
    "default": [],
    "old": ["attn_mix_lr=0"],
}


def protocol_settings(name: str) -> list[str]:
    """The ``attn_*`` settings of a protocol: a named one (`PROTOCOLS`) or one setting ``attn_<key>=<value>``."""
    if name in PROTOCOLS:
        return PROTOCOLS[name]
    if name.startswith("attn_") and "=" in name:
        return [name]
    raise SystemExit(
        f"unknown protocol {name!r}: expected one of {', '.join(PROTOCOLS)} or a setting attn_<key>=<value>"
    )


def main() -> None:
    from yolo_attn.profiling.publish import add_docs_argument

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/finetune_protocol"), help="comparisons go here")
    parser.add_argument(
        "--demo", type=Path, default=None, help="demo folder with data/ and pretrain/ (default out/demo)"
    )
    add_docs_argument(parser, "its table (docs/benchmarks/finetune_protocol.md)")
    parser.add_argument("--epochs", type=int, nargs="+", default=[10])
    parser.add_argument("--optimizers", nargs="+", default=list(OPTIMIZERS), choices=list(OPTIMIZERS))
    parser.add_argument(
        "--protocols", nargs="+", default=["default"], help="default, old, attn_<key>=<value>; old:SGD: only with SGD"
    )
    parser.add_argument("--doc", default=TABLES[0], choices=TABLES, help="the table's name under docs/benchmarks/")
    parser.add_argument("--blocks", nargs="+", default=["cbam", "eca", "ema", "simam"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument(
        "--trained-at", default=None, help="commit the runs trained with, when the table is rewritten later"
    )
    args = parser.parse_args()
    only = {p.split(":")[0]: p.split(":")[1].split(",") if ":" in p else args.optimizers for p in args.protocols}
    cells = [(e, o, p) for e in args.epochs for p in only for o in args.optimizers if o in only[p]]
    settings = {p: protocol_settings(p) for p in only}  # an unknown protocol stops here, before the demo is built

    from yolo_attn.demos import detect

    demo = (args.demo or args.out / "demo").resolve()
    data = detect.synthetic_data(demo / "data", detect.N_TRAIN, detect.N_VAL, seed=0)
    upstream = detect.synthetic_data(demo / "data" / "upstream", detect.N_UPSTREAM_TRAIN, detect.N_VAL, seed=1)
    weights = detect.pretrain_baseline(upstream, demo / "pretrain")
    models = ["yolov8n.yaml", *(f"yolov8n-{b}.yaml" for b in args.blocks)]
    done: list[tuple[tuple[int, str, str], Path, float]] = []
    for epochs, optimizer, protocol in cells:
        out = (args.out / f"e{epochs}-{optimizer}-{protocol}").resolve()
        command = [sys.executable, "-m", "yolo_attn", "compare", "--data", str(data), "--models", *models]
        command += ["--seeds", *map(str, args.seeds), "--epochs", str(epochs), "--imgsz", str(detect.IMGSZ)]
        command += ["--batch", str(detect.BATCH), "--device", "cpu", "--pretrained", str(weights)]
        command += ["--latency-runs", "0", "--out", str(out), *OPTIMIZERS[optimizer], *COMMON, *settings[protocol]]
        print(" ".join(command), flush=True)
        start = time.time()
        proc = subprocess.run(command, cwd=REPO, env=os.environ | {"PYTHONPATH": str(REPO)}, check=False)
        print(f"exit {proc.returncode} after {time.time() - start:.0f} s", flush=True)
        done.append(((epochs, optimizer, protocol), out, time.time() - start))
        write_doc(args, done, cells, weights, data)


def rows_of(out: Path) -> list[dict]:
    """The rows of a comparison's compare.csv, with whether any of a model's runs diverged or failed."""
    from yolo_attn.experiments.files import load_records

    if not (out / "compare.csv").exists():
        return []
    with (out / "compare.csv").open() as f:
        rows = list(csv.DictReader(f))
    records = load_records(out)
    for row in rows:
        mine = [r for r in records if r["stem"] == row["stem"]]
        row["diverged"] = any(diverged(r) for r in mine)
        row["runs"] = sum(r["status"] == "done" for r in mine)
        row["resumed"] = sum(bool(r.get("resumed_at_epoch")) for r in mine)
        row["minutes"] = sum(r.get("duration_s") or 0 for r in mine) / 60
    return rows


def diverged(record: dict) -> bool:
    """A run diverged when it failed, or its final losses or mAP are not finite numbers."""
    if record["status"] != "done":
        return True
    coco = (record.get("metrics") or {}).get("coco") or {}
    numbers = [v for v in coco.values() if isinstance(v, float)]
    results = Path(record.get("train_dir") or "") / "results.csv"
    if results.is_file():
        with results.open() as f:
            last = list(csv.DictReader(f))[-1]
        numbers += [float(v) for k, v in last.items() if "loss" in k]
    return not all(math.isfinite(v) for v in numbers)


def number(text: str, fmt: str) -> str:
    return "–" if text in ("", None) else format(float(text), fmt)


def write_doc(args: argparse.Namespace, done: list, cells: list, weights: Path, data: Path) -> None:
    """Write the table of the comparisons finished so far (every figure read from their files)."""
    import torch
    import ultralytics

    from yolo_attn.profiling.publish import wants_docs, write_benchmark

    trained = f"; the runs trained at commit {args.trained_at}" if args.trained_at else ""
    lines = [
        "Every figure below is read from the comparisons' own files (`compare.csv`, `runs/*.json`, Ultralytics' "
        f"`results.csv`). CPU training, torch {torch.__version__}, ultralytics {ultralytics.__version__}{trained}.",
        "",
        f"- data: the detect demo's fine-tuning set (`{data.parent.name}`, 96 train / 32 val synthetic images, "
        "128 px), "
        f"every model fine-tuned from the demo's pretrained yolov8n (`{weights.name}`, 30 epochs on the upstream set); "
        f"batch 8, seeds {', '.join(map(str, args.seeds))}, {' '.join(COMMON)}, latency not measured",
        f"- grid: {len(done)} of {len(cells)} comparisons ran ("
        + ", ".join(
            f"{e} epochs {o} {p}: {sum(r['minutes'] for r in rows_of(out)):.1f} min of training and evaluation"
            for (e, o, p), out, _ in done
        )
        + "); a run marked resumed was interrupted (its process stopped) and continued from its last.pt",
        "",
        "Protocols: `default` is this commit's default (`attn_mix_lr=0.03`: the mixes stepped by their own Adam rule; "
        "no weight decay on the mix; new-block lr x30); `old` is the default before it (`attn_mix_lr=0`: the run's "
        "optimizer steps the mix at lr x30); `attn_<key>=<value>`: the default with that one setting changed. "
        "Engagement: the relative change a block makes to its input on 16 val "
        "images (mean and min over blocks x seeds); blocks < 1%: block x seed values under 1%, of all. "
        "Δ mAP50-95: paired mean over seeds against the baseline of the same comparison, with its 95% interval. "
        "Diverged: a run failed, or its final losses or mAP are not finite.",
        "",
        "| epochs | optimizer | protocol | model | engagement mean [min] | blocks < 1% | mAP50-95 | Δ mAP50-95 [95% "
        "interval] | diverged |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for (epochs, optimizer, protocol), out, _ in done:
        for row in rows_of(out):
            off = sum(len(v.split(":", 1)[1].split(",")) for v in row.get("blocks_off", "").split("; ") if ":" in v)
            n = int(row["engagement_n"] or 0)
            engaged = "–" if not row.get("engagement_mean") else (
                f"{float(row['engagement_mean']):.2%} [{float(row['engagement_min']):.2%}]")  # fmt: skip
            delta = "–"
            if row.get("delta_map50_95_mean"):
                delta = f"{float(row['delta_map50_95_mean']):+.4f}"
                if row.get("delta_map50_95_low"):
                    delta += f" [{float(row['delta_map50_95_low']):+.4f}, {float(row['delta_map50_95_high']):+.4f}]"
            resumed = f", {row['resumed']} resumed" if row["resumed"] else ""
            lines.append(
                f"| {epochs} | {optimizer} | {protocol} | {row['stem']} | {engaged} | "
                f"{f'{off}/{n}' if n else '–'} | {number(row.get('map50_95_mean', ''), '.4f')} | {delta} | "
                f"{'yes' if row['diverged'] else 'no'} ({row['runs']} runs{resumed}) |"
            )
    notes = [(out, (out / "compare.md").read_text()) for _, out, _ in done if (out / "compare.md").exists()]
    lines += ["", "Blocks under 1%, as each comparison's report names them:", ""]
    for out, text in notes:
        named = [line for line in text.splitlines() if line.startswith("- **") and "identity" in line]
        lines += [f"- `{out.name}`: " + ("none" if not named else ""), *(f"  {line}" for line in named)]
    if not wants_docs(args.docs):
        print("\n".join(lines), flush=True)
        return
    written = write_benchmark(args.doc, "\n".join(lines))  # header: this command, machine and commit
    print(f"written {written}", flush=True)


if __name__ == "__main__":
    main()
