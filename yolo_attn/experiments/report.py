"""The report of a comparison folder: a pure function of its files (plan, cell records, costs, latency).

``write_report(out)`` reads ``plan.json``, ``runs/*.json``, ``costs/*.json``, ``latency.json`` and the runs' own
``train/<key>/results.csv`` and writes ``compare.csv``, ``compare.md`` and ``compare.png`` (and, for a task with
per-epoch curves such as classification, ``accuracy.png``). What differs between tasks (which metrics, their labels,
where they come from) is the task's description in ``yolo_attn.experiments.tasks``; the code below is the same for
all. It measures and trains nothing, so it can run at any time, on a partial grid too (e.g. while Slurm jobs still
run), as often as wanted: the same files give the same output, byte for byte. The statistics are in
``yolo_attn.experiments.stats``.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from yolo_attn.engagement import NEAR_IDENTITY, SAMPLE_IMAGES
from yolo_attn.evaluation.classify_eval import plot_accuracy_curves
from yolo_attn.experiments.files import FAILED, load_records, read_json, run_key, train_dir
from yolo_attn.experiments.plan import Plan, load_plan
from yolo_attn.experiments.stats import mean_std, paired_delta
from yolo_attn.experiments.tasks import get_task
from yolo_attn.protocol import LEGACY, FineTuneProtocol

COST_KEYS = ("params", "gflops", "gflops_torch", "latency_ms", "latency_p10_ms", "latency_p90_ms", "device", "threads")
DELTA_KEYS = ("mean", "std", "n", "low", "high", "noise", "seeds_needed")


def metric_by_seed(runs: Sequence[dict[str, Any]], stem: str, key: Sequence[str]) -> dict[int, float]:
    """Return ``{seed: value}`` of one metric over one model's finished runs (runs lacking the metric are left out).

    Args:
        runs (Sequence[dict[str, Any]]): Run records (``load_runs``), ``evaluate()``'s result in ``metrics``.
        stem (str): Model stem.
        key (Sequence[str]): Path of the metric in ``evaluate()``'s result, e.g. ``("coco", "AP")``.

    Returns:
        (dict[int, float]): The metric per seed.
    """
    values = {}
    for run in runs:
        value = run["metrics"]
        for part in key:
            value = value.get(part) if isinstance(value, dict) else None
        if run["stem"] == stem and value is not None:
            values[int(run["seed"])] = float(value)
    return values


def summarize(
    runs: Sequence[dict[str, Any]],
    stems: Sequence[str],
    costs: dict[str, dict[str, Any]] | None = None,
    task: str = "detect",
) -> list[dict[str, Any]]:
    """Aggregate run records into one row per model; the first stem is the baseline.

    Args:
        runs (Sequence[dict[str, Any]]): Finished run records with ``stem``, ``seed`` and ``metrics`` (the cell's
            evaluation: ``{"coco": {"AP": ..., "AP50": ...}, "ultralytics": {...}}`` for detection, ``{"top1": ...,
            "top5": ...}`` for classification).
        stems (Sequence[str]): Model stems in table order, baseline first.
        costs (dict[str, dict[str, Any]] | None): Cost per stem (params, GFLOPs, latency; missing ones are left empty).
        task (str): Key of `yolo_attn.experiments.tasks.TASKS`: which metrics to aggregate.

    Returns:
        (list[dict[str, Any]]): Rows with ``stem``, ``baseline``, ``seeds``, the cost keys and, per metric prefix
            ``p`` of the task's ``metrics`` and ``csv_metrics``: ``p_mean``, ``p_std``, ``p_per_seed`` and, except for
            the baseline, ``delta_p_<k>`` for ``k`` in mean, std, n, low, high, noise, seeds_needed (see
            ``stats.paired_delta``); and the `engagement_stats` keys.
    """
    costs = costs or {}
    spec = get_task(task)
    rows = []
    for i, stem in enumerate(stems):
        seeds = sorted(int(r["seed"]) for r in runs if r["stem"] == stem)
        row: dict[str, Any] = {"stem": stem, "baseline": i == 0, "seeds": seeds}
        row.update({k: costs.get(stem, {}).get(k) for k in COST_KEYS})
        row.update(engagement_stats(runs, stem))
        for prefix, (key, _) in {**spec.metrics, **spec.csv_metrics}.items():
            values = metric_by_seed(runs, stem, key)
            row[f"{prefix}_mean"], row[f"{prefix}_std"] = mean_std(list(values.values()))
            row[f"{prefix}_per_seed"] = values
            if i:
                delta = paired_delta(values, metric_by_seed(runs, stems[0], key))
                for name in DELTA_KEYS:
                    row[f"delta_{prefix}_{name}"] = delta[name]
        rows.append(row)
    return rows


def engagement_stats(runs: Sequence[dict[str, Any]], stem: str) -> dict[str, Any]:
    """Summarise the attention blocks' engagement of one model over its blocks and seeds (see `yolo_attn.engagement`).

    Args:
        runs (Sequence[dict[str, Any]]): Run records; those made before engagement was measured are left out.
        stem (str): Model stem.

    Returns:
        (dict[str, Any]): ``engagement_mean``, ``engagement_min``, ``engagement_max`` (over every block of every
            seed), ``engagement_n`` (block x seed values), ``mix_min``, ``mix_max`` (None without mixes),
            ``fine_tuned_blocks`` (True when the blocks are new to pretrained weights: the runs' transfer reports
            list them, or they have an identity mix) and ``near_identity`` (True when such blocks all stayed below
            ``NEAR_IDENTITY``; None when not fine-tuned or not measured).
    """
    values, mixes, fine_tuned = [], [], False
    for run in runs:
        if run["stem"] != stem or not isinstance(run.get("engagement"), dict):
            continue
        blocks = run["engagement"].get("blocks") or {}
        values += [b["engagement"] for b in blocks.values() if b.get("engagement") is not None]
        mixes += [b["identity_mix"] for b in blocks.values() if b.get("identity_mix") is not None]
        # new to pretrained weights: listed by the transfer report, or started as the identity (only such blocks have a
        # mix; a resumed run's report, made by loading its own last.pt, lists no new block)
        fine_tuned |= bool((run.get("transfer") or {}).get("new_blocks")) or any(
            b.get("identity_mix") is not None for b in blocks.values()
        )
    stats: dict[str, Any] = {
        "engagement_mean": sum(values) / len(values) if values else None,
        "engagement_min": min(values, default=None),
        "engagement_max": max(values, default=None),
        "engagement_n": len(values),
        "mix_min": min(mixes, default=None),
        "mix_max": max(mixes, default=None),
        "fine_tuned_blocks": fine_tuned,
    }
    stats["near_identity"] = (stats["engagement_max"] < NEAR_IDENTITY) if (fine_tuned and values) else None
    return stats


def engagement_notes(rows: Sequence[dict[str, Any]]) -> str:
    """Return the report's sentences about models whose new blocks stayed near the identity ("" when none did)."""
    lines = []
    for row in rows:
        if not row.get("near_identity"):
            continue
        mixes = ""
        if row["mix_min"] is not None:
            mixes = f", identity_mix in [{row['mix_min']:+.4f}, {row['mix_max']:+.4f}]"
        lines.append(
            f"- **{row['stem']}**: the new blocks stayed within {NEAR_IDENTITY:.0%} of the identity (engagement at "
            f"most {row['engagement_max']:.2%} over {row['engagement_n']} block x seed values{mixes}): this comparison "
            f"cannot say whether the block helps."
        )
    return "\n".join(lines)


def read_costs(out: Path, stems: Sequence[str], imgsz: int) -> dict[str, dict[str, Any]]:
    """Return the costs recorded in ``out`` for ``stems``: params and GFLOPs, and latency if measured for exactly them.

    Args:
        out (Path): Comparison folder.
        stems (Sequence[str]): Stems of the models with a finished cell, in table order.
        imgsz (int): The comparison's image size (costs measured at another size are ignored).

    Returns:
        (dict[str, dict[str, Any]]): Per stem, what is known of ``COST_KEYS``.
    """
    costs: dict[str, dict[str, Any]] = {}
    for stem in stems:
        path = out / "costs" / f"{stem}.json"
        static = read_json(path) if path.exists() else {}
        costs[stem] = static if static.get("imgsz") == imgsz else {}
    path = out / "latency.json"
    latency = read_json(path) if path.exists() else {}
    key = latency.get("key", {})
    if key.get("stems") == list(stems) and key.get("imgsz") == imgsz:
        for stem in stems:
            costs[stem] = {**costs[stem], **latency["latency"].get(stem, {}), "device": key["device"]}
    return costs


def protocol(plan: Plan) -> str:
    """Return the one-line training protocol of a comparison: fine-tuned from which weights, or from scratch."""
    pretrained = plan.settings.get("pretrained")
    if pretrained:
        recipe = FineTuneProtocol.from_settings(plan.settings.get("protocol", LEGACY.to_settings()))
        return (
            f"every model fine-tuned from `{pretrained}` (the same source weights, baseline included); new attention "
            f"blocks: {recipe.describe()} (`{' '.join(f'{k}={v}' for k, v in recipe.to_settings().items())}`)"
        )
    own = [m for m in plan.models if Path(m).suffix == ".pt"]
    if not own:
        return "from scratch (no pretrained weights)"
    return f"{', '.join(Path(m).name for m in own)} fine-tuned from their own weights, the YAML models from scratch"


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
    summary = summarize(runs, plan.stems, costs, task)
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
    logs = results_csvs(out, plan, runs)
    links = ", ".join(
        f"[{run_key(stem, seed)}]({path.relative_to(out).as_posix()})"
        for stem, by_seed in logs.items()
        for seed, path in by_seed.items()
    )
    body = markdown_table(rows, task)
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


def results_csvs(out: Path, plan: Plan, runs: Sequence[dict[str, Any]]) -> dict[str, dict[int, Path]]:
    """Return the ``results.csv`` of every finished run that has one, model by model (plan order), seed by seed.

    Args:
        out (Path): Comparison folder.
        plan (Plan): Its plan.
        runs (Sequence[dict[str, Any]]): Finished run records.

    Returns:
        (dict[str, dict[int, Path]]): Stem -> seed -> ``out/train/<key>/results.csv``.
    """
    finished = {(r["stem"], int(r["seed"])) for r in runs}
    found: dict[str, dict[int, Path]] = {}
    for cell in plan.cells:
        path = train_dir(out, cell.key) / "results.csv"
        if (cell.stem, cell.seed) in finished and path.is_file():
            found.setdefault(cell.stem, {})[cell.seed] = path
    return found


def runtime_section(out: Path, stems: Sequence[str]) -> str:
    """Return the deployment-runtime table of ``out/runtime.json`` when it covers exactly ``stems``, else ""."""
    from yolo_attn.profiling.runtime import runtime_table

    path = out / "runtime.json"
    measured = read_json(path) if path.exists() else None
    if not measured or measured["key"]["stems"] != list(stems):
        return ""
    return (
        f"\nDeployed latency in {measured['key']['runtime']} (`yolo-attn profile --runtime`: every model once per "
        f"round, shuffled; × latency is the median of the per-round ratios to the baseline):\n\n"
        f"{runtime_table(measured['rows'])}\n"
    )


def write_csv(rows: Sequence[dict[str, Any]], path: Path) -> None:
    """Write summary rows as CSV (raw fractions; per-seed values as ``seed:value`` lists; empty cell = no value).

    Args:
        rows (Sequence[dict[str, Any]]): Rows from ``summarize``.
        path (Path): Output file.
    """
    columns = list(dict.fromkeys(k for row in rows for k in row))

    def cell(value: Any) -> Any:
        if isinstance(value, dict):
            return ";".join(f"{k}:{v:.6g}" for k, v in value.items())
        if isinstance(value, list):
            return ";".join(map(str, value))
        return "" if value is None else value

    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows({k: cell(row.get(k)) for k in columns} for row in rows)


def _number(value: float | None, digits: int, significant: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}g}" if significant else f"{value:.{digits}f}"


def _with_ratio(value: float | None, base: float | None, digits: int, is_base: bool, significant: bool = False) -> str:
    text = _number(value, digits, significant)
    if is_base or value is None or not base:
        return text
    return f"{text} (×{value / base:.2f})"


def markdown_table(rows: Sequence[dict[str, Any]], task: str = "detect") -> str:
    """Return a paste-ready markdown table of summary rows, followed by the legend of its marks.

    Args:
        rows (Sequence[dict[str, Any]]): Rows from ``summarize``, baseline first.
        task (str): Key of `yolo_attn.experiments.tasks.TASKS`: which metric columns.

    Returns:
        (str): Markdown text.
    """
    base = rows[0]
    measured = next((r for r in rows if r.get("latency_ms") is not None), None)
    device = "not measured yet" if measured is None else measured["device"]
    if measured is not None and measured["device"] == "cpu" and measured.get("threads"):
        device += f", {measured['threads']} threads"
    metrics = get_task(task).metrics
    labels = [label for _, label in metrics.values()]
    head = [
        "Model",
        "Seeds",
        "Params (M)",
        "GFLOPs",
        f"Latency bs1 (ms, {device})",
        "Engagement (mean [min, max])",
        *labels,
        *(f"Δ {label}" for label in labels),
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        is_base = row["baseline"]
        cells = [
            f"{row['stem']} (baseline)" if is_base else row["stem"],
            str(len(row["seeds"])),
            _with_ratio(None if row["params"] is None else row["params"] / 1e6, _mega(base["params"]), 2, is_base),
            _with_ratio(row["gflops"], base["gflops"], 3, is_base, significant=True),
            _with_ratio(row["latency_ms"], base["latency_ms"], 1, is_base),
            _engagement_cell(row),
        ]
        for prefix in metrics:
            mean, std = row[f"{prefix}_mean"], row[f"{prefix}_std"]
            cells.append(f"{_number(mean, 3)} ± {_number(std, 3)}" if std is not None else _number(mean, 3))
        for prefix in metrics:
            cells.append("–" if is_base else _delta_cell(row, prefix))
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        f"± is the sample standard deviation over seeds. Δ is the paired per-seed difference to {base['stem']}: "
        "mean and, in brackets, its 95% interval over the n seeds both finished (Student t on the paired differences: "
        "mean ± t(0.975, n-1)·sd/√n). A Δ whose interval contains 0, or that has a single paired seed, is marked "
        "*noise*; for those, *n≈N* is roughly how many seeds would resolve a delta of this size at the observed spread "
        "(the smallest N with t(0.975, N-1)·sd/√N < |mean|; sd is itself estimated from few seeds). "
        "GFLOPs as Ultralytics counts them (fused model). "
        f"Engagement: the relative change ||out - x|| / ||x|| each attention block makes to its input, on the first "
        f"{SAMPLE_IMAGES} val images (best.pt, the EMA weights that are evaluated); mean and range over blocks and "
        "seeds, 0 for a block at the identity. "
        "Latency: median of batch-1 forward passes of the fused models, interleaved so all models share the machine's "
        "conditions. Ratios (×) are to the baseline.",
    ]
    return "\n".join(lines)


def _engagement_cell(row: dict[str, Any]) -> str:
    if row.get("engagement_mean") is None:
        return "–"
    return f"{row['engagement_mean']:.2%} [{row['engagement_min']:.2%}, {row['engagement_max']:.2%}]"


def _mega(params: int | None) -> float | None:
    return None if params is None else params / 1e6


def _delta_cell(row: dict[str, Any], prefix: str) -> str:
    mean = row[f"delta_{prefix}_mean"]
    if mean is None:
        return "–"
    low, high = row[f"delta_{prefix}_low"], row[f"delta_{prefix}_high"]
    # Three decimals, unless they would print a nonzero mean as +0.000: then two significant digits (+1.2e-04).
    spec = "+.1e" if mean and abs(mean) < 5e-4 else "+.3f"
    text = f"{mean:{spec}} [{low:{spec}}, {high:{spec}}]" if low is not None else f"{mean:{spec}} (1 seed)"
    if not row[f"delta_{prefix}_noise"]:
        return text
    needed = row[f"delta_{prefix}_seeds_needed"]
    return f"{text} *noise*" + (f", *n≈{needed}*" if needed is not None else "")


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
