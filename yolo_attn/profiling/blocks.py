"""Block micro-benchmark: each block's time against a same-shape ``clone()``, and the operations it dispatches.

A gate block reads its input for statistics, then reads it again and writes the output: about 1.5 copies is the floor,
so time relative to ``x.clone()`` of the same tensor shows the overhead directly. Times come from paired, shuffled
rounds: in each round every variant (the clone, the block as shipped, its plain formulation, optionally the compiled
block) runs once in a random order, and each variant's figure is the median over rounds of its time divided by the
clone's time in the same round. A burst of load from another process then moves all variants of a round alike.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from yolo_attn.modules.random_weights import randomize_
from yolo_attn.profiling.paired import paired_times, ratio_stats
from yolo_attn.profiling.plain import Plain, has_plain
from yolo_attn.registry import table

#: Channels of the P3, P4, P5 outputs of yolov8n, and their strides.
YOLOV8N_LEVELS: dict[str, tuple[int, int]] = {"P3": (64, 8), "P4": (128, 16), "P5": (256, 32)}


def bench_levels_of(spec: table.BlockSpec) -> tuple[str, ...]:
    """Return the yolov8n levels a block is benchmarked at: its declared ``bench_levels``, else its standard sites.

    A block that declares no ``bench_levels`` is benchmarked where `yolo_attn.cfg.sites` puts it in a detection model:
    the backbone site (P5 in yolov8n) and the neck inputs its placement keeps (all three levels, or the lowest
    resolutions only, as for global attention). Blocks that extend an Ultralytics block (kind ``"extends"``) replace a
    C2f rather than take a feature map of one shape: they have no micro-benchmark (their cost is in the model tables).

    Args:
        spec (BlockSpec): The block's declaration.

    Returns:
        (tuple[str, ...]): Levels among ``("P3", "P4", "P5")``, in that order; empty for an extends block.
    """
    if spec.bench_levels:
        return tuple(spec.bench_levels)
    if spec.kind != table.CHANNEL:
        return ()
    from yolo_attn.cfg.sites import placement_of

    levels = list(YOLOV8N_LEVELS)
    neck = placement_of(spec).neck
    kept = set(levels[-neck:] if neck else levels) | {levels[-1]}  # neck inputs, and the backbone's last level
    return tuple(level for level in levels if level in kept)


def bench_blocks_table() -> dict[str, tuple[Callable[[int], nn.Module], tuple[str, ...]]]:
    """Blocks of the benchmark, every registered channel-preserving block: name -> (class built from channels, levels).

    Levels are the declared ``bench_levels``, else derived from the block's standard sites (`bench_levels_of`);
    MHSA declares P4 and P5 only (its cost grows with (H*W)^2).
    """
    found = {s.name: (s.cls, bench_levels_of(s)) for s in table.specs()}
    return {name: entry for name, entry in found.items() if entry[1]}


#: aten operations that compute nothing: allocations, and reshapes or splits that only return views.
NOT_COUNTED = frozenset({"empty", "empty_strided", "_unsafe_view", "unbind", "split", "split_with_sizes"})


class _OpRecorder(TorchDispatchMode):
    """Record the name of every aten operation dispatched while active."""

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        if not func.is_view and func.overloadpacket.__name__ not in NOT_COUNTED:
            self.names.append(func.name())
        return func(*args, **(kwargs or {}))


def dispatched_ops(module: nn.Module, x: torch.Tensor) -> list[str]:
    """Return the aten operations one no-grad forward of ``module`` dispatches, views and allocations excluded.

    Args:
        module (nn.Module): The module, in the mode it should be measured in (usually eval, fused).
        x (torch.Tensor): Input.

    Returns:
        (list[str]): Operation names in call order, e.g. ``["aten::mean.dim", "aten::convolution", ...]``.
    """
    recorder = _OpRecorder()
    with torch.no_grad(), recorder:
        module(x)
    return recorder.names


def deployed_block(block: nn.Module) -> nn.Module:
    """Return an eval-mode copy of ``block``, fused (BatchNorm folded) when the block has a ``fuse()``."""
    block = copy.deepcopy(block).eval()
    if callable(getattr(block, "fuse", None)):
        block.fuse()
    return block


def bench_blocks(
    names: Sequence[str] | None = None,
    imgsz: int = 640,
    rounds: int = 60,
    threads: int | None = 2,
    compiled: bool = False,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Benchmark blocks at the P3/P4/P5 shapes of yolov8n: time / clone, ours vs plain, ops per forward.

    Each block is built with random weights, in eval mode and fused (as ``model.fuse()`` leaves it); its plain
    formulation (``yolo_attn.profiling.plain``) runs on an unfused copy, as the blocks ran before the speed work.

    Args:
        names (Sequence[str] | None): Block names from `bench_blocks_table`; None for all.
        imgsz (int): Square input size whose P3/P4/P5 feature-map shapes are used.
        rounds (int): Paired shuffled rounds per shape.
        threads (int | None): CPU threads during the measurement (restored afterwards); None keeps the setting.
        compiled (bool): Also time ``torch.compile(block)`` (one compilation per block and shape: slow).
        seed (int): Seed of weights, inputs and shuffling.

    Returns:
        (list[dict[str, Any]]): One row per block and level: ``block``, ``level``, ``shape``, ``ours`` / ``plain`` /
            ``compiled`` (time / clone, with ``*_q1`` / ``*_q3`` quartiles), ``ours_vs_plain`` (median per-round
            ratio, with quartiles), ``ops`` and ``ops_plain`` (dispatched operations per forward), ``clone_us``.
    """
    bench = bench_blocks_table()
    names = list(bench) if names is None else list(names)
    unknown = [n for n in names if n not in bench]
    if unknown:
        raise ValueError(f"unknown blocks {unknown}; expected some of {list(bench)}")
    previous = torch.get_num_threads()
    rows = []
    try:
        if threads:
            torch.set_num_threads(threads)
        generator = torch.Generator().manual_seed(seed)
        for name in names:
            for level, (channels, stride) in YOLOV8N_LEVELS.items():
                make, levels = bench[name]
                if level not in levels:
                    continue
                torch.manual_seed(seed)
                block = randomize_(make(channels), generator)
                x = torch.randn(1, channels, imgsz // stride, imgsz // stride, generator=generator)
                ours = deployed_block(block)
                plain = Plain(copy.deepcopy(block).eval()) if has_plain(type(block)) else None
                variants: dict[str, Callable[[], Any]] = {"clone": x.clone, "ours": _bound(ours, x)}
                if plain is not None:
                    variants["plain"] = _bound(plain, x)
                if compiled:
                    variants["compiled"] = _bound(torch.compile(ours, dynamic=False), x)
                with torch.no_grad():
                    for call in variants.values():  # warm-up (and compilation)
                        for _ in range(3):
                            call()
                    # short samples (~0.3 ms): on a loaded machine fewer of them are hit by preemption
                    inner = max(1, int(3e-4 / max(_once(variants["ours"]), 1e-6)))
                    times = paired_times(variants, rounds=rounds, inner=inner, seed=seed)
                row: dict[str, Any] = {"block": name, "level": level, "shape": tuple(x.shape)}
                for variant in ("ours", "plain", "compiled"):
                    if variant in times:
                        stats = ratio_stats(times, variant, "clone")
                        row[variant] = stats["ratio"]
                        row[f"{variant}_q1"], row[f"{variant}_q3"] = stats["q1"], stats["q3"]
                if plain is not None:
                    versus = ratio_stats(times, "ours", "plain")
                    row["ours_vs_plain"], row["ours_vs_plain_q1"], row["ours_vs_plain_q3"] = (
                        versus["ratio"],
                        versus["q1"],
                        versus["q3"],
                    )
                row["ops"] = len(dispatched_ops(ours, x))
                row["ops_plain"] = len(dispatched_ops(plain, x)) if plain is not None else None
                row["clone_us"] = ratio_stats(times, "clone", "clone")["ms"] * 1e3
                rows.append(row)
    finally:
        torch.set_num_threads(previous)
    return rows


def profiler_table(name: str, level: str, imgsz: int = 640, runs: int = 100, threads: int = 2, rows: int = 8) -> str:
    """Return ``torch.profiler``'s table of where one deployed block's time goes, at one yolov8n level.

    Args:
        name (str): Block name in `bench_blocks_table`.
        level (str): ``"P3"``, ``"P4"`` or ``"P5"``.
        imgsz (int): Input size the level's feature map is derived from.
        runs (int): Profiled forward passes (after 10 unprofiled ones).
        threads (int): CPU threads.
        rows (int): Operators listed, by self CPU time.

    Returns:
        (str): The profiler's table (aten operators, self and total CPU time, calls), with a title line.
    """
    from torch.profiler import ProfilerActivity, profile

    channels, stride = YOLOV8N_LEVELS[level]
    block = randomize_(deployed_block(bench_blocks_table()[name][0](channels)))
    x = torch.randn(1, channels, imgsz // stride, imgsz // stride)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            for _ in range(10):
                block(x)
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                for _ in range(runs):
                    block(x)
    finally:
        torch.set_num_threads(previous)
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)
    return f"{name} at {level} {tuple(x.shape)}, {runs} passes, {threads} threads:\n{table}"


def blocks_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Return a markdown table of ``bench_blocks`` rows, one row per block, levels side by side.

    Args:
        rows (Sequence[Mapping[str, Any]]): Output of `bench_blocks`.

    Returns:
        (str): Markdown table: time / clone (ours, plain, compiled if measured) per level, ours in microseconds
            (time / clone times the clone's median), ours / plain with its interquartile range, and ops per forward.
    """
    levels = list(dict.fromkeys(r["level"] for r in rows))
    compiled = any("compiled" in r for r in rows)
    head = ["Block", "time / clone, ours (" + " / ".join(levels) + ")", "plain (pre-issue-9)"]
    head += ["compiled"] if compiled else []
    head += ["ours, us"]
    head += ["ours / plain, median [IQR]", "ops per forward, ours / plain"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    by_block: dict[str, dict[str, Mapping[str, Any]]] = {}
    for r in rows:
        by_block.setdefault(r["block"], {})[r["level"]] = r

    def per_level(cells: dict[str, Mapping[str, Any]], key: str, fmt: str) -> str:
        return " / ".join(format(cells[lv][key], fmt) if lv in cells and key in cells[lv] else "–" for lv in levels)

    for block, cells in by_block.items():
        first = next(iter(cells.values()))
        line = [block, per_level(cells, "ours", ".1f"), per_level(cells, "plain", ".1f")]
        line += [per_level(cells, "compiled", ".1f")] if compiled else []
        line.append(
            " / ".join(f"{cells[lv]['ours'] * cells[lv]['clone_us']:.0f}" if lv in cells else "–" for lv in levels)
        )
        line.append(" / ".join(_ratio_cell(cells[lv]) if lv in cells else "–" for lv in levels))
        line.append(f"{first['ops']} / {'–' if first['ops_plain'] is None else first['ops_plain']}")
        lines.append("| " + " | ".join(line) + " |")
    return "\n".join(lines)


def _ratio_cell(row: Mapping[str, Any]) -> str:
    """Format ours / plain of one row as ``median [q1-q3]`` (``–`` for a block without a plain formulation)."""
    if "ours_vs_plain" not in row:
        return "–"
    return f"{row['ours_vs_plain']:.2f} [{row['ours_vs_plain_q1']:.2f}-{row['ours_vs_plain_q3']:.2f}]"


def _bound(module: nn.Module, x: torch.Tensor) -> Callable[[], torch.Tensor]:
    """Return a zero-argument call of ``module(x)``."""
    return lambda: module(x)


def _once(call: Callable[[], Any]) -> float:
    """Return the seconds one call takes (median of 5)."""
    times = []
    for _ in range(5):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
