"""Training-time and fine-tuned cost of the blocks: forward + backward over a clone, saved activations, the mix's price.

Three measurements, each from the paired, shuffled protocol of `yolo_attn.profiling.paired` (ratios of variants run in
the same round), and each given built from scratch and fine-tuned. Fine-tuned is the state the package recommends for
a pretrained network: the block after `start_as_identity` with its ``identity_mix`` set to a trained-looking value
(0.3 by default), so the mix path runs (`fine_tuned`). Whatever the blocks' forward does with the mix is measured, so
the same commands give before and after figures for any change to it.

- `bench_blocks_train`: each block's forward + backward time over a clone's forward + backward of the same tensor
  (requiring grad), at its yolov8n levels, in train mode; and the activations it keeps for backward, counted exactly
  (`yolo_attn.profiling.saved`).
- `bench_mix`: the eval-mode price of the mix: the same random weights, fused, with the mix against without.
- `bench_train_steps` (in `yolo_attn.profiling.train_step`): whole-model training steps against yolov8n.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from yolo_attn.modules.identity_start import start_as_identity
from yolo_attn.modules.random_weights import randomize_
from yolo_attn.profiling.blocks import YOLOV8N_LEVELS, _once, bench_blocks_table, deployed_block
from yolo_attn.profiling.paired import paired_times, ratio_stats
from yolo_attn.profiling.saved import SavedTensors, saved_by_module

#: The identity mix of a "fine-tuned" block: far enough from 0 and 1 that neither end is special-cased.
FINE_TUNED_MIX = 0.3


def has_mix(module: nn.Module) -> bool:
    """Whether a block carries an identity mix (blocks that start as the identity by a zero projection do not)."""
    return getattr(module, "identity_mix", None) is not None


def fine_tuned(module: nn.Module, mix: float = FINE_TUNED_MIX) -> nn.Module:
    """Put a block, or every outermost attention block of a model, in its fine-tuned state, in place.

    Each block gets `start_as_identity` (a zero ``identity_mix``, or a zeroed output projection for residual blocks
    such as MHSA), then its mix is set to ``mix``, as training would have moved it.

    Args:
        module (nn.Module): A block or a whole model (e.g. an Ultralytics ``DetectionModel``).
        mix (float): Value given to each ``identity_mix``.

    Returns:
        (nn.Module): ``module``.
    """
    from yolo_attn import registry
    from yolo_attn.finetune.transfer import outermost_attention_blocks
    from yolo_attn.modules.identity_start import AttentionBlock

    is_block = isinstance(module, AttentionBlock) or registry.spec_of(module) is not None
    found = {"": module} if is_block else outermost_attention_blocks(module)
    for block in found.values():
        start_as_identity(block)
        if has_mix(block):
            with torch.no_grad():
                block.identity_mix.fill_(mix)
    return module


def with_mix(block: nn.Module, mix: float = FINE_TUNED_MIX) -> nn.Module | None:
    """Return a copy of ``block`` with the same weights and an identity mix set to ``mix``, or None when it has none.

    Unlike `fine_tuned`, nothing else changes (a block that starts as the identity through a zeroed projection has no
    mix to price, hence None).
    """
    if getattr(block, "zero_output", None) is not None:
        return None
    mixed = start_as_identity(copy.deepcopy(block))
    if not has_mix(mixed):
        return None
    with torch.no_grad():
        mixed.identity_mix.fill_(mix)
    return mixed


def _train_step(module: nn.Module, x: torch.Tensor, grad: torch.Tensor) -> Callable[[], None]:
    """Return a zero-argument forward + backward of ``module(x)`` with output gradient ``grad`` (grads reset first)."""

    def step() -> None:
        x.grad = None
        module.zero_grad(set_to_none=True)
        module(x).backward(grad)

    return step


def _clone_step(x: torch.Tensor, grad: torch.Tensor) -> Callable[[], None]:
    """Return a zero-argument forward + backward of ``x.clone()``, the floor of a block's training pass."""

    def step() -> None:
        x.grad = None
        x.clone().backward(grad)

    return step


def _ratio_fields(times: Mapping[str, Sequence[float]], name: str, baseline: str, key: str) -> dict[str, float]:
    """Return ``{key, key_q1, key_q3}`` of the per-round ratio ``name / baseline``."""
    stats = ratio_stats(times, name, baseline)
    return {key: stats["ratio"], f"{key}_q1": stats["q1"], f"{key}_q3": stats["q3"]}


def _saved_fields(saved: SavedTensors, x: torch.Tensor, key: str) -> dict[str, Any]:
    """Return the saved-activation fields of a row: bytes, and the multiple of the input's bytes."""
    input_bytes = x.numel() * x.element_size()
    return {f"{key}_bytes": saved.activation_bytes, f"{key}_x": saved.activation_bytes / input_bytes}


def _with_threads(threads: int | None, run: Callable[[], Any]) -> Any:
    """Run ``run()`` with ``torch.set_num_threads(threads)`` (None keeps the setting), restoring it afterwards."""
    previous = torch.get_num_threads()
    try:
        if threads:
            torch.set_num_threads(threads)
        return run()
    finally:
        torch.set_num_threads(previous)


def _inner(call: Callable[[], Any], target_s: float = 3e-4) -> int:
    """Calls per round so that one sample lasts about ``target_s`` (short samples are hit less by preemption)."""
    return max(1, int(target_s / max(_once(call), 1e-6)))


def _selected(names: Sequence[str] | None) -> tuple[list[str], dict[str, Any]]:
    """Resolve block names against `bench_blocks_table` (None: all), raising for unknown ones."""
    bench = bench_blocks_table()
    names = list(bench) if names is None else list(names)
    unknown = [n for n in names if n not in bench]
    if unknown:
        raise ValueError(f"unknown blocks {unknown}; expected some of {list(bench)}")
    return names, bench


def bench_blocks_train(
    names: Sequence[str] | None = None,
    imgsz: int = 640,
    rounds: int = 30,
    threads: int | None = 2,
    batch: int = 2,
    mix: float = FINE_TUNED_MIX,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Benchmark blocks in training: forward + backward over a clone's, and the activations saved for backward.

    Each block is built with random weights, in train mode (BatchNorm on batch statistics), on an input of the
    level's shape that requires grad, with a fixed random output gradient. Three variants run in each paired,
    shuffled round: the clone (``x.clone()`` forward + backward), the block from scratch, and its fine-tuned copy
    (`fine_tuned`: same weights, identity start, mix ``mix``). Saved activations are counted once per variant with
    ``saved_tensors_hooks``, parameters and the input excluded (``*_bytes``), and as a multiple of the input's bytes
    (``*_x``).

    Args:
        names (Sequence[str] | None): Block names from `bench_blocks_table`; None for all.
        imgsz (int): Square image size whose P3/P4/P5 feature-map shapes are used.
        rounds (int): Paired rounds per block and level.
        threads (int | None): CPU threads during the measurement (restored afterwards); None keeps the setting.
        batch (int): Batch size of the input (2: BatchNorm on pooled vectors needs more than one value in training).
        mix (float): Identity mix of the fine-tuned variant.
        seed (int): Seed of weights, inputs and shuffling.

    Returns:
        (list[dict[str, Any]]): One row per block and level: ``block``, ``level``, ``shape``, ``scratch`` / ``tuned``
            (forward + backward time over the clone's, with ``*_q1`` / ``*_q3``), ``tuned_vs_scratch`` (per-round
            ratio), ``scratch_bytes`` / ``tuned_bytes`` and ``scratch_x`` / ``tuned_x`` (saved activations beyond the
            input and the parameters, and that over the input's bytes), ``clone_bytes``, ``input_bytes``,
            ``clone_us`` (median microseconds of the clone's forward + backward), ``mixed`` (whether the fine-tuned
            block carries a mix).
    """
    names, bench = _selected(names)

    def run() -> list[dict[str, Any]]:
        rows = []
        for name, level, make, channels, stride, generator in _seeded_cases(names, bench, seed):
            scratch = randomize_(make(channels), generator).train()
            tuned = fine_tuned(copy.deepcopy(scratch), mix).train()
            shape = (batch, channels, imgsz // stride, imgsz // stride)
            x = torch.randn(shape, generator=generator).requires_grad_(True)
            grad = torch.randn(shape, generator=generator)
            variants = {
                "clone": _clone_step(x, grad),
                "scratch": _train_step(scratch, x, grad),
                "tuned": _train_step(tuned, x, grad),
            }
            for call in variants.values():
                for _ in range(2):
                    call()
            inner = _inner(variants["scratch"])
            times = paired_times(variants, rounds=rounds, inner=inner, seed=seed)
            row: dict[str, Any] = {"block": name, "level": level, "shape": shape, "mixed": has_mix(tuned)}
            row.update(_ratio_fields(times, "scratch", "clone", "scratch"))
            row.update(_ratio_fields(times, "tuned", "clone", "tuned"))
            row.update(_ratio_fields(times, "tuned", "scratch", "tuned_vs_scratch"))
            row.update(_saved_fields(saved_by_module(scratch, x), x, "scratch"))
            row.update(_saved_fields(saved_by_module(tuned, x), x, "tuned"))
            row["clone_bytes"] = saved_by_module(_Clone(), x).activation_bytes
            row["input_bytes"] = x.numel() * x.element_size()
            row["clone_us"] = ratio_stats(times, "clone", "clone")["ms"] * 1e3
            rows.append(row)
        return rows

    return _with_threads(threads, run)


def _seeded_cases(
    names: Sequence[str], bench: Mapping[str, tuple[Callable[[int], nn.Module], Sequence[str]]], seed: int
) -> Iterator[tuple[str, str, Callable[[int], nn.Module], int, int, torch.Generator]]:
    """Yield every (block, level) a benchmark runs, in order, with torch's global seed reset before each.

    Args:
        names (Sequence[str]): Block names, in order.
        bench (Mapping[str, tuple[Callable[[int], nn.Module], Sequence[str]]]): Per name, the block's constructor (from
            its channels) and its benchmark levels.
        seed (int): Seed of the one generator shared by the whole run, and of torch's global RNG at each case.

    Yields:
        (tuple): ``name``, ``level``, ``make``, ``channels``, ``stride`` (of the level in yolov8n) and the generator.
    """
    generator = torch.Generator().manual_seed(seed)
    for name in names:
        make, levels = bench[name]
        for level, (channels, stride) in YOLOV8N_LEVELS.items():
            if level in levels:
                torch.manual_seed(seed)
                yield name, level, make, channels, stride, generator


class _Clone(nn.Module):
    """``x.clone()`` as a module (for the saved-tensor count of the baseline: it saves nothing)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return a copy of ``x``."""
        return x.clone()


def bench_mix(
    names: Sequence[str] | None = None,
    imgsz: int = 640,
    rounds: int = 150,
    threads: int | None = 1,
    mix: float = FINE_TUNED_MIX,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Price of the identity mix in inference: the same random weights, fused, eval, with the mix against without.

    Args:
        names (Sequence[str] | None): Block names from `bench_blocks_table`; None for all.
        imgsz (int): Square image size whose P3/P4/P5 feature-map shapes are used.
        rounds (int): Paired rounds per block and level.
        threads (int | None): CPU threads (1 by default, as the training tables were measured).
        mix (float): The mix value.
        seed (int): Seed of weights, inputs and shuffling.

    Returns:
        (list[dict[str, Any]]): One row per block and level: ``block``, ``level``, ``shape``, ``mix_ratio`` (median
            per-round ratio with / without, with ``mix_ratio_q1`` / ``mix_ratio_q3``), ``without_us``; blocks with no
            mix (a zeroed projection starts them, e.g. MHSA) get ``mix_ratio`` None.
    """
    names, bench = _selected(names)

    def run() -> list[dict[str, Any]]:
        rows = []
        for name, level, make, channels, stride, generator in _seeded_cases(names, bench, seed):
            block = randomize_(make(channels), generator).eval()
            x = torch.randn(1, channels, imgsz // stride, imgsz // stride, generator=generator)
            row: dict[str, Any] = {"block": name, "level": level, "shape": tuple(x.shape), "mix_ratio": None}
            mixed = with_mix(block, mix)
            if mixed is not None:
                without, with_ = deployed_block(block), deployed_block(mixed)
                variants = {"without": _call(without, x), "with": _call(with_, x)}
                with torch.no_grad():
                    for call in variants.values():
                        for _ in range(3):
                            call()
                    times = paired_times(variants, rounds=rounds, inner=_inner(variants["without"]), seed=seed)
                row.update(_ratio_fields(times, "with", "without", "mix_ratio"))
                row["without_us"] = ratio_stats(times, "without", "without")["ms"] * 1e3
            rows.append(row)
        return rows

    return _with_threads(threads, run)


def _call(module: nn.Module, x: torch.Tensor) -> Callable[[], torch.Tensor]:
    """Return a zero-argument call of ``module(x)``."""
    return lambda: module(x)


def _by_block(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Mapping[str, Any]]]:
    """Group rows by block, then level."""
    grouped: dict[str, dict[str, Mapping[str, Any]]] = {}
    for r in rows:
        grouped.setdefault(r["block"], {})[r["level"]] = r
    return grouped


def _cells(cells: Mapping[str, Mapping[str, Any]], key: str, fmt: str) -> str:
    """Format one field at every level, ``–`` where the block is not benchmarked (or the field is None)."""
    parts = []
    for level in YOLOV8N_LEVELS:
        value = cells.get(level, {}).get(key)
        parts.append("–" if value is None else format(value, fmt))
    return " / ".join(parts)


def mix_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Return a markdown table of `bench_mix` rows: with mix / without, median [IQR], at P3 / P4 / P5."""
    lines = ["| Block | with mix / without, eval, fused (P3 / P4 / P5) | IQR at P3 |", "|---|---|---|"]
    for block, cells in _by_block(rows).items():
        if all(r.get("mix_ratio") is None for r in cells.values()):
            lines.append(f"| {block} | no mix (starts as the identity by a zeroed projection) | – |")
            continue
        first = cells.get("P3") or next(iter(cells.values()))
        iqr = f"{first['mix_ratio_q1']:.2f}-{first['mix_ratio_q3']:.2f} ({first['level']})"
        lines.append(f"| {block} | {_cells(cells, 'mix_ratio', '.2f')} | {iqr} |")
    return "\n".join(lines)


def train_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Return a markdown table of `bench_blocks_train` rows, levels side by side.

    Columns: forward + backward over the clone's, from scratch and fine-tuned, their per-round ratio, and the saved
    activations (parameters and the input excluded) as a multiple of the input, from scratch and fine-tuned.
    """
    head = [
        "Block",
        "fwd+bwd / clone's, scratch (P3 / P4 / P5)",
        "fine-tuned",
        "fine-tuned / scratch",
        "saved beyond input, × input, scratch",
        "fine-tuned",
        "saved at P3, scratch / fine-tuned (KiB)",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for block, cells in _by_block(rows).items():
        first = cells.get("P3") or next(iter(cells.values()))
        kib = f"{first['scratch_bytes'] / 1024:.0f} / {first['tuned_bytes'] / 1024:.0f} ({first['level']})"
        tuned_note = "" if first["mixed"] else " (no mix)"
        line = [
            block,
            _cells(cells, "scratch", ".2f"),
            _cells(cells, "tuned", ".2f") + tuned_note,
            _cells(cells, "tuned_vs_scratch", ".2f"),
            _cells(cells, "scratch_x", ".2f"),
            _cells(cells, "tuned_x", ".2f"),
            kib,
        ]
        lines.append("| " + " | ".join(line) + " |")
    return "\n".join(lines)
