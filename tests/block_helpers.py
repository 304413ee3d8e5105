"""Helpers shared by the block tests (tests/test_modules_*.py)."""

from __future__ import annotations

import torch
from torch import nn

from yolo_attn import registry


def shipped(kind: str | None = None) -> list[registry.BlockSpec]:
    """The blocks yolo_attn ships, as declared in the block table (``kind``: ``"channel"`` or ``"extends"``)."""
    return [s for s in registry.specs(kind) if s.origin == "yolo_attn"]


def default_block(spec: registry.BlockSpec, c: int, c2: int | None = None) -> nn.Module:
    """A block with its default arguments: ``cls(c)``, or ``cls(c, c2)`` for one that extends an Ultralytics block."""
    return spec.cls(c) if spec.parent is None else spec.cls(c, c if c2 is None else c2)


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
