"""Spatial Group-wise Enhance (Li, Hu, Yang, arXiv 1905.09646)."""

from __future__ import annotations

from collections.abc import Callable
from operator import mul

import torch
from torch import nn

from yolo_attn.modules.arg_checks import BlockArgumentError, check_channels, check_positive_int
from yolo_attn.modules.identity_start import AttentionBlock
from yolo_attn.registry import register_block

EPS = 1e-5  # added to the standard deviation, as in the reference


@register_block(aliases=("SGE",))
class SpatialGroupEnhance(AttentionBlock):
    """Spatial Group-wise Enhance: each channel group gates its positions by their similarity to the group's mean.

    Paper: Li, Hu, Yang, "Spatial Group-wise Enhance: Improving Semantic Feature Learning in Convolutional Networks",
    arXiv 1905.09646, 2019. Reference code: implus/PytorchInsight
    (``classification/models/imagenet/resnet_sge.py``, ``SpatialGroupEnhance``).

    The C channels are split into G groups of C/G. For group g with features ``x_g`` (C/G, H, W):
    ``c_i = sum_k x_g[k, i] * mean_HW(x_g)[k]`` (the dot product of each position with the group's global descriptor),
    ``n_i = (c_i - mean_HW(c)) / (std_HW(c) + 1e-5)`` (``std`` unbiased, as ``torch.std``),
    ``a_i = sigmoid(weight_g * n_i + bias_g)``, and ``out_g = x_g * a`` (every channel of the group, same gate).

    Shapes: (B, C, H, W) -> (B, C, H, W); the gate is (B, G, H, W). Pooling is a plain mean over H and W; groups are
    a reshape of the channel axis (opset 12 and up), so the block exports to ONNX with dynamic batch, H and W.

    YAML: ``[-1, 1, SpatialGroupEnhance, [groups]]`` (alias ``SGE``), all args optional; input channels are inferred.
    ``groups`` must divide the layer's channels: checked when the model is built (`BlockArgumentError`, reported as a
    YAML row error naming the layer), never found at run time.

    Default: ``groups=8``, the forks' default (z1069614715/objectdetection_script, External-Attention-pytorch); the
    reference class defaults to 64, the paper's ResNet setting (64 groups of 4 to 32 channels). At yolov8n's P3
    (C=64) 64 groups would be groups of one channel.

    State dict: ``weight`` and ``bias`` of shape (1, G, 1, 1), the reference's keys and shapes; ``weight`` starts at
    0 and ``bias`` at 1 as in the reference. Cost: 2G parameters (16 by default).

    Departure from the reference: on a 1 x 1 feature map (a tiny image) the reference's unbiased standard deviation of
    one value is NaN and so is its output; here the NaN standard deviation is replaced by 0, so the normalised map is
    0 and the gate is ``sigmoid(bias)``. On any map of two or more positions the numbers are the reference's.

    Attributes:
        groups (int): Number of channel groups G.
        weight (nn.Parameter): Per-group scale of the normalised map, (1, G, 1, 1).
        bias (nn.Parameter): Per-group shift of the normalised map, (1, G, 1, 1).

    Examples:
        >>> sge = SpatialGroupEnhance(64, groups=8)
        >>> sge(torch.randn(2, 64, 20, 20)).shape
        torch.Size([2, 64, 20, 20])
    """

    def __init__(self, c1: int, groups: int = 8) -> None:
        """Initialize SGE.

        Args:
            c1 (int): Input (and output) channels C.
            groups (int): Number of channel groups G; must divide C.
        """
        super().__init__()
        check_channels("SpatialGroupEnhance", c1)
        check_positive_int("SpatialGroupEnhance", "groups", groups, "number of channel groups")
        if c1 % groups:
            raise BlockArgumentError(
                f"SpatialGroupEnhance: groups={groups} must divide the layer's {c1} input channels ({c1} % {groups} = "
                f"{c1 % groups}); use a divisor of {c1} such as {_largest_divisor(c1, groups)}"
            )
        self.groups = groups
        self.weight = nn.Parameter(torch.zeros(1, groups, 1, 1))
        self.bias = nn.Parameter(torch.ones(1, groups, 1, 1))

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """Compute the spatial gate of every group.

        Args:
            x (torch.Tensor): Input of shape (B, C, H, W).

        Returns:
            (torch.Tensor): Gate in (0, 1) of shape (B, G, H, W).
        """
        b, c, h, w = x.shape
        xg = x.reshape(b, self.groups, c // self.groups, h, w)  # (B, G, C/G, H, W)
        similarity = (xg * xg.mean((3, 4), keepdim=True)).sum(2)  # (B, G, H, W)
        centred = similarity - similarity.mean((2, 3), keepdim=True)
        std = similarity.std((2, 3), keepdim=True).nan_to_num(0.0)  # NaN only for a single position
        return (centred / (std + EPS) * self.weight + self.bias).sigmoid()

    def forward_plain(self, x: torch.Tensor) -> torch.Tensor:
        """Plain formulation (benchmarks): the same computation as `forward` without the identity mix."""
        return self._gate_groups(x, self.gate(x))

    def attention_map(self, x: torch.Tensor, output: torch.Tensor) -> tuple[torch.Tensor, str]:
        """Return the spatial gate averaged over the groups (B, H, W), and what it is."""
        return self.gate(x).mean(1), "spatial gate (mean over groups)"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Gate the positions of every channel group of ``x``.

        Args:
            x (torch.Tensor): Input of shape (B, C, H, W).

        Returns:
            (torch.Tensor): Output of shape (B, C, H, W).
        """
        return self._gate_groups(x, self.gate(x), self.gated)

    def _gate_groups(
        self, x: torch.Tensor, gate: torch.Tensor, product: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = mul
    ) -> torch.Tensor:
        """Multiply every channel of group g by the gate ``gate[:, g]``; (B, C, H, W), (B, G, H, W) -> (B, C, H, W).

        ``product`` multiplies the grouped input (B, G, C/G, H, W) by the gate (B, G, 1, H, W): a plain product, or
        `gated` (the identity mix blended on the gate).
        """
        b, c, h, w = x.shape
        return product(x.reshape(b, self.groups, c // self.groups, h, w), gate.unsqueeze(2)).reshape(b, c, h, w)


def _largest_divisor(c: int, limit: int) -> int:
    """The largest divisor of ``c`` not above ``limit``."""
    return max(d for d in range(1, min(c, limit) + 1) if c % d == 0)
