"""Report sections that check a grid as a whole: seeds that did not vary the runs, and the placement heat map.

- `seed_check`: the models whose seeds trained bit-identically (`yolo_attn.experiments.seeds`), and the bold
  warnings the report puts first; `aggregate.summarize` then claims no interval or verdict for them (for every
  variant when the baseline is one of them).
- `placement_section`: for a placement grid (the plan's ``placement``), one block x site heat map per metric of the
  task (``placement_<metric>.png``, `yolo_attn.experiments.heatmap`) and its markdown table, from the rows of
  `summarize` (the same deltas, noise flags and Holm verdicts as the main table).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from yolo_attn.experiments.heatmap import LEGEND, PlacementCell, heatmap_table, plot_heatmap
from yolo_attn.experiments.plan import Plan
from yolo_attn.experiments.seeds import identical_seeds, identical_seeds_warning
from yolo_attn.experiments.tasks import get_task


def seed_check(logs: Mapping[str, Mapping[int, Path]], baseline: str) -> tuple[set[str], str]:
    """Find the models whose seeds trained identically and return them with the report's warnings.

    Args:
        logs (Mapping[str, Mapping[int, Path]]): Stem -> seed -> that run's ``results.csv`` (`results_csvs`).
        baseline (str): The baseline's stem.

    Returns:
        (tuple[set[str], str]): The stems that claim no interval (every stem when the baseline is one), and the
            markdown warnings ("" when every model's seeds trained differently).
    """
    found = identical_seeds(logs)
    warnings = [identical_seeds_warning(stem, pairs) for stem, pairs in found.items()]
    unclaimed = set(found)
    if baseline in found:
        unclaimed |= set(logs)
        warnings.append(
            f"**{baseline} is the baseline: no 95% interval and no verdict is claimed for any model of this "
            f"comparison.**"
        )
    return unclaimed, "\n\n".join(warnings)


def placement_cells(plan: Plan, rows: Sequence[dict[str, Any]], prefix: str) -> list[PlacementCell]:
    """Return the heat map cells of one metric: each placement variant of the plan with a row, in grid order.

    Args:
        plan (Plan): A plan with ``placement``.
        rows (Sequence[dict[str, Any]]): Rows from `summarize`, in plan order (baseline first).
        prefix (str): Metric prefix of the task (``map50_95``).

    Returns:
        (list[PlacementCell]): Delta mean, interval noise flag and Holm verdict of every variant.
    """
    by_stem = {row["stem"]: row for row in rows[1:]}
    cells = []
    for variant in plan.placement or []:
        row = by_stem.get(variant["label"])
        if row is None:
            continue
        mean = row.get(f"delta_{prefix}_mean")
        resolved = row.get(f"delta_{prefix}_resolved")
        noise = bool(row[f"delta_{prefix}_noise"])
        cells.append(
            PlacementCell(variant["block"], variant["site"], mean, noise, None if resolved is None else bool(resolved))
        )
    return cells


def placement_section(out: Path, plan: Plan, rows: Sequence[dict[str, Any]], task: str) -> str:
    """Draw the block x site heat maps of a placement grid and return their markdown ("" for another grid).

    Args:
        out (Path): Comparison folder (the PNGs go there: ``placement_<metric prefix>.png``).
        plan (Plan): Its plan.
        rows (Sequence[dict[str, Any]]): Rows from `summarize`, in plan order.
        task (str): The comparison's task (one heat map per metric column of the task).

    Returns:
        (str): The section: per metric the table of deltas with their marks and the PNG, then the legend.
    """
    if not plan.placement or rows[0]["stem"] != plan.stems[0]:
        return ""
    parts = [f"Placement grid: Δ to the baseline {plan.stems[0]} for each block (rows) at each site (columns)."]
    for prefix, (_, label) in get_task(task).metrics.items():
        cells = placement_cells(plan, rows, prefix)
        if not cells:
            return ""
        name = f"placement_{prefix}.png"
        plot_heatmap(cells, out / name, label)
        table = heatmap_table(cells, label, digits=3).removesuffix("\n").removesuffix(LEGEND).rstrip()
        parts.append(f"{table}\n\n![Δ {label} by block and site]({name})")
    return "\n\n".join([*parts, LEGEND + "."])
