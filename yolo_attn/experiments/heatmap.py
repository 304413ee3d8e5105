"""The block x site heat map of a placement grid: each variant's mean paired delta against the baseline.

Input: one `PlacementCell` per variant (or a mapping with the same keys), as the report computes them:

- ``delta``: the mean paired delta of the metric (variant minus baseline, same seeds); None when no seed pairs;
- ``noise``: the 95% interval of that delta contains 0 (`yolo_attn.experiments.stats.is_noise`);
- ``resolved``: the Holm-adjusted p-value is below 0.05 (`yolo_attn.experiments.stats.holm_verdicts`); None when
  not computed.

Marks (the same in the PNG and the markdown table): a resolved cell is bold; ``~`` the delta is within seed noise;
``†`` its unadjusted interval excludes 0 but it does not survive the Holm correction; ``n/a`` no delta. The PNG is
drawn with matplotlib's object API (no pyplot), so it renders with Agg and never touches the caller's backend.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

NOISE, UNRESOLVED = "~", "†"
LEGEND = (
    f"**bold**: resolved (Holm-adjusted p < 0.05); {NOISE}: within seed noise (95% interval contains 0); "
    f"{UNRESOLVED}: interval excludes 0 but not resolved after the Holm correction; n/a: no paired seeds"
)


@dataclass(frozen=True)
class PlacementCell:
    """One variant of a placement grid in the heat map.

    Attributes:
        block (str): Row: the block (``EMA``).
        site (str): Column: the site spec (``p4``, ``p4+p5``).
        delta (float | None): Mean paired delta of the metric against the baseline; None when no seeds pair.
        noise (bool): Whether the delta cannot be told from seed noise.
        resolved (bool | None): Whether the Holm-adjusted p-value is below 0.05; None when not computed.
    """

    block: str
    site: str
    delta: float | None
    noise: bool = True
    resolved: bool | None = None


def as_cells(records: Sequence[PlacementCell | Mapping[str, Any]]) -> list[PlacementCell]:
    """Return records as `PlacementCell` (mappings need ``block``, ``site``, ``delta``; the flags are optional)."""
    return [
        r
        if isinstance(r, PlacementCell)
        else PlacementCell(r["block"], r["site"], r["delta"], bool(r.get("noise", True)), r.get("resolved"))
        for r in records
    ]


def grid_axes(cells: Sequence[PlacementCell]) -> tuple[list[str], list[str]]:
    """Return the blocks (rows) and sites (columns) in the order they first appear."""
    return list(dict.fromkeys(c.block for c in cells)), list(dict.fromkeys(c.site for c in cells))


def cell_text(cell: PlacementCell | None, digits: int = 2, bold: str = "**") -> str:
    """Return a cell's delta with its mark: ``**+1.20**``, ``+0.30 ~``, ``+0.90 †``, ``n/a``."""
    if cell is None or cell.delta is None:
        return "n/a"
    text = f"{cell.delta:+.{digits}f}"
    if cell.resolved:
        return f"{bold}{text}{bold}"
    if cell.noise:
        return f"{text} {NOISE}"
    return f"{text} {UNRESOLVED}" if cell.resolved is False else text


def heatmap_table(records: Sequence[PlacementCell | Mapping[str, Any]], metric: str, digits: int = 2) -> str:
    """Return the block x site markdown table of the deltas, with the marks and their legend.

    Args:
        records (Sequence[PlacementCell | Mapping[str, Any]]): One per variant.
        metric (str): The metric's name, for the table's corner (``mAP50-95``).
        digits (int): Decimals of the deltas.

    Returns:
        (str): Markdown: a header row of sites, one row per block, then the legend.
    """
    cells = as_cells(records)
    blocks, sites = grid_axes(cells)
    at = {(c.block, c.site): c for c in cells}
    lines = [f"| Δ {metric} | {' | '.join(sites)} |", f"|---|{'---:|' * len(sites)}"]
    for block in blocks:
        lines.append(f"| {block} | {' | '.join(cell_text(at.get((block, s)), digits) for s in sites)} |")
    return "\n".join([*lines, "", LEGEND]) + "\n"


def plot_heatmap(
    records: Sequence[PlacementCell | Mapping[str, Any]],
    path: str | Path,
    metric: str,
    title: str = "",
    digits: int = 2,
) -> Path:
    """Draw the block x site heat map of the deltas (diverging colours centred on 0), each cell annotated and marked.

    Noise cells are also hatched; cells without a delta are grey.

    Args:
        records (Sequence[PlacementCell | Mapping[str, Any]]): One per variant.
        path (str | Path): Output PNG.
        metric (str): The metric's name, for the colour bar.
        title (str): Plot title.
        digits (int): Decimals of the annotations.

    Returns:
        (Path): The PNG written.
    """
    import numpy as np
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    cells = as_cells(records)
    blocks, sites = grid_axes(cells)
    at = {(c.block, c.site): c for c in cells}
    values = np.array(
        [[np.nan if (c := at.get((b, s))) is None or c.delta is None else c.delta for s in sites] for b in blocks],
        dtype=float,
    )
    finite = values[np.isfinite(values)]
    span = float(np.abs(finite).max()) if finite.size and np.abs(finite).max() > 0 else 1.0
    fig = Figure(figsize=(max(4.8, 1.6 + 1.1 * len(sites)), 1.6 + 0.6 * len(blocks)), dpi=150, tight_layout=True)
    ax = fig.add_subplot()
    ax.set_facecolor("0.85")  # NaN cells (no delta) show the background
    image = ax.imshow(np.ma.masked_invalid(values), cmap="RdBu", vmin=-span, vmax=span, aspect="auto")
    fig.colorbar(image, ax=ax, label=f"Δ {metric} vs baseline")
    for r, block in enumerate(blocks):
        for k, site in enumerate(sites):
            cell = at.get((block, site))
            dark = bool(np.isfinite(values[r, k]) and abs(values[r, k]) > 0.6 * span)
            ax.text(
                k,
                r,
                cell_text(cell, digits, bold=""),
                ha="center",
                va="center",
                fontsize="small",
                color="white" if dark else "black",
                fontweight="bold" if cell is not None and cell.resolved else "normal",
            )
            if cell is not None and cell.delta is not None and cell.noise:
                ax.add_patch(Rectangle((k - 0.5, r - 0.5), 1, 1, fill=False, hatch="///", edgecolor="0.4", lw=0))
    ax.set_xticks(range(len(sites)), sites)
    ax.set_yticks(range(len(blocks)), blocks)
    ax.set_xlabel(
        f"site\nbold: resolved (Holm); {NOISE} hatched: seed noise; {UNRESOLVED}: not after Holm", fontsize="small"
    )
    ax.set_title(title or f"Δ {metric} vs baseline, by block and site")
    path = Path(path)
    fig.savefig(path)
    return path
