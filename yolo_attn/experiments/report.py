"""Summarise a comparison folder: mean ± std over seeds, paired deltas to the baseline, cost; csv, markdown, plot.

Statistics, per model over its finished seeds:

- ``mean`` and ``std``: arithmetic mean and SAMPLE standard deviation (n - 1 in the denominator) of the metric; std is
  None with a single seed.
- paired delta: for every seed that both this model and the baseline finished, ``delta_s = model_s - baseline_s``
  (same seed, so same data order and initial random state where the architectures allow), then the mean and the sample
  std of those deltas.
- noise flag: a delta is "not distinguishable from noise" when ``|mean delta| <= std delta``, or when fewer than two
  paired seeds exist (no spread to compare with). This is a deliberately simple screen, not a significance test.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from yolo_attn.experiments.compare import first_device, load_runs, write_json_atomic

# Metrics in the tables: column prefix -> (path in evaluate()'s result, label). pycocotools / faster-coco-eval numbers.
METRICS: dict[str, tuple[tuple[str, str], str]] = {
    "map50_95": (("coco", "AP"), "mAP50-95"),
    "map50": (("coco", "AP50"), "mAP50"),
}
# Also in the CSV: Ultralytics' own val mAP of the same checkpoints, for readers who compare with `yolo val`.
CSV_METRICS: dict[str, tuple[tuple[str, str], str]] = {
    "ultralytics_map50_95": (("ultralytics", "mAP50-95"), "Ultralytics mAP50-95"),
    "ultralytics_map50": (("ultralytics", "mAP50"), "Ultralytics mAP50"),
}
COST_KEYS = ("params", "gflops", "gflops_torch", "latency_ms", "latency_p10_ms", "latency_p90_ms", "device", "threads")


def mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
    """Return the mean and the sample standard deviation of ``values``.

    Args:
        values (Sequence[float]): One number per seed.

    Returns:
        (tuple[float | None, float | None]): ``(mean, std)``; mean is None for no values, std for fewer than two.
    """
    values = [float(v) for v in values]
    mean = statistics.fmean(values) if values else None
    std = statistics.stdev(values) if len(values) > 1 else None
    return mean, std


def is_noise(mean: float | None, std: float | None) -> bool:
    """Return True when a mean delta cannot be told from seed noise: ``|mean| <= std``, or no spread is known.

    Equality counts as noise so that a delta of exactly zero over identical runs (mean 0, std 0) is not reported as
    a difference.

    Args:
        mean (float | None): Mean paired delta.
        std (float | None): Sample std of the paired deltas (None with fewer than two seeds).

    Returns:
        (bool): The "not distinguishable from noise" flag.
    """
    return mean is None or std is None or abs(mean) <= std


def paired_delta(values: dict[int, float], baseline: dict[int, float]) -> dict[str, Any]:
    """Compare a model with the baseline seed by seed.

    Args:
        values (dict[int, float]): Metric of the model per seed.
        baseline (dict[int, float]): Metric of the baseline per seed.

    Returns:
        (dict[str, Any]): ``mean``, ``std`` (sample), ``n`` (seeds both finished), ``noise`` (see ``is_noise``) and
            ``per_seed`` ({seed: delta}).
    """
    per_seed = {s: values[s] - baseline[s] for s in sorted(values.keys() & baseline.keys())}
    mean, std = mean_std(list(per_seed.values()))
    return {"mean": mean, "std": std, "n": len(per_seed), "noise": is_noise(mean, std), "per_seed": per_seed}


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
    runs: Sequence[dict[str, Any]], stems: Sequence[str], costs: dict[str, dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """Aggregate run records into one row per model; the first stem is the baseline.

    Args:
        runs (Sequence[dict[str, Any]]): Run records with ``stem``, ``seed`` and ``metrics`` (``evaluate()``'s result:
            ``{"coco": {"AP": ..., "AP50": ...}, "ultralytics": {"mAP50-95": ..., "mAP50": ...}}``).
        stems (Sequence[str]): Model stems in table order, baseline first.
        costs (dict[str, dict[str, Any]] | None): ``model_cost`` results per stem (missing ones are left empty).

    Returns:
        (list[dict[str, Any]]): Rows with ``stem``, ``baseline``, ``seeds``, the cost keys and, per metric prefix
            ``p`` in ``METRICS`` and ``CSV_METRICS``: ``p_mean``, ``p_std``, ``p_per_seed`` and, except for the
            baseline, ``delta_p_mean``, ``delta_p_std``, ``delta_p_n``, ``delta_p_noise``.
    """
    costs = costs or {}
    rows = []
    for i, stem in enumerate(stems):
        seeds = sorted(int(r["seed"]) for r in runs if r["stem"] == stem)
        row: dict[str, Any] = {"stem": stem, "baseline": i == 0, "seeds": seeds}
        row.update({k: costs.get(stem, {}).get(k) for k in COST_KEYS})
        for prefix, (key, _) in {**METRICS, **CSV_METRICS}.items():
            values = metric_by_seed(runs, stem, key)
            row[f"{prefix}_mean"], row[f"{prefix}_std"] = mean_std(list(values.values()))
            row[f"{prefix}_per_seed"] = values
            if i:
                delta = paired_delta(values, metric_by_seed(runs, stems[0], key))
                for name in ("mean", "std", "n", "noise"):
                    row[f"delta_{prefix}_{name}"] = delta[name]
        rows.append(row)
    return rows


def model_costs(
    out: Path,
    models: Sequence[str],
    stems: Sequence[str],
    imgsz: int,
    device: str | int | None,
    latency_runs: int,
    threads: int | None = None,
    measure: bool = True,
) -> dict[str, dict[str, Any]]:
    """Return each model's params, GFLOPs and batch-1 latency, measuring only what ``out`` does not hold yet.

    Params and FLOPs are cached per model in ``out/costs/<stem>.json``. Latencies are measured for all ``models``
    together, with interleaved passes so that they compare (``measure_latencies``), and cached in ``out/latency.json``
    for exactly this set of models and settings; a different set is measured again.

    Args:
        out (Path): Comparison folder.
        models (Sequence[str]): Model YAMLs or weights.
        stems (Sequence[str]): Their stems.
        imgsz (int): Image size of FLOPs and latency.
        device (str | int | None): Compare device; latency uses its first device.
        latency_runs (int): Timed passes per model, 0 to skip latency.
        threads (int | None): CPU threads pinned during the latency measurement (see ``measure_latencies``).
        measure (bool): Measure latency if not cached; False leaves latency empty instead (partial reports).

    Returns:
        (dict[str, dict[str, Any]]): Per stem: ``static_cost`` keys, ``latency_ms``, ``latency_p10_ms``,
            ``latency_p90_ms``, ``threads`` and ``device``.
    """
    from yolo_attn.profiling.cost import deployed_model, measure_latencies, resolve_device, static_cost

    (out / "costs").mkdir(parents=True, exist_ok=True)
    costs = {}
    for model, stem in zip(models, stems, strict=True):
        path = out / "costs" / f"{stem}.json"
        cached = json.loads(path.read_text()) if path.exists() else {}
        if cached.get("imgsz") != imgsz:
            cached = static_cost(model, imgsz)
            write_json_atomic(path, cached)
        costs[stem] = cached

    latency_device = str(resolve_device(first_device(device)))
    key = {"stems": list(stems), "imgsz": imgsz, "device": latency_device, "runs": latency_runs, "threads": threads}
    path = out / "latency.json"
    cached = json.loads(path.read_text()) if path.exists() else {}
    if cached.get("key") != key and measure and latency_runs:
        deployed = {stem: deployed_model(model, latency_device) for model, stem in zip(models, stems, strict=True)}
        latencies = measure_latencies(deployed, imgsz, latency_device, runs=latency_runs, threads=threads)
        cached = {"key": key, "latency": latencies}
        write_json_atomic(path, cached)
    latencies = cached.get("latency", {}) if cached.get("key") == key else {}
    for stem in stems:
        costs[stem] = {**costs[stem], **latencies.get(stem, {}), "device": latency_device}
    return costs


def write_report(
    out: str | Path,
    models: Sequence[str],
    seeds: Sequence[int],
    device: str | int | None = None,
    latency_runs: int = 50,
    threads: int | None = None,
    measure_latency: bool = True,
) -> Path:
    """Write ``compare.csv``, ``compare.md`` and ``compare.png`` for the finished runs of a comparison folder.

    Only runs of the given models and seeds enter the tables. Costs are measured for models with a finished run.
    The table's header line says how many runs of the grid are finished.

    Args:
        out (str | Path): Comparison folder (``runs/*.json`` written by ``compare``).
        models (Sequence[str]): Model YAMLs or weights, baseline first.
        seeds (Sequence[int]): Seeds of the comparison.
        device (str | int | None): Device for the latency (first of a list).
        latency_runs (int): Timed passes per model, 0 to skip latency.
        threads (int | None): CPU threads pinned during latency measurement (see ``measure_latencies``).
        measure_latency (bool): Measure latency when not cached; False (partial reports while runs go on) leaves it
            empty rather than measure a few models now and others later under other load.

    Returns:
        (Path): Path of ``compare.md``.
    """
    out = Path(out)
    stems = [Path(m).stem for m in models]
    runs = [r for r in load_runs(out) if r["stem"] in stems and int(r["seed"]) in set(seeds)]
    if not runs:
        raise FileNotFoundError(f"no finished run of {stems} with seeds {list(seeds)} in {out / 'runs'}")
    settings = runs[0]["settings"]
    done = [(m, s) for m, s in zip(models, stems, strict=True) if any(r["stem"] == s for r in runs)]
    done_models, done_stems = [m for m, _ in done], [s for _, s in done]
    costs = model_costs(
        out, done_models, done_stems, settings["imgsz"], device, latency_runs, threads, measure=measure_latency
    )
    rows = [{"model": model, **row} for model, row in zip(models, summarize(runs, stems, costs), strict=True)]
    write_csv(rows, out / "compare.csv")
    overrides = " ".join(f"{k}={v}" for k, v in settings["train_overrides"].items())
    header = (
        f"Data `{settings['data']}`, epochs={settings['epochs']}, imgsz={settings['imgsz']}, "
        f"batch={settings['batch']}{f', overrides `{overrides}`' if overrides else ''}, "
        f"seeds {', '.join(map(str, seeds))}; {len(runs)}/{len(stems) * len(seeds)} runs finished. "
        f"COCO metrics by {settings['backend']} on the val split."
    )
    (out / "compare.md").write_text(header + "\n\n" + markdown_table(rows) + "\n")
    title = f"{Path(settings['data']).parent.name}: {settings['epochs']} epochs, imgsz {settings['imgsz']}"
    plot(rows, out / "compare.png", title=title)
    return out / "compare.md"


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


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """Return a paste-ready markdown table of summary rows, followed by the legend of its marks.

    Args:
        rows (Sequence[dict[str, Any]]): Rows from ``summarize``, baseline first.

    Returns:
        (str): Markdown text.
    """
    base = rows[0]
    measured = next((r for r in rows if r.get("latency_ms") is not None), None)
    device = "not measured yet" if measured is None else measured["device"]
    if measured is not None and measured["device"] == "cpu" and measured.get("threads"):
        device += f", {measured['threads']} threads"
    labels = [label for _, label in METRICS.values()]
    head = [
        "Model",
        "Seeds",
        "Params (M)",
        "GFLOPs",
        f"Latency bs1 (ms, {device})",
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
        ]
        for prefix in METRICS:
            mean, std = row[f"{prefix}_mean"], row[f"{prefix}_std"]
            cells.append(f"{_number(mean, 3)} ± {_number(std, 3)}" if std is not None else _number(mean, 3))
        for prefix in METRICS:
            cells.append("–" if is_base else _delta_cell(row, prefix))
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        f"± is the sample standard deviation over seeds. Δ is the paired per-seed difference to {base['stem']} "
        "(mean ± std over the seeds both finished). A Δ marked *noise* is not distinguishable from noise: "
        "|mean| ≤ std, or a single paired seed (no spread). GFLOPs as Ultralytics counts them (fused model). "
        "Latency: median of batch-1 forward passes of the fused models, interleaved so all models share the machine's "
        "conditions. Ratios (×) are to the baseline.",
    ]
    return "\n".join(lines)


def _mega(params: int | None) -> float | None:
    return None if params is None else params / 1e6


def _delta_cell(row: dict[str, Any], prefix: str) -> str:
    mean, std = row[f"delta_{prefix}_mean"], row[f"delta_{prefix}_std"]
    if mean is None:
        return "–"
    text = f"{mean:+.3f} ± {_number(std, 3)}" if std is not None else f"{mean:+.3f} (1 seed)"
    return f"{text} *noise*" if row[f"delta_{prefix}_noise"] else text


def plot(rows: Sequence[dict[str, Any]], path: Path, title: str = "") -> None:
    """Plot mAP50-95 (mean, error bar = std over seeds) against batch-1 latency, one point per model.

    Falls back to GFLOPs on the x axis when latency was not measured. Uses matplotlib's object API (no pyplot), so
    it renders with Agg and never touches the caller's backend.

    Args:
        rows (Sequence[dict[str, Any]]): Rows from ``summarize``, baseline first.
        path (Path): Output PNG.
        title (str): Plot title.
    """
    from matplotlib.figure import Figure

    plotted = [r for r in rows if r["map50_95_mean"] is not None]
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
            row["map50_95_mean"],
            yerr=row["map50_95_std"] or 0.0,
            fmt="s" if row["baseline"] else "o",
            capsize=4,
            label=f"{row['stem']}{' (baseline)' if row['baseline'] else ''}, {len(row['seeds'])} seeds",
        )
        ax.annotate(row["stem"], (row[x_key], row["map50_95_mean"]), textcoords="offset points", xytext=(5, 5))
    ax.set_xlabel(x_label)
    ax.set_ylabel("COCO mAP50-95 (mean ± std over seeds)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.savefig(path)
