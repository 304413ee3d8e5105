"""C2f and C3k2 whose bottlenecks apply coordinate attention on the residual branch (CA-C2f, CA-C3k2).

The blocks extend Ultralytics' own C2f and C3k2, take exactly their arguments and build exactly their layers; every
``Bottleneck`` inside them (directly in ``m``, inside C3k, or in front of a PSABlock) then gets a `CoordAtt` between its
second convolution and the residual add. Upgrading whatever the parent built, rather than rebuilding its layer list
here, keeps the blocks identical to their parents apart from the attention, in any Ultralytics version.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from ultralytics.nn.modules.block import Bottleneck, C2f, C3k, C3k2, PSABlock

from yolo_attn.modules.coord_att import CoordAtt
from yolo_attn.registry import register_block


class CoordAttBottleneck(nn.Module):
    """An Ultralytics ``Bottleneck`` with coordinate attention on the residual branch: ``x + CA(cv2(cv1(x)))``.

    Takes over the convolutions and the shortcut decision of an existing ``Bottleneck``. Without a shortcut (or when
    input and output channels differ) the output is ``CA(cv2(cv1(x)))``.

    Attributes:
        cv1 (ultralytics.nn.modules.conv.Conv): First convolution of the bottleneck.
        cv2 (ultralytics.nn.modules.conv.Conv): Second convolution of the bottleneck.
        add (bool): Whether the residual shortcut is used.
        ca (CoordAtt): Coordinate attention on the residual branch.

    Examples:
        >>> block = CoordAttBottleneck(Bottleneck(64, 64))
        >>> block(torch.randn(2, 64, 20, 20)).shape
        torch.Size([2, 64, 20, 20])
    """

    def __init__(self, bottleneck: Bottleneck, r: int = 32) -> None:
        """Initialize from an existing bottleneck, reusing its layers.

        Args:
            bottleneck (Bottleneck): The bottleneck whose ``cv1``, ``cv2`` and ``add`` are taken over.
            r (int): Reduction ratio of the coordinate attention.
        """
        super().__init__()
        self.cv1 = bottleneck.cv1
        self.cv2 = bottleneck.cv2
        self.add = bottleneck.add
        self.ca = CoordAtt(self.cv2.conv.out_channels, r)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the bottleneck with attention on its residual branch.

        Args:
            x (torch.Tensor): Input of shape (B, C1, H, W).

        Returns:
            (torch.Tensor): Output of shape (B, C2, H, W).
        """
        y = self.ca(self.cv2(self.cv1(x)))
        return x + y if self.add else y


def add_coord_att(module: nn.Module, r: int = 32) -> int:
    """Replace, in place and at any depth, every plain ``Bottleneck`` under ``module`` by a `CoordAttBottleneck`.

    Args:
        module (nn.Module): Module whose descendants are upgraded (``module`` itself is not replaced).
        r (int): Reduction ratio of each coordinate attention.

    Returns:
        (int): How many bottlenecks were upgraded.
    """
    upgraded = 0
    for name, child in module.named_children():
        if type(child) is Bottleneck:  # exact type: subclasses may compute something else
            setattr(module, name, CoordAttBottleneck(child, r))
            upgraded += 1
        else:
            upgraded += add_coord_att(child, r)
    return upgraded


def _expansion(hidden: int, c2: int) -> float:
    """Return an expansion ratio ``e`` with ``int(c2 * e) == hidden``, as C2f and C3k2 compute their hidden width."""
    e = hidden / c2
    return e if int(c2 * e) == hidden else math.nextafter(e, math.inf)


def _bottleneck_options(parent: C2f, default_shortcut: bool) -> tuple[bool, int]:
    """Return ``(shortcut, g)`` of the first plain bottleneck in ``parent.m``; ``(default_shortcut, 1)`` if none."""
    first = next((m for m in parent.m.modules() if type(m) is Bottleneck), None)
    return (default_shortcut, 1) if first is None else (first.add, first.cv2.conv.groups)


@register_block(aliases=["CA-C2f"], parent=C2f)
class CA_C2f(C2f):
    """C2f with coordinate attention on the residual branch of each bottleneck, before the add.

    Same arguments, layers, scaling and forward as Ultralytics' C2f; each of the n bottlenecks computes
    ``x + CoordAtt(cv2(cv1(x)))`` (or ``CoordAtt(cv2(cv1(x)))`` without shortcut) with CoordAtt's r=32.

    YAML: like C2f, ``[-1, 3, CA_C2f, [256, True]]`` (output channels, shortcut); also accepted as ``CA-C2f``.

    Examples:
        >>> block = CA_C2f(64, 128, n=2, shortcut=True)
        >>> block(torch.randn(2, 64, 20, 20)).shape
        torch.Size([2, 128, 20, 20])
    """

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = False, g: int = 1, e: float = 0.5) -> None:
        """Initialize CA-C2f.

        Args:
            c1 (int): Input channels.
            c2 (int): Output channels.
            n (int): Number of bottlenecks.
            shortcut (bool): Whether the bottlenecks use their residual shortcut.
            g (int): Groups of the bottlenecks' second convolution.
            e (float): Expansion ratio of the hidden channels.
        """
        super().__init__(c1, c2, n, shortcut, g, e)
        add_coord_att(self.m)

    @classmethod
    def parent_args(cls, parent: C2f) -> list:
        """Return the args ``[c1, c2, n, shortcut, g, e]`` that rebuild a built C2f as a CA-C2f of the same shape.

        Args:
            parent (C2f): A built C2f, e.g. the one Ultralytics' parse_model scaled for this YAML row.

        Returns:
            (list): Constructor args; ``cls(*args)`` has the parent's layers plus a CoordAtt per bottleneck.
        """
        shortcut, g = _bottleneck_options(parent, default_shortcut=False)
        c2 = parent.cv2.conv.out_channels
        return [parent.cv1.conv.in_channels, c2, len(parent.m), shortcut, g, _expansion(parent.c, c2)]


@register_block(parent=C3k2)
class CA_C3k2(C3k2):
    """C3k2 (YOLO11) with coordinate attention on the residual branch of every bottleneck, before the add.

    Same arguments, layers, scaling and forward as Ultralytics' C3k2, whichever inner blocks it builds (bottlenecks,
    C3k blocks of two bottlenecks each, or bottleneck + PSABlock); every bottleneck gets a CoordAtt with r=32.

    YAML: like C3k2, ``[-1, 2, CA_C3k2, [256, False, 0.25]]`` (output channels, c3k, expansion).

    Examples:
        >>> block = CA_C3k2(64, 128, n=1, c3k=True)
        >>> block(torch.randn(2, 64, 20, 20)).shape
        torch.Size([2, 128, 20, 20])
    """

    def __init__(
        self,
        c1: int,
        c2: int,
        n: int = 1,
        c3k: bool = False,
        e: float = 0.5,
        attn: bool = False,
        g: int = 1,
        shortcut: bool = True,
    ) -> None:
        """Initialize CA-C3k2.

        Args:
            c1 (int): Input channels.
            c2 (int): Output channels.
            n (int): Number of inner blocks.
            c3k (bool): Whether the inner blocks are C3k blocks instead of bottlenecks.
            e (float): Expansion ratio of the hidden channels.
            attn (bool): Whether each inner block is a bottleneck followed by a PSABlock.
            g (int): Groups of the bottlenecks' second convolution.
            shortcut (bool): Whether the bottlenecks use their residual shortcut.
        """
        super().__init__(c1, c2, n, c3k, e, attn, g, shortcut)
        add_coord_att(self.m)

    @classmethod
    def parent_args(cls, parent: C3k2) -> list:
        """Return the args ``[c1, c2, n, c3k, e, attn, g, shortcut]`` that rebuild a built C3k2 as a CA-C3k2.

        Args:
            parent (C3k2): A built C3k2, e.g. the one Ultralytics' parse_model scaled for this YAML row (with ``c3k``
                already switched on for the m/l/x scales).

        Returns:
            (list): Constructor args; ``cls(*args)`` has the parent's layers plus a CoordAtt per bottleneck.
        """
        shortcut, g = _bottleneck_options(parent, default_shortcut=True)
        c2 = parent.cv2.conv.out_channels
        c3k = any(isinstance(m, C3k) for m in parent.m)
        attn = any(isinstance(m, PSABlock) for m in parent.m.modules())
        return [parent.cv1.conv.in_channels, c2, len(parent.m), c3k, _expansion(parent.c, c2), attn, g, shortcut]
