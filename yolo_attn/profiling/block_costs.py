"""The block cost table of the docs: per block, what its yolov8n variant adds and how much slower it runs than yolov8n.

For every registered block whose ``yolov8n-<block>.yaml`` builds (`yolo_attn.cfg.generated`; an extends block needs its
parent in yolov8n, so CA_C3k2 has no yolov8n variant), the parameters and GFLOPs the block adds at the standard sites
(`yolo_attn.profiling.cost.static_cost`, Ultralytics' counter on the fused model), and the batch-1 latency ratio
against yolov8n in each runtime, from one paired, shuffled run of all models (`yolo_attn.profiling.runtime`), built
from scratch and fine-tuned (`yolo_attn.profiling.training.fine_tuned`: identity start, mix 0.3).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

from torch import nn

from yolo_attn import registry
from yolo_attn.cfg.sites import SiteError
from yolo_attn.profiling.cost import static_cost
from yolo_attn.profiling.runtime import runtime_costs
from yolo_attn.profiling.training import FINE_TUNED_MIX, fine_tuned
from yolo_attn.utils.models import load_model

BASELINE = "yolov8n.yaml"


def yolov8n_variants(names: Sequence[str] | None = None) -> tuple[dict[str, nn.Module], dict[str, str]]:
    """Build ``yolov8n-<block>.yaml`` for each block.

    Args:
        names (Sequence[str] | None): Block YAML names; None for every registered block.

    Returns:
        models (dict[str, nn.Module]): Block name -> its yolov8n variant, from scratch.
        skipped (dict[str, str]): Block name -> why it has no yolov8n variant (no standard site in yolov8n), or why
            the variant cannot be measured (it fails ``model.float()``, which the cost counters call).
    """
    names = [s.name for s in registry.specs()] if names is None else list(names)
    models, skipped = {}, {}
    for name in names:
        try:
            model = load_model(f"yolov8n-{name.lower()}.yaml")
        except SiteError as e:
            skipped[name] = str(e)
            continue
        try:
            copy.deepcopy(model).float()
        except Exception as e:  # a block that breaks nn.Module's own methods: reported, the others still measured
            skipped[name] = f"model.float() fails: {type(e).__name__}: {e}"
            continue
        models[name] = model
    return models, skipped


def block_costs(
    names: Sequence[str] | None = None,
    imgsz: int = 640,
    runtimes: Sequence[str] = ("torch", "onnxruntime"),
    rounds: int = 20,
    threads: int | None = 2,
    tuned: bool = True,
    mix: float = FINE_TUNED_MIX,
    seed: int = 0,
    on_runtime: Callable[[list[dict[str, Any]]], None] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Measure the cost table: params and GFLOPs added to yolov8n, and latency ratios to it per runtime.

    All models of a runtime (yolov8n, every variant, and every fine-tuned variant when ``tuned``) run in one paired,
    shuffled set of rounds, so every ratio is against yolov8n in the same rounds.

    Args:
        names (Sequence[str] | None): Block YAML names; None for every registered block.
        imgsz (int): Square input size of the FLOP count and the latency.
        runtimes (Sequence[str]): ``"torch"`` (eager) and/or ``"onnxruntime"``; empty for params and FLOPs only.
        rounds (int): Paired rounds per runtime.
        threads (int | None): CPU threads (PyTorch and onnxruntime's intra-op threads).
        tuned (bool): Also time each variant fine-tuned (identity start, mix ``mix``).
        mix (float): Identity mix of the fine-tuned variants.
        seed (int): Seed of the shuffling.
        on_runtime (Callable[[list[dict[str, Any]]], None] | None): Called with the rows after the static counts and
            after each runtime (a long run shows what it has measured so far).

    Returns:
        rows (list[dict[str, Any]]): One per block: ``block``, ``params_added``, ``gflops_added``, and per runtime
            ``<runtime>`` / ``<runtime>_q1`` / ``<runtime>_q3`` (scratch) and ``<runtime>_tuned`` (with quartiles).
        skipped (dict[str, str]): Blocks without a yolov8n variant, and why.
    """
    variants, skipped = yolov8n_variants(names)
    models: dict[str, nn.Module] = {"yolov8n": load_model(BASELINE)}
    for name, model in variants.items():
        models[name] = model
        if tuned:
            models[f"{name} (fine-tuned)"] = fine_tuned(copy.deepcopy(model), mix)
    rows = {name: {"block": name} for name in variants}
    static = {name: static_cost(models[name], imgsz) for name in ("yolov8n", *variants)}  # the mix adds 1 param
    for name, row in rows.items():
        row["params_added"] = static[name]["params"] - static["yolov8n"]["params"]
        row["gflops_added"] = static[name]["gflops"] - static["yolov8n"]["gflops"]
        row["gflops_torch_added"] = static[name]["gflops_torch"] - static["yolov8n"]["gflops_torch"]
    if on_runtime is not None:
        on_runtime(list(rows.values()))
    for runtime in runtimes:
        measured = runtime_costs(
            list(models.values()),
            imgsz,
            runtime,
            rounds=rounds,
            threads=threads,
            seed=seed,
            names=list(models),
            static=False,
        )
        by_name = {r["model"]: r for r in measured}
        base = by_name["yolov8n"]
        for name, row in rows.items():
            for key, model in ((runtime, name), (f"{runtime}_tuned", f"{name} (fine-tuned)")):
                if model in by_name:
                    r = by_name[model]
                    row[key], row[f"{key}_q1"], row[f"{key}_q3"] = r["ratio"], r["ratio_q1"], r["ratio_q3"]
            row[f"{runtime}_baseline_ms"] = base["latency_ms"]
        if on_runtime is not None:
            on_runtime(list(rows.values()))
    return list(rows.values()), skipped


def _ratio(row: dict[str, Any], key: str) -> str:
    """Format a latency ratio with its interquartile range, or the not-measured marker."""
    if key not in row:
        return "not measured"
    return f"{row[key]:.3f} [{row[f'{key}_q1']:.3f}-{row[f'{key}_q3']:.3f}]"


def block_costs_table(rows: Sequence[dict[str, Any]], skipped: dict[str, str] | None = None) -> str:
    """Return the markdown cost table of `block_costs` rows, one row per block, plus a line per skipped block.

    Columns: params added (thousands), GFLOPs added (640 px, fused; Ultralytics' counter and PyTorch's, which miss
    different operations, see `yolo_attn.profiling.cost`), and the eager and ONNX Runtime latency ratios to
    yolov8n (median of per-round ratios [IQR]), from scratch and fine-tuned.
    """
    head = [
        "Block",
        "params added (k)",
        "GFLOPs added",
        "GFLOPs added (torch counter)",
        "eager / yolov8n, scratch",
        "eager, fine-tuned",
        "ORT / yolov8n, scratch",
        "ORT, fine-tuned",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [
            row["block"],
            f"{row['params_added'] / 1e3:.1f}",
            f"{row['gflops_added']:.3f}",
            f"{row['gflops_torch_added']:.3f}" if "gflops_torch_added" in row else "not measured",
            _ratio(row, "torch"),
            _ratio(row, "torch_tuned"),
            _ratio(row, "onnxruntime"),
            _ratio(row, "onnxruntime_tuned"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    for name, why in (skipped or {}).items():
        lines.append(f"\n{name}: not measured ({why.split(', but')[0]})")
    return "\n".join(lines)


INSIDE_BASE = "yolo11n"  # the inside-cost table: each block after YOLO11n's standard rows, and inside its C3k2 rows


def inside_costs(names: Sequence[str] | None = None, imgsz: int = 640) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Params and GFLOPs each channel block adds to YOLO11n as rows and inside the C3k2 rows (``C3k2_<block>``).

    Both placements are the bare names' (`yolo_attn.cfg.generated`): ``yolo11n-<block>.yaml`` (rows after the
    standard sites) and ``yolo11n-<block>-inside.yaml`` (the C3k2 rows at those sites, block args at their defaults).

    Args:
        names (Sequence[str] | None): Channel blocks' YAML names; None for every registered channel block.
        imgsz (int): Square input size of the GFLOPs.

    Returns:
        rows (list[dict[str, Any]]): Per block: ``block``, ``row_params``, ``row_gflops``, ``inside_params``,
            ``inside_gflops`` (added to YOLO11n; None where that placement cannot be built).
        skipped (dict[str, str]): Block -> why a placement was not measured.
    """
    names = [s.name for s in registry.specs(registry.CHANNEL)] if names is None else list(names)
    base = static_cost(load_model(f"{INSIDE_BASE}.yaml"), imgsz)
    rows, skipped = [], {}
    for name in names:
        row: dict[str, Any] = {"block": name}
        for kind, suffix in (("row", ""), ("inside", "-inside")):
            try:
                cost = static_cost(load_model(f"{INSIDE_BASE}-{name.lower()}{suffix}.yaml"), imgsz)
            except Exception as e:  # a placement the block's default args do not fit: reported, the rest measured
                skipped[f"{name} ({kind})"] = " ".join(f"{type(e).__name__}: {e}".split())[:200]
                row[f"{kind}_params"] = row[f"{kind}_gflops"] = None
                continue
            row[f"{kind}_params"] = cost["params"] - base["params"]
            row[f"{kind}_gflops"] = cost["gflops"] - base["gflops"]
        rows.append(row)
    return rows, skipped


def inside_costs_table(rows: Sequence[dict[str, Any]], skipped: dict[str, str] | None = None) -> str:
    """Markdown table of `inside_costs`: params (k) and GFLOPs added to YOLO11n, as rows and inside C3k2."""

    def cell(value: float | None, scale: float, digits: int) -> str:
        return "not built" if value is None else f"{value / scale:.{digits}f}"

    lines = [
        "| Block | params added as rows (k) | GFLOPs added as rows | params added inside C3k2 (k) | "
        "GFLOPs added inside C3k2 |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['block']} | {cell(r['row_params'], 1e3, 1)} | {cell(r['row_gflops'], 1, 3)} | "
            f"{cell(r['inside_params'], 1e3, 1)} | {cell(r['inside_gflops'], 1, 3)} |"
        )
    for name, why in (skipped or {}).items():
        lines.append(f"\n- {name}: {why}")
    return "\n".join(lines)
