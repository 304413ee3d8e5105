"""Helpers shared by the block tests (tests/test_modules_*.py)."""

from __future__ import annotations

import torch
from torch import nn

import yolo_attn
from yolo_attn import registry
from yolo_attn.modules import AttentionBlock


def shipped(kind: str | None = None) -> list[registry.BlockSpec]:
    """The blocks yolo_attn ships, as declared in the block table (``kind``: ``"channel"`` or ``"extends"``)."""
    return [s for s in registry.specs(kind) if s.origin == "yolo_attn"]


def default_block(spec: registry.BlockSpec, c: int, c2: int | None = None) -> nn.Module:
    """A block with its default arguments: ``cls(c)``, or ``cls(c, c2)`` for one that extends an Ultralytics block."""
    return spec.cls(c) if spec.parent is None else spec.cls(c, c if c2 is None else c2)


def output_shape(block: nn.Module, x: torch.Tensor) -> torch.Size:
    """The shape a block with its default arguments returns for ``x``: ``x``'s, or for a block that replaces rows of
    another module (an upsampler such as DySample) the shape that module returns (an ``nn.Upsample``: upsampled)."""
    spec = registry.spec_of(block)
    if spec is None or spec.kind != registry.REPLACES:
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


#: Identity-start and engagement tests: block width, a fixed input, and every shipped block's args at that width.
C = 32


X = torch.randn(2, C, 6, 5, generator=torch.Generator().manual_seed(0))


#: Every shipped channel-preserving block by name, with arguments where the defaults would not fit C = 32 well.
BLOCK_ARGS = {s.name: [] for s in shipped("channel")} | {
    "SE": [8],
    "ChannelAttention": [8],
    "SpatialAttention": [3, "max_mean", True],
    "CBAM": [8, 3],
    "CoordAtt": [8],
}


def make(name: str) -> AttentionBlock:
    """The shipped block ``name`` at width `C` with its `BLOCK_ARGS`, in eval mode."""
    return getattr(yolo_attn, name)(C, *BLOCK_ARGS[name]).eval()
