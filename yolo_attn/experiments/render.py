"""Rendering of a comparison's report: the markdown table and its legend, the notes, the CSV, the protocol line.

Pure functions of the rows of `yolo_attn.experiments.aggregate.summarize` (and of the plan and runtime file).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from yolo_attn.experiments.files import read_json
from yolo_attn.experiments.plan import Plan
from yolo_attn.experiments.tasks import get_task
from yolo_attn.finetune.engagement import NEAR_IDENTITY, SAMPLE_IMAGES, layer_label
from yolo_attn.finetune.protocol import LEGACY, FineTuneProtocol


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


def engagement_notes(rows: Sequence[dict[str, Any]]) -> str:
    """Return the report's sentences about new blocks that stayed near the identity ("" when none did).

    A model whose mean engagement is below ``NEAR_IDENTITY`` gets the sentence "this comparison cannot say whether the
    block helps"; every block below it in some seed is named with its layer (`blocks_off_text`).
    """
    lines = []
    for row in rows:
        off = row.get("blocks_off") or {}
        if not (row.get("near_identity") or off):
            continue
        named = f" Below {NEAR_IDENTITY:.0%}: {blocks_off_text(off)}." if off else ""
        if not row.get("near_identity"):
            lines.append(
                f"- **{row['stem']}**: {len(off)} new block(s) stayed within {NEAR_IDENTITY:.0%} of the identity in "
                f"some seed (mean engagement {row['engagement_mean']:.2%}): what the comparison says about the block "
                f"does not come from them.{named}"
            )
            continue
        mixes = ""
        if row["mix_min"] is not None:
            mixes = f", identity_mix in [{row['mix_min']:+.4g}, {row['mix_max']:+.4g}]"
        lines.append(
            f"- **{row['stem']}**: the new blocks stayed within {NEAR_IDENTITY:.0%} of the identity (mean engagement "
            f"{row['engagement_mean']:.2%}, at most {row['engagement_max']:.2%} over {row['engagement_n']} block x "
            f"seed values{mixes}): this comparison cannot say whether the block helps.{named}"
        )
    return "\n".join(lines)


def blocks_off_text(off: dict[str, dict[str, Any]]) -> str:
    """Name blocks that stayed off, e.g. ``"layer 21 (CBAM, model.21): seed 0 0.00%, seed 1 0.31%"``, joined by ``;``.

    Args:
        off (dict[str, dict[str, Any]]): `yolo_attn.experiments.aggregate.blocks_off`'s result.
    """
    parts = []
    for path, entry in off.items():
        seeds = ", ".join(f"seed {seed} {value:.2%}" for seed, value in entry["seeds"].items())
        parts.append(f"{layer_label(path)} ({entry['block']}, {path}): {seeds}")
    return "; ".join(parts)


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
        if isinstance(value, dict) and any(isinstance(v, dict) for v in value.values()):  # blocks_off
            return blocks_off_text(value)
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
    if len(rows) > 1:
        lines += ["", holm_note(rows, task)]
    return "\n".join(lines)


def _engagement_cell(row: dict[str, Any]) -> str:
    if row.get("engagement_mean") is None:
        return "–"
    return f"{row['engagement_mean']:.2%} [{row['engagement_min']:.2%}, {row['engagement_max']:.2%}]"


def _mega(params: int | None) -> float | None:
    return None if params is None else params / 1e6


def _p_text(p: float | None) -> str:
    """A p-value in two significant digits (``0.012``, ``3.4e-05``); 0 for deltas without spread (all seeds equal)."""
    if p is None:
        return "–"
    if p == 0:
        return "0"
    return f"{p:.2g}" if p >= 1e-3 else f"{p:.1e}"


def _delta_cell(row: dict[str, Any], prefix: str) -> str:
    """One Δ cell: mean, 95% interval, paired-t p and Holm-adjusted p, and the verdict's mark.

    Marks: a resolved delta (Holm-adjusted p < 0.05) is bold; ``*noise*`` (the 95% interval holds 0, or a single
    seed; with ``*n≈N*`` seeds that would resolve it); ``*not after Holm*`` (the interval excludes 0, the adjusted p
    does not); ``*not claimed*`` (the seeds trained identically). Rows made without p-values (no ``p`` key) keep
    the interval's verdict.
    """
    mean = row[f"delta_{prefix}_mean"]
    if mean is None:
        return "–"
    low, high = row[f"delta_{prefix}_low"], row[f"delta_{prefix}_high"]
    # Three decimals, unless they would print a nonzero mean as +0.000: then two significant digits (+1.2e-04).
    spec = "+.1e" if mean and abs(mean) < 5e-4 else "+.3f"
    if row.get(f"delta_{prefix}_claimed") is False:
        return f"{mean:{spec}} *not claimed: identical seeds*"
    judged = f"delta_{prefix}_p" in row
    resolved = row[f"delta_{prefix}_resolved"] if judged else not row[f"delta_{prefix}_noise"]
    value = f"**{mean:{spec}}**" if resolved and judged else f"{mean:{spec}}"
    text = f"{value} [{low:{spec}}, {high:{spec}}]" if low is not None else f"{value} (1 seed)"
    p = row.get(f"delta_{prefix}_p")
    if p is not None:
        text += f" p={_p_text(p)}, Holm {_p_text(row[f'delta_{prefix}_p_holm'])}"
    if resolved:
        return text
    if not row[f"delta_{prefix}_noise"]:
        return f"{text} *not after Holm*"
    needed = row[f"delta_{prefix}_seeds_needed"]
    return f"{text} *noise*" + (f", *n≈{needed}*" if needed is not None else "")


def holm_note(rows: Sequence[dict[str, Any]], task: str = "detect") -> str:
    """Return the sentence saying how many comparisons the verdicts were corrected for, metric by metric."""
    metrics = get_task(task).metrics
    counts = {
        label: max((r.get(f"delta_{p}_holm_m") or 0 for r in rows[1:]), default=0) for p, (_, label) in metrics.items()
    }
    if not any(counts.values()):
        return "No Δ has two paired seeds with a p-value, so none is resolved (a verdict needs a test)."
    if len(set(counts.values())) == 1:
        k = next(iter(counts.values()), 0)
        per = f"k={k} comparison{'s' if k != 1 else ''} with the baseline per metric"
    else:
        per = ", ".join(f"k={k} for {label}" for label, k in counts.items()) + " (comparisons with the baseline)"
    return (
        f"Verdicts are corrected for multiple comparisons: Holm-Bonferroni over the {per}. p is the two-sided "
        "paired-t p-value of the Δ (the same test as its interval), Holm its adjusted value; a Δ is resolved "
        "(**bold**) only when the adjusted p < 0.05. *not after Holm*: its unadjusted 95% interval excludes 0 but the "
        "correction does not let it stand."
    )
