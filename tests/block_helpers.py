"""Helpers shared by the block tests (tests/test_modules_*.py)."""

from __future__ import annotations

import torch
from torch import nn

from yolo_attn import blocks


def shipped(kind: str | None = None) -> list[blocks.BlockSpec]:
    """The blocks yolo_attn ships, as declared in the block table (``kind``: ``"channel"`` or ``"extends"``)."""
    return [s for s in blocks.specs(kind) if s.origin == "yolo_attn"]


def default_block(spec: blocks.BlockSpec, c: int, c2: int | None = None) -> nn.Module:
    """A block with its default arguments: ``cls(c)``, or ``cls(c, c2)`` for one that extends an Ultralytics block."""
    return spec.cls(c) if spec.parent is None else spec.cls(c, c if c2 is None else c2)


def output_shape(block: nn.Module, x: torch.Tensor) -> torch.Size:
    """The shape a block with its default arguments returns for ``x``: ``x``'s, or for a block that replaces rows of
    another module (an upsampler such as DySample) the shape that module returns (an ``nn.Upsample``: upsampled)."""
    spec = blocks.spec_of(block)
    if spec is None or spec.kind != blocks.REPLACES:
        return x.shape
    return spec.replaces(*spec.replaced_row([])[1])(x).shape


class Parallel(nn.Module):
    """Every block applied to the same input, side by side (not chained: a chain of random blocks amplifies rounding).

    Args:
        blocks (list[nn.Module]): The blocks.
    """

    def __init__(self, blocks: list[nn.Module]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Return every block's output on ``x``, in order."""
        return tuple(block(x) for block in self.blocks)
