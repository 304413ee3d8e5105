"""ECA: Efficient Channel Attention (Wang et al., CVPR 2020)."""

from __future__ import annotations

import math

import torch
from torch import nn

from yolo_attn.modules.arg_checks import BlockArgumentError, check_channels, check_positive_int
from yolo_attn.modules.identity_start import AttentionBlock
from yolo_attn.registry import register_block


def eca_kernel_size(channels: int, gamma: int = 2, b: int = 1) -> int:
    """Return ECA's adaptive 1-D kernel size, the odd number at or just above ``|(log2(C) + b) / gamma|``.

    This is the paper's ``k = psi(C) = |log2(C)/gamma + b/gamma|_odd``, computed as the ECA authors and timm do:
    truncate to an integer, then step up to the next odd number if it is even.

    Args:
        channels (int): Channel count C.
        gamma (int): Slope of the channel-to-kernel mapping.
        b (int): Offset of the channel-to-kernel mapping.

    Returns:
        (int): Odd kernel size, e.g. 3 for C=64, 5 for C=256 and C=512.
    """
    t = int(abs((math.log2(channels) + b) / gamma))
    return t if t % 2 else t + 1


@register_block(bench_levels=("P3", "P4", "P5"))
class ECA(AttentionBlock):
    """Efficient Channel Attention: a 1-D convolution across the pooled channel descriptor, no dimensionality reduction.

    Paper: Wang, Wu, Zhu, Wang, Zuo, Hu, "ECA-Net: Efficient Channel Attention for Deep Convolutional Neural Networks",
    CVPR 2020 (reference code: BangguWu/ECANet, ``models/eca_module.py``).
    ``out = x * sigmoid(conv1d_k(avgpool(x)))``: each channel's weight comes from its k neighbouring channels, through a
    single k-tap convolution without bias shared by all channels.

    YAML: ``[-1, 1, ECA, [k]]``, all args optional; input channels are inferred. ``k`` null (default) picks the
    adaptive size from C with gamma=2, b=1 (see `eca_kernel_size`); an odd integer fixes it.

    Initialisation: the convolution weight starts at zero, so a fresh gate is exactly 0.5 for every channel.

    Attributes:
        k (int): The 1-D kernel size in use.
        conv (nn.Conv1d): 1 -> 1 channel convolution over the channel axis, 'same' padding, no bias.

    Examples:
        >>> eca = ECA(256)
        >>> eca.k
        5
        >>> eca(torch.randn(2, 256, 20, 20)).shape
        torch.Size([2, 256, 20, 20])
    """

    def __init__(self, c1: int, k: int | None = None) -> None:
        """Initialize ECA.

        Args:
            c1 (int): Input (and output) channels C.
            k (int | None): Odd kernel size of the 1-D convolution across channels, or None for the adaptive size.
        """
        super().__init__()
        check_channels("ECA", c1)
        if k is None:
            k = eca_kernel_size(c1)
        elif check_positive_int("ECA", "k", k, "1-D kernel size across channels") % 2 == 0:
            raise BlockArgumentError(f"ECA: k (1-D kernel size across channels) must be odd or null, got {k}")
        self.k = k
        self.conv = nn.Conv1d(1, 1, k, padding=k // 2, bias=False)
        nn.init.zeros_(self.conv.weight)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """Compute the channel gate.

        Args:
            x (torch.Tensor): Input of shape (B, C, H, W).

        Returns:
            (torch.Tensor): Gate in (0, 1) of shape (B, C, 1, 1).
        """
        descriptor = x.mean((2, 3)).unsqueeze(1)  # (B, 1, C): channels become the sequence axis of the 1-D conv
        return self.conv(descriptor).transpose(1, 2).unsqueeze(-1).sigmoid()

    def forward_plain(self, x: torch.Tensor) -> torch.Tensor:
        """Plain formulation (benchmarks): average pool, 1-D conv across channels, sigmoid, scale."""
        return x * self.conv(x.mean((2, 3)).unsqueeze(1)).transpose(1, 2).unsqueeze(-1).sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reweight the channels of ``x``.

        Args:
            x (torch.Tensor): Input of shape (B, C, H, W).

        Returns:
            (torch.Tensor): Output of shape (B, C, H, W).
        """
        return self.gated(x, self.gate(x))
