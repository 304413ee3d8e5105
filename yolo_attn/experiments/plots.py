"""The figures of a comparison: ``compare.png`` (headline metric against cost) and the per-epoch curves of all runs.

matplotlib's object API only (no pyplot), so they render with Agg and never touch the caller's backend.
"""

from __future__ import annotations

import csv
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from yolo_attn.experiments.tasks import get_task

ACCURACY_COLUMN = "metrics/accuracy_top1"  # Ultralytics' results.csv column of the val top-1 accuracy


def plot(rows: Sequence[dict[str, Any]], path: Path, title: str = "", task: str = "detect") -> None:
    """Plot the task's first metric (mean, error bar = std over seeds) against batch-1 latency, one point per model.

    Falls back to GFLOPs on the x axis when latency was not measured. Uses matplotlib's object API (no pyplot), so
    it renders with Agg and never touches the caller's backend.

    Args:
        rows (Sequence[dict[str, Any]]): Rows from ``summarize``, baseline first.
        path (Path): Output PNG.
        title (str): Plot title.
        task (str): Key of `yolo_attn.experiments.tasks.TASKS`.
    """
    from matplotlib.figure import Figure

    spec = get_task(task)
    metric = next(iter(spec.metrics))
    plotted = [r for r in rows if r[f"{metric}_mean"] is not None]
    use_latency = bool(plotted) and all(r["latency_ms"] is not None for r in plotted)
    x_key, x_label = ("latency_ms", "latency bs1 (ms)") if use_latency else ("gflops", "GFLOPs")
    if use_latency:
        measured = plotted[0]
        threads = f", {measured['threads']} threads" if measured["device"] == "cpu" and measured.get("threads") else ""
        x_label = f"latency bs1 (ms, {measured['device']}{threads})"
    fig = Figure(figsize=(6.4, 4.8), dpi=150, tight_layout=True)
    ax = fig.add_subplot()
    for row in plotted:
        if row[x_key] is None:
            continue
        ax.errorbar(
            row[x_key],
            row[f"{metric}_mean"],
            yerr=row[f"{metric}_std"] or 0.0,
            fmt="s" if row["baseline"] else "o",
            capsize=4,
            label=f"{row['stem']}{' (baseline)' if row['baseline'] else ''}, {len(row['seeds'])} seeds",
        )
        ax.annotate(row["stem"], (row[x_key], row[f"{metric}_mean"]), textcoords="offset points", xytext=(5, 5))
    ax.set_xlabel(x_label)
    ax.set_ylabel(f"{spec.plot_label} (mean ± std over seeds)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.savefig(path)


def read_accuracy(results_csv: str | Path, column: str = ACCURACY_COLUMN) -> tuple[list[int], list[float]]:
    """Read one run's per-epoch val accuracy from Ultralytics' ``results.csv``.

    Args:
        results_csv (str | Path): The run's ``results.csv``.
        column (str): Column to read (header names are stripped of padding).

    Returns:
        (tuple[list[int], list[float]]): Epochs and values.

    Raises:
        KeyError: If the CSV has no such column (e.g. a detection run).
    """
    with Path(results_csv).open(newline="") as f:
        rows = [{k.strip(): v for k, v in row.items()} for row in csv.DictReader(f)]
    if rows and column not in rows[0]:
        raise KeyError(f"{results_csv} has no column {column!r}; columns: {', '.join(rows[0])}")
    rows = [r for r in rows if r[column].strip() not in {"", "nan"}]
    return [int(float(r["epoch"])) for r in rows], [float(r[column]) for r in rows]


def plot_accuracy_curves(
    results_csvs: dict[str, list[Path]], path: str | Path, column: str = ACCURACY_COLUMN, ylabel: str = "val top-1"
) -> Path:
    """Plot the val accuracy per epoch of every run in one figure: each seed a thin line, each model's mean thick.

    The mean is taken per epoch over the seeds that reached it.

    Args:
        results_csvs (dict[str, list[Path]]): Model name -> the ``results.csv`` of each of its seeds.
        path (str | Path): PNG file to write.
        column (str): ``results.csv`` column to plot.
        ylabel (str): Y-axis label.

    Returns:
        (Path): ``path``.

    Raises:
        ValueError: If no run is given.
    """
    from matplotlib.figure import Figure

    if not any(results_csvs.values()):
        raise ValueError("plot_accuracy_curves: expected at least one results.csv")
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.subplots()
    colors = [f"C{k}" for k in range(10)]
    for k, (name, csvs) in enumerate(results_csvs.items()):
        color = colors[k % len(colors)]
        per_epoch: dict[int, list[float]] = {}
        for file in csvs:
            epochs, values = read_accuracy(file, column)
            ax.plot(epochs, values, color=color, lw=0.8, alpha=0.45)
            for e, v in zip(epochs, values, strict=True):
                per_epoch.setdefault(e, []).append(v)
        if per_epoch:
            epochs = sorted(per_epoch)
            means = [statistics.fmean(per_epoch[e]) for e in epochs]
            ax.plot(epochs, means, color=color, lw=2.5, label=f"{name} (mean of {len(csvs)})")
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Validation accuracy per epoch (thin: seeds, thick: mean)", fontsize=10)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path
