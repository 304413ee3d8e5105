"""Helpers shared by the block tests (tests/test_modules_*.py)."""

from __future__ import annotations

import torch
from torch import nn

from yolo_attn import blocks


def randomize_(module: nn.Module, seed: int = 0) -> nn.Module:
    """Give every parameter and BatchNorm statistic a random value, in place.

    Fresh blocks start with zeroed last layers (constant gates, identity attention), which would make most reference
    comparisons trivially true; random values exercise every weight.

    Args:
        module (nn.Module): Module to randomize.
        seed (int): Seed of the private generator.

    Returns:
        (nn.Module): ``module``.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return module


def shipped(kind: str | None = None) -> list[blocks.BlockSpec]:
    """The blocks yolo_attn ships, as declared in the block table (``kind``: ``"channel"`` or ``"extends"``)."""
    return [s for s in blocks.specs(kind) if s.origin == "yolo_attn"]


def default_block(spec: blocks.BlockSpec, c: int, c2: int | None = None) -> nn.Module:
    """A block with its default arguments: ``cls(c)``, or ``cls(c, c2)`` for one that extends an Ultralytics block."""
    return spec.cls(c) if spec.parent is None else spec.cls(c, c if c2 is None else c2)
