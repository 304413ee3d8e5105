"""What every fine-tuning demo shares: pretrain the baseline once (resumably), then print the comparison it fed.

The detection demo (`yolo_attn.demos.detect`) and the segmentation, pose and OBB demos (`yolo_attn.demos.tasks`)
follow the same protocol: the baseline of the task is trained once on an "upstream" synthetic set, and every compared
model (baseline included) is fine-tuned from those weights by ``compare(..., pretrained=weights)``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def pretrain_once(
    model: str,
    data: Path,
    folder: Path,
    *,
    epochs: int,
    imgsz: int,
    batch: int,
    overrides: dict[str, Any],
) -> Path:
    """Train ``model`` once on ``data`` (resumably) and return the weights every compared model starts from.

    Args:
        model (str): Model YAML of the baseline, e.g. ``"yolov8n-seg.yaml"``.
        data (Path): data.yaml of the upstream set.
        folder (Path): Training folder; ``done.json`` marks a finished run, which is then reused as it is.
        epochs (int): Training epochs.
        imgsz (int): Training image size.
        batch (int): Batch size.
        overrides (dict[str, Any]): Further Ultralytics training arguments (optimizer, lr0, workers, ...).

    Returns:
        (Path): ``folder / "weights" / "last.pt"``, the weights after the last epoch.
    """
    from ultralytics import YOLO

    weights, done = folder / "weights" / "last.pt", folder / "done.json"
    if done.is_file() and weights.is_file():
        return weights
    if weights.is_file():  # an interrupted pretraining continues where it stopped
        YOLO(str(weights)).train(resume=True)
    else:
        YOLO(model).train(
            data=str(data),
            epochs=epochs,
            imgsz=imgsz,
            batch=batch,
            device="cpu",
            seed=0,
            deterministic=True,
            amp=False,
            plots=False,
            project=str(folder.parent),
            name=folder.name,
            exist_ok=True,
            **overrides,
        )
    done.write_text(json.dumps({"weights": str(weights), "epochs": epochs}) + "\n")
    return weights


def print_report(result: Path) -> None:
    """Print each fine-tuned run's transfer summary and the comparison table of the folder ``result``.

    Args:
        result (Path): Comparison folder written by ``compare`` (``compare.md``, ``runs/*.json``).
    """
    from yolo_attn.experiments.files import load_runs

    summaries = {run["stem"]: run["transfer"]["summary"] for run in load_runs(result) if run.get("transfer")}
    if summaries:
        print("\n" + "\n".join(f"{stem}: {summary}" for stem, summary in sorted(summaries.items())))
    report = result / "compare.md"
    if report.is_file():
        print(f"\n{report.read_text()}")
        print(f"Table, CSV and plot: {result}/compare.md, compare.csv, compare.png")
