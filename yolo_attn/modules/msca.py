"""MSCA: the multi-scale convolutional attention of SegNeXt (Guo et al., NeurIPS 2022)."""

from __future__ import annotations

import torch
from torch import nn

from yolo_attn.modules.arg_checks import check_channels
from yolo_attn.modules.identity_start import AttentionBlock
from yolo_attn.registry import register_block


@register_block(aliases=["SegNext_Attention"])
class MSCA(AttentionBlock):
    """Multi-scale convolutional attention: a 5x5 depthwise conv, three depthwise strip pairs (7, 11, 21), a 1x1 conv.

    Paper: Guo, Lu, Hou, Liu, Cheng, Hu, "SegNeXt: Rethinking Convolutional Attention Design for Semantic
    Segmentation", NeurIPS 2022. Reference code: Visual-Attention-Network/SegNeXt, ``mmseg/models/backbones/mscan.py``,
    class ``AttentionModule`` (commit c87bcae), which this block follows layer for layer. The forks'
    ``SegNext_Attention`` (an alias here) is the same module.

    All convolutions are depthwise with bias except ``conv3`` (1x1, C -> C, with bias)::

        a    = conv0(x)                                    5 x 5
        attn = a + conv0_2(conv0_1(a))                     1 x 7, then 7 x 1
                 + conv1_2(conv1_1(a))                     1 x 11, then 11 x 1
                 + conv2_2(conv2_1(a))                     1 x 21, then 21 x 1
        out  = x * conv3(attn)

    There is no sigmoid: ``conv3(attn)`` is an unbounded multiplier, as in the reference. Shapes: (B, C, H, W) ->
    (B, C, H, W); every convolution is zero-padded to keep H x W, so the block runs at any feature-map size (1 x 1
    included). Parameters: ``C^2 + 111 C``, 93,952 at C = 256.

    YAML: ``[-1, 1, MSCA, []]`` (or ``SegNext_Attention``); no arguments, input channels are inferred.

    State dict: the reference's keys and shapes (``conv0``, ``conv0_1``, ``conv0_2``, ``conv1_1``, ``conv1_2``,
    ``conv2_1``, ``conv2_2``, ``conv3``), so the reference module's state dict loads strictly.

    Departures from the reference:
        - The reference's ``u = x.clone()`` is dropped (nothing writes ``x`` in place, so the numbers are the same).
        - The reference is the inner gate of SegNeXt's ``SpatialAttention`` (1x1 conv, GELU, this, 1x1 conv, residual);
          like the forks, this block is the gate alone, ``x * conv3(attn)``.
        - Initialisation: PyTorch's defaults (the reference's MSCAN backbone re-initialises every convolution with
          ``normal(0, sqrt(2 / fan_out))`` and zero bias; only the initial values differ).

    Identity start: the identity mix of `AttentionBlock`.

    Attributes:
        conv0 (nn.Conv2d): Depthwise 5x5 conv.
        conv0_1 (nn.Conv2d): Depthwise (1, 7) conv.
        conv0_2 (nn.Conv2d): Depthwise (7, 1) conv.
        conv1_1 (nn.Conv2d): Depthwise (1, 11) conv.
        conv1_2 (nn.Conv2d): Depthwise (11, 1) conv.
        conv2_1 (nn.Conv2d): Depthwise (1, 21) conv.
        conv2_2 (nn.Conv2d): Depthwise (21, 1) conv.
        conv3 (nn.Conv2d): 1x1 conv C -> C.

    Examples:
        >>> msca = MSCA(64)
        >>> msca(torch.randn(2, 64, 15, 20)).shape
        torch.Size([2, 64, 15, 20])
    """

    def __init__(self, c1: int) -> None:
        """Initialize MSCA.

        Args:
            c1 (int): Input (and output) channels C (the reference's ``dim``).
        """
        super().__init__()
        dim = check_channels("MSCA", c1)
        self.conv0 = nn.Conv2d(dim, dim, 5, padding=2, groups=dim)
        self.conv0_1 = nn.Conv2d(dim, dim, (1, 7), padding=(0, 3), groups=dim)
        self.conv0_2 = nn.Conv2d(dim, dim, (7, 1), padding=(3, 0), groups=dim)
        self.conv1_1 = nn.Conv2d(dim, dim, (1, 11), padding=(0, 5), groups=dim)
        self.conv1_2 = nn.Conv2d(dim, dim, (11, 1), padding=(5, 0), groups=dim)
        self.conv2_1 = nn.Conv2d(dim, dim, (1, 21), padding=(0, 10), groups=dim)
        self.conv2_2 = nn.Conv2d(dim, dim, (21, 1), padding=(10, 0), groups=dim)
        self.conv3 = nn.Conv2d(dim, dim, 1)

    def attn(self, x: torch.Tensor) -> torch.Tensor:
        """Return the multiplier ``conv3(attn)`` of shape (B, C, H, W) (unbounded, no sigmoid)."""
        attn = self.conv0(x)
        attn_0 = self.conv0_2(self.conv0_1(attn))
        attn_1 = self.conv1_2(self.conv1_1(attn))
        attn_2 = self.conv2_2(self.conv2_1(attn))
        return self.conv3(attn + attn_0 + attn_1 + attn_2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Multiply ``x`` by its multi-scale convolutional attention.

        Args:
            x (torch.Tensor): Input of shape (B, C, H, W).

        Returns:
            (torch.Tensor): ``x * conv3(attn)``, shape (B, C, H, W).
        """
        return self.gated(x, self.attn(x))

    def attention_map(self, x: torch.Tensor, output: torch.Tensor) -> tuple[torch.Tensor, str]:
        """Return the multiplier ``conv3(attn)`` averaged over the channels (B, H, W), and what it is."""
        return self.attn(x).mean(1), "MSCA multiplier (channel mean)"
