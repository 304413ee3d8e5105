"""Squeeze-and-Excitation channel attention (Hu et al., CVPR 2018)."""

from __future__ import annotations

import torch
from torch import nn

from yolo_attn.modules.arg_checks import check_channels, check_reduction
from yolo_attn.modules.fusion import pointwise
from yolo_attn.modules.identity_start import AttentionBlock
from yolo_attn.registry import register_block


@register_block(bench_levels=("P3", "P4", "P5"))
class SE(AttentionBlock):
    """Squeeze-and-Excitation block: reweight channels by a gate computed from their global average.

    Paper: Hu, Shen, Sun, "Squeeze-and-Excitation Networks", CVPR 2018 (reference code: hujie-frank/SENet).
    ``out = x * sigmoid(W2 relu(W1 avgpool(x) + b1) + b2)`` with ``W1: C -> C/r`` and ``W2: C/r -> C``. The two
    fully connected layers are stored as 1x1 convolutions (the checkpoint layout) and applied to the pooled ``(B, C)``
    vector as matrix products (`pointwise`): the same numbers, without a convolution's per-call cost on a 1x1 map.

    YAML: ``[-1, 1, SE, [r]]``, all args optional; input channels are inferred.

    Initialisation: ``W2`` and ``b2`` start at zero, so a fresh gate is exactly 0.5 for every channel. That uniform
    scale keeps every feature's relative size (a following BatchNorm in training mode cancels it exactly); a random
    gate would reweight channels arbitrarily and scramble a pretrained signal.

    Attributes:
        fc1 (nn.Conv2d): Squeeze layer C -> C/r, with bias.
        act (nn.ReLU): Activation between the two layers.
        fc2 (nn.Conv2d): Excitation layer C/r -> C, with bias.

    Examples:
        >>> se = SE(64, r=16)
        >>> se(torch.randn(2, 64, 20, 20)).shape
        torch.Size([2, 64, 20, 20])
    """

    def __init__(self, c1: int, r: int = 16) -> None:
        """Initialize the SE block.

        Args:
            c1 (int): Input (and output) channels C.
            r (int): Reduction ratio; the hidden width is ``C // r``. Must satisfy ``1 <= r <= C``.
        """
        super().__init__()
        hidden = check_reduction("SE", check_channels("SE", c1), r)
        self.fc1 = nn.Conv2d(c1, hidden, 1)
        self.act = nn.ReLU()
        self.fc2 = nn.Conv2d(hidden, c1, 1)
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """Compute the channel gate.

        Args:
            x (torch.Tensor): Input of shape (B, C, H, W).

        Returns:
            (torch.Tensor): Gate in (0, 1) of shape (B, C, 1, 1).
        """
        squeezed = x.mean((2, 3))  # (B, C)
        hidden = self.act(pointwise(self.fc1.weight, self.fc1.bias, squeezed))
        return pointwise(self.fc2.weight, self.fc2.bias, hidden).sigmoid()[:, :, None, None]

    def forward_plain(self, x: torch.Tensor) -> torch.Tensor:
        """Plain formulation (benchmarks): average pool, FC, ReLU, FC, sigmoid, scale; (B, C, H, W) -> same."""
        return x * self.fc2(self.act(self.fc1(x.mean((2, 3), keepdim=True)))).sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reweight the channels of ``x``.

        Args:
            x (torch.Tensor): Input of shape (B, C, H, W).

        Returns:
            (torch.Tensor): Output of shape (B, C, H, W).
        """
        return self.gated(x, self.gate(x))
