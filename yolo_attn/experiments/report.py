"""The report of a comparison folder: a pure function of its files (plan, cell records, costs, latency).

``write_report(out)`` reads ``plan.json``, ``runs/*.json``, ``costs/*.json``, ``latency.json`` and the runs' own
``train/<key>/results.csv`` and writes ``compare.csv``, ``compare.md`` and ``compare.png`` (and, for a task with
per-epoch curves such as classification, ``accuracy.png``; for a placement grid, ``placement_<metric>.png``). It ties
four modules together: `aggregate` (records -> one row per model, the statistics of `stats`, the verdicts
Holm-corrected over the variants of each metric), `sections` (seeds that trained identically, named in bold and
claiming no interval; the placement heat map), `render` (rows -> markdown, CSV) and `plots` (rows -> figures). What
differs between tasks is the task's description in ``yolo_attn.experiments.tasks``; the code is the same for all. It
measures and trains nothing, so it can run at any time, on a partial grid too (e.g. while Slurm jobs still run), as
often as wanted: the same files give the same output, byte for byte.
"""

from __future__ import annotations

from pathlib import Path

from yolo_attn.experiments.aggregate import (
    COST_KEYS,
    DELTA_KEYS,
    engagement_stats,
    metric_by_seed,
    read_costs,
    results_csvs,
    summarize,
)
from yolo_attn.experiments.files import FAILED, load_records, run_key
from yolo_attn.experiments.plan import load_plan
from yolo_attn.experiments.plots import plot, plot_accuracy_curves
from yolo_attn.experiments.render import (
    _delta_cell,
    engagement_notes,
    markdown_table,
    protocol,
    runtime_section,
    write_csv,
)
from yolo_attn.experiments.sections import placement_section, seed_check
from yolo_attn.experiments.tasks import get_task

__all__ = (
    "COST_KEYS",
    "DELTA_KEYS",
    "_delta_cell",
    "engagement_notes",
    "engagement_stats",
    "markdown_table",
    "metric_by_seed",
    "plot",
    "protocol",
    "read_costs",
    "results_csvs",
    "runtime_section",
    "summarize",
    "write_csv",
    "write_report",
)


def write_report(out: str | Path) -> Path:
    """Write ``compare.csv``, ``compare.md``, ``compare.png`` (and e.g. ``accuracy.png``) from a comparison folder.

    ``compare.md`` links each finished run's per-epoch ``results.csv`` (relative paths); a task with a curve figure
    (``TaskReport.curve``, e.g. classification) plots it from those files. Only cells of the plan's models and seeds
    enter the tables. The header line says how many cells are finished and names the failed ones. Costs come from
    ``costs/`` and ``latency.json`` (see ``yolo_attn.experiments.costs``); latency is shown only when it was measured
    for exactly the models that have a finished cell.

    Args:
        out (str | Path): Comparison folder.

    Returns:
        (Path): Path of ``compare.md``.
    """
    out = Path(out)
    plan = load_plan(out)
    keys = {cell.key for cell in plan.cells}
    records = [r for r in load_records(out) if f"{r['stem']}_seed{r['seed']}" in keys]
    runs = [r for r in records if r["status"] != FAILED]
    failed = sorted(f"{r['stem']}_seed{r['seed']}" for r in records if r["status"] == FAILED)
    if not runs:
        detail = f"; failed: {', '.join(failed)} (see runs/<name>.json)" if failed else ""
        raise FileNotFoundError(f"no finished cell of {plan.stems} with seeds {plan.seeds} in {out / 'runs'}{detail}")
    settings = plan.settings
    task = settings.get("task", "detect")
    spec = get_task(task)
    done_stems = [s for s in plan.stems if any(r["stem"] == s for r in runs)]
    costs = read_costs(out, done_stems, settings["imgsz"])
    logs = results_csvs(out, plan, runs)
    unclaimed, seed_warnings = seed_check(logs, plan.stems[0])
    summary = summarize(runs, plan.stems, costs, task, unclaimed)
    rows = [{"model": m, **row} for m, row in zip(plan.models, summary, strict=True)]
    write_csv(rows, out / "compare.csv")
    overrides = " ".join(f"{k}={v}" for k, v in settings["train_overrides"].items())
    failures = f", {len(failed)} failed ({', '.join(failed)}: see runs/<name>.json)" if failed else ""
    header = (
        f"Data `{settings['data']}`, epochs={settings['epochs']}, imgsz={settings['imgsz']}, "
        f"batch={settings['batch']}{f', overrides `{overrides}`' if overrides else ''}, "
        f"seeds {', '.join(map(str, plan.seeds))}; {len(runs)}/{len(plan.cells)} runs finished{failures}. "
        f"{spec.source.format(backend=settings['backend'])}{spec.note(runs)}\n\nProtocol: {protocol(plan)}."
    )
    links = ", ".join(
        f"[{run_key(stem, seed)}]({path.relative_to(out).as_posix()})"
        for stem, by_seed in logs.items()
        for seed, path in by_seed.items()
    )
    body = markdown_table(rows, task)
    if seed_warnings:
        body = f"{seed_warnings}\n\n{body}"
    grid = placement_section(out, plan, rows, task)
    if grid:
        body += f"\n\n{grid}"
    notes = engagement_notes(rows)
    if notes:
        body += f"\n\n{notes}"
    if links:
        body += f"\n\nPer-epoch training logs (Ultralytics `results.csv`): {links}."
    if spec.curve is not None and logs:
        column, ylabel, name = spec.curve
        plot_accuracy_curves(
            {stem: list(by_seed.values()) for stem, by_seed in logs.items()}, out / name, column, ylabel
        )
        body += f"\n\n![{ylabel} per epoch]({name})"
    (out / "compare.md").write_text(header + "\n\n" + body + "\n" + runtime_section(out, done_stems))
    title = f"{spec.data_name(settings['data'])}: {settings['epochs']} epochs, imgsz {settings['imgsz']}"
    plot(rows, out / "compare.png", title=title, task=task)
    return out / "compare.md"
