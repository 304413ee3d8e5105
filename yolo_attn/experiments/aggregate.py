"""Aggregation of a comparison's cell records: one row per model with its metrics over seeds and paired deltas.

Pure functions of the records (and of the cost files): which metrics is the task's description
(`yolo_attn.experiments.tasks`); the statistics are `yolo_attn.experiments.stats`. Every paired comparison of a
variant with the baseline is made in `summarize`, one metric at a time: the one place where per-variant tests are
computed, and where the verdicts of the k variants of one metric are corrected together (Holm-Bonferroni).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from yolo_attn.experiments.files import read_json, train_dir
from yolo_attn.experiments.plan import Plan
from yolo_attn.experiments.stats import ALPHA, holm_verdicts, mean_std, paired_delta
from yolo_attn.experiments.tasks import get_task
from yolo_attn.finetune.engagement import NEAR_IDENTITY

COST_KEYS = ("params", "gflops", "gflops_torch", "latency_ms", "latency_p10_ms", "latency_p90_ms", "device", "threads")
DELTA_KEYS = ("mean", "std", "n", "low", "high", "noise", "seeds_needed")
VERDICT_KEYS = ("p", "p_holm", "holm_m", "resolved", "claimed")


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
    unclaimed: Collection[str] = (),
) -> list[dict[str, Any]]:
    """Aggregate run records into one row per model; the first stem is the baseline.

    Verdicts: for each metric, the paired-t p-values of the k variants against the baseline are Holm-adjusted
    together (`stats.holm_verdicts`); a variant is *resolved* on that metric only when its adjusted p-value is below
    ``ALPHA`` (0.05). The unadjusted 95% interval and its noise flag are kept beside it. A variant in ``unclaimed``
    (its seeds trained identically, `yolo_attn.experiments.seeds`), or every variant when the baseline is, claims no
    interval and no verdict: its ``low``/``high``/``p``/``p_holm`` are None, ``noise`` True, ``resolved`` False, and
    it does not count among the k comparisons.

    Args:
        runs (Sequence[dict[str, Any]]): Finished run records with ``stem``, ``seed`` and ``metrics`` (the cell's
            evaluation: ``{"coco": {"AP": ..., "AP50": ...}, "ultralytics": {...}}`` for detection, ``{"top1": ...,
            "top5": ...}`` for classification).
        stems (Sequence[str]): Model stems in table order, baseline first.
        costs (dict[str, dict[str, Any]] | None): Cost per stem (params, GFLOPs, latency; missing ones are left empty).
        task (str): Key of `yolo_attn.experiments.tasks.TASKS`: which metrics to aggregate.
        unclaimed (Collection[str]): Stems whose seeds did not vary the run: no interval or verdict is claimed for them.

    Returns:
        (list[dict[str, Any]]): Rows with ``stem``, ``baseline``, ``seeds``, the cost keys and, per metric prefix
            ``p`` of the task's ``metrics`` and ``csv_metrics``: ``p_mean``, ``p_std``, ``p_per_seed`` and, except for
            the baseline, ``delta_p_<k>`` for ``k`` in mean, std, n, low, high, noise, seeds_needed (see
            ``stats.paired_delta``) and in p (paired t), p_holm (Holm-adjusted), holm_m (comparisons corrected
            for), resolved, claimed; and the `engagement_stats` keys.
    """
    costs = costs or {}
    spec = get_task(task)
    void = set(unclaimed)
    rows = []
    for i, stem in enumerate(stems):
        seeds = sorted(int(r["seed"]) for r in runs if r["stem"] == stem)
        row: dict[str, Any] = {"stem": stem, "baseline": i == 0, "seeds": seeds}
        row.update({k: costs.get(stem, {}).get(k) for k in COST_KEYS})
        row.update(engagement_stats(runs, stem))
        rows.append(row)
    for prefix, (key, _) in {**spec.metrics, **spec.csv_metrics}.items():
        base = metric_by_seed(runs, stems[0], key)
        deltas = {}
        for i, (stem, row) in enumerate(zip(stems, rows, strict=True)):
            values = base if i == 0 else metric_by_seed(runs, stem, key)
            row[f"{prefix}_mean"], row[f"{prefix}_std"] = mean_std(list(values.values()))
            row[f"{prefix}_per_seed"] = values
            if i:
                delta = paired_delta(values, base)
                if stem in void or stems[0] in void:  # the seeds did not vary the runs: no interval is claimed
                    delta |= {"low": None, "high": None, "noise": True}
                else:
                    deltas[stem] = delta
                for name in DELTA_KEYS:
                    row[f"delta_{prefix}_{name}"] = delta[name]
        verdicts = holm_verdicts(deltas, ALPHA)
        for stem, row in zip(stems[1:], rows[1:], strict=True):
            verdict = verdicts.get(stem, {"p": None, "p_holm": None, "resolved": False})
            row[f"delta_{prefix}_p"] = verdict["p"]
            row[f"delta_{prefix}_p_holm"] = verdict["p_holm"]
            row[f"delta_{prefix}_holm_m"] = sum(v["p"] is not None for v in verdicts.values())
            row[f"delta_{prefix}_resolved"] = bool(verdict["resolved"])
            row[f"delta_{prefix}_claimed"] = stem in deltas
    return rows


def engagement_stats(runs: Sequence[dict[str, Any]], stem: str) -> dict[str, Any]:
    """Summarise the attention blocks' engagement of one model over its blocks and seeds (`finetune.engagement`).

    Args:
        runs (Sequence[dict[str, Any]]): Run records; those made before engagement was measured are left out.
        stem (str): Model stem.

    Returns:
        (dict[str, Any]): ``engagement_mean``, ``engagement_min``, ``engagement_max`` (over every block of every
            seed), ``engagement_n`` (block x seed values), ``mix_min``, ``mix_max`` (None without mixes),
            ``fine_tuned_blocks`` (True when the blocks are new to pretrained weights: the runs' transfer reports
            list them, or they have an identity mix), ``near_identity`` (True when such blocks' mean engagement is
            below ``NEAR_IDENTITY``; None when not fine-tuned or not measured) and ``blocks_off`` (`blocks_off`).
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
    stats["near_identity"] = (stats["engagement_mean"] < NEAR_IDENTITY) if (fine_tuned and values) else None
    stats["blocks_off"] = blocks_off(runs, stem) if fine_tuned else {}
    return stats


def blocks_off(runs: Sequence[dict[str, Any]], stem: str) -> dict[str, dict[str, Any]]:
    """Return the attention blocks of one model whose engagement stayed below ``NEAR_IDENTITY`` in some seed.

    Args:
        runs (Sequence[dict[str, Any]]): Run records.
        stem (str): Model stem.

    Returns:
        (dict[str, dict[str, Any]]): Module path (``model.21``) -> ``block`` (class name) and ``seeds`` (seed ->
            engagement, the seeds in which it stayed below), in layer order.
    """
    off: dict[str, dict[str, Any]] = {}
    for run in sorted((r for r in runs if r["stem"] == stem), key=lambda r: r["seed"]):
        for path, block in ((run.get("engagement") or {}).get("blocks") or {}).items():
            value = block.get("engagement")
            if value is not None and value < NEAR_IDENTITY:
                entry = off.setdefault(path, {"block": block.get("block"), "seeds": {}})
                entry["seeds"][run["seed"]] = value
    return dict(sorted(off.items(), key=lambda item: _layer_order(item[0])))


def _layer_order(path: str) -> tuple:
    """Sort key of a module path by its numeric parts (``model.9`` before ``model.10``)."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in path.split("."))


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
