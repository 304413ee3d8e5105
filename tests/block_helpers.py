"""Helpers shared by the block tests (tests/test_modules_*.py)."""

from __future__ import annotations

from torch import nn

from yolo_attn import blocks


def shipped(kind: str | None = None) -> list[blocks.BlockSpec]:
    """The blocks yolo_attn ships, as declared in the block table (``kind``: ``"channel"`` or ``"extends"``)."""
    return [s for s in blocks.specs(kind) if s.origin == "yolo_attn"]


def default_block(spec: blocks.BlockSpec, c: int, c2: int | None = None) -> nn.Module:
    """A block with its default arguments: ``cls(c)``, or ``cls(c, c2)`` for one that extends an Ultralytics block."""
    return spec.cls(c) if spec.parent is None else spec.cls(c, c if c2 is None else c2)
