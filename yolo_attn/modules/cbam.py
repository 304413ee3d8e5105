"""CBAM: Convolutional Block Attention Module (Woo et al., ECCV 2018), channel gate then spatial gate.

Written after the paper and the authors' reference code (Jongchan/attention-module, ``MODELS/cbam.py``), which differs
from Ultralytics' own ``CBAM``: the channel gate pools by average AND max through a shared C -> C/r -> C MLP, and the
spatial gate compresses channels to [max, mean] and normalises its convolution with BatchNorm.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from yolo_attn.modules import gating
from yolo_attn.modules.arg_checks import (
    BlockArgumentError,
    check_bool,
    check_channels,
    check_choice,
    check_odd_kernel,
    check_reduction,
)
from yolo_attn.modules.fusion import fold_batchnorm, pointwise
from yolo_attn.modules.identity_start import AttentionBlock
from yolo_attn.registry import register_block

SPATIAL_POOLS = ("max_mean", "mean")


@register_block
class ChannelAttention(AttentionBlock):
    """CBAM channel gate: a shared MLP over the average- and max-pooled channel descriptors.

    ``out = x * sigmoid(MLP(avgpool(x)) + MLP(maxpool(x)))`` with ``MLP = Linear(C, C/r) -> ReLU -> Linear(C/r, C)``
    (both with bias, as in the reference code). The MLP's layers are stored as 1x1 convolutions and applied as matrix
    products (`pointwise`); global pooling is a plain mean / amax over H and W, which exports to ONNX as ReduceMean /
    ReduceMax at any input size. The two descriptors are stacked into one ``(B, 2, C)`` tensor, so the shared MLP runs
    once on both, and the two outputs are summed: the same numbers as two MLP passes, with three fewer operations.

    Inference: `fuse` merges the MLP's last layer with that sum, ``W2 a + b2 + W2 m + b2 = [W2 W2] [a; m] + 2 b2``:
    one product instead of a product and a sum.

    YAML: ``[-1, 1, ChannelAttention, [r]]``, all args optional; input channels are inferred.

    Initialisation: the MLP's last layer starts at zero, so a fresh gate is exactly 0.5 for every channel.

    Attributes:
        mlp (nn.Sequential): Shared MLP C -> C/r -> C.
        summed_weight (torch.Tensor): After `fuse` only: buffer ``[W2 W2]`` of shape (C, 2C/r), with ``summed_bias``.

    Examples:
        >>> ca = ChannelAttention(64, r=16)
        >>> ca(torch.randn(2, 64, 20, 20)).shape
        torch.Size([2, 64, 20, 20])
    """

    def __init__(self, c1: int, r: int = 16) -> None:
        """Initialize the channel gate.

        Args:
            c1 (int): Input (and output) channels C.
            r (int): Reduction ratio of the shared MLP; the hidden width is ``C // r``. Must satisfy ``1 <= r <= C``.
        """
        super().__init__()
        hidden = check_reduction("ChannelAttention", check_channels("ChannelAttention", c1), r)
        self.mlp = nn.Sequential(nn.Conv2d(c1, hidden, 1), nn.ReLU(), nn.Conv2d(hidden, c1, 1))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """Compute the channel gate.

        Args:
            x (torch.Tensor): Input of shape (B, C, H, W).

        Returns:
            (torch.Tensor): Gate in (0, 1) of shape (B, C, 1, 1).
        """
        first, act, last = self.mlp
        descriptors = torch.stack((x.mean((2, 3)), x.amax((2, 3))), 1)  # (B, 2, C)
        hidden = act(pointwise(first.weight, first.bias, descriptors))  # (B, 2, C/r)
        merged = getattr(self, "summed_weight", None)  # getattr: blocks unpickled from older checkpoints
        if merged is None:
            logits = pointwise(last.weight, last.bias, hidden).sum(1)
        else:
            logits = pointwise(merged, self.summed_bias, hidden.flatten(1))
        return logits.sigmoid()[:, :, None, None]

    def fuse(self) -> ChannelAttention:
        """Merge the MLP's last layer with the sum over the two descriptors, for inference. Idempotent.

        The merged weight ``[W2 W2]`` and bias ``2 b2`` are buffers derived from the parameters, outside the state dict
        and the parameter count; like a folded BatchNorm, they do not follow later changes to the parameters.

        Returns:
            (ChannelAttention): This gate, computing the same numbers in one operation fewer.
        """
        if getattr(self, "summed_weight", None) is None:
            last = self.mlp[-1]
            with torch.no_grad():
                weight = last.weight.flatten(1)
                self.register_buffer("summed_weight", torch.cat((weight, weight), 1), persistent=False)
                self.register_buffer("summed_bias", 2 * last.bias, persistent=False)
        return self

    def forward_plain(self, x: torch.Tensor) -> torch.Tensor:
        """Plain formulation (benchmarks): the shared MLP run twice, once per descriptor; (B, C, H, W) -> same."""
        return x * (self.mlp(x.mean((2, 3), keepdim=True)) + self.mlp(x.amax((2, 3), keepdim=True))).sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reweight the channels of ``x``.

        Args:
            x (torch.Tensor): Input of shape (B, C, H, W).

        Returns:
            (torch.Tensor): Output of shape (B, C, H, W).
        """
        return self.gated(x, self.gate(x))


@register_block
class SpatialAttention(AttentionBlock):
    """CBAM spatial gate: a k x k convolution over channel-pooled maps, one weight per position.

    ``out = x * sigmoid(BN?(conv_k([max_c(x), mean_c(x)])))``. The channel pooling order [max, mean] follows the
    reference code. Two variants for seed experiments: ``pool="mean"`` compresses by the channel mean only, and ``k``
    may be rectangular, e.g. ``[3, 1]``. With ``bn=True`` the convolution has no bias and is followed by BatchNorm,
    as in the reference code's spatial gate; with ``bn=False`` (the paper's formula) the convolution has a bias.

    YAML: ``[-1, 1, SpatialAttention, [k, pool, bn]]``, all args optional, e.g. ``[[3, 1], mean]``.

    Initialisation: the last affine step before the sigmoid starts at zero (the BatchNorm weight and bias, as the
    reference ``ResidualNet`` does for its spatial gates; else the conv weight and bias), so a fresh gate is exactly
    0.5 at every position.

    Inference: `fuse` folds the BatchNorm into the convolution (Ultralytics' ``model.fuse()`` calls it).

    Attributes:
        kernel_size (tuple[int, int]): ``(kh, kw)`` of the convolution.
        pool (str): ``"max_mean"`` or ``"mean"``.
        conv (nn.Conv2d): k x k convolution from 2 (or 1) maps to 1, 'same' padding.
        bn (nn.Module): ``nn.BatchNorm2d(1)``, or ``nn.Identity`` without BatchNorm or after `fuse`.

    Examples:
        >>> sa = SpatialAttention(64, k=(3, 1), pool="mean")
        >>> sa(torch.randn(2, 64, 20, 20)).shape
        torch.Size([2, 64, 20, 20])
    """

    def __init__(
        self, c1: int, k: int | tuple[int, int] = 7, pool: Literal["max_mean", "mean"] = "max_mean", bn: bool = False
    ) -> None:
        """Initialize the spatial gate.

        Args:
            c1 (int): Input channels. Not used by the computation (the gate pools over channels); taken so every
                channel-preserving block is built the same way, as ``Block(c1, *yaml_args)``.
            k (int | tuple[int, int]): Odd kernel size, or an ``(kh, kw)`` pair of odd sizes.
            pool (str): ``"max_mean"`` for the [max, mean] channel pooling of CBAM, or ``"mean"`` for the mean only.
            bn (bool): Whether to normalise the convolution output with BatchNorm before the sigmoid.
        """
        super().__init__()
        check_channels("SpatialAttention", c1)
        self.kernel_size = kh, kw = check_odd_kernel("SpatialAttention", k)
        self.pool = check_choice("SpatialAttention", "pool", pool, SPATIAL_POOLS)
        check_bool("SpatialAttention", "bn", bn)
        self.conv = nn.Conv2d(2 if pool == "max_mean" else 1, 1, (kh, kw), padding=(kh // 2, kw // 2), bias=not bn)
        # eps and momentum of the reference code; Ultralytics' initialize_weights later sets its own for a whole model
        self.bn = nn.BatchNorm2d(1, eps=1e-5, momentum=0.01) if bn else nn.Identity()
        last_affine = self.bn if bn else self.conv
        nn.init.zeros_(last_affine.weight)
        nn.init.zeros_(last_affine.bias)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """Compute the spatial gate.

        Args:
            x (torch.Tensor): Input of shape (B, C, H, W).

        Returns:
            (torch.Tensor): Gate in (0, 1) of shape (B, 1, H, W).
        """
        return self.gate_of_pooled(self.pooled(x))

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """Pool ``x`` (B, C, H, W) over channels: [max, mean] (B, 2, H, W), or the mean (B, 1, H, W)."""
        mean = x.mean(1, keepdim=True)
        return torch.cat((x.amax(1, keepdim=True), mean), 1) if self.pool == "max_mean" else mean

    def gate_of_pooled(self, pooled: torch.Tensor) -> torch.Tensor:
        """Return the gate (B, 1, H, W) of the channel-pooled maps ``pooled`` (see `pooled`)."""
        return self.bn(self.conv(pooled)).sigmoid()

    def fuse(self) -> SpatialAttention:
        """Fold the BatchNorm (running statistics), if any, into the convolution, for inference. Idempotent.

        Returns:
            (SpatialAttention): This gate, now without BatchNorm.
        """
        if isinstance(self.bn, nn.BatchNorm2d):
            self.conv, self.bn = fold_batchnorm(self.conv, self.bn), nn.Identity()
        return self

    def forward_plain(self, x: torch.Tensor) -> torch.Tensor:
        """Plain formulation (benchmarks): channel [max, mean] (or mean), conv, BatchNorm, sigmoid, scale."""
        mean = x.mean(1, keepdim=True)
        pooled = torch.cat((x.amax(1, keepdim=True), mean), 1) if self.pool == "max_mean" else mean
        return x * self.bn(self.conv(pooled)).sigmoid()

    def attention_map(self, x: torch.Tensor, output: torch.Tensor) -> tuple[torch.Tensor, str]:
        """Return the spatial gate (B, H, W) for input ``x`` (B, C, H, W), and what it is."""
        return self.gate(x)[:, 0], "spatial gate"

    def check_feature_map(self, h: int, w: int) -> None:
        """Reject a kernel larger than the feature map (``h`` x ``w`` at 640 px) it will run on."""
        kh, kw = self.conv.kernel_size
        if kh > h or kw > w:
            raise BlockArgumentError(f"kernel {kh}x{kw} is larger than this layer's {h}x{w} feature map at 640 px")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reweight the positions of ``x``.

        Args:
            x (torch.Tensor): Input of shape (B, C, H, W).

        Returns:
            (torch.Tensor): Output of shape (B, C, H, W).
        """
        return self.gated(x, self.gate(x))


@register_block(bench_levels=("P3", "P4", "P5"))
class CBAM(AttentionBlock):
    """Convolutional Block Attention Module: channel gate, then spatial gate on the channel-refined features.

    Paper: Woo, Park, Lee, Kweon, "CBAM: Convolutional Block Attention Module", ECCV 2018. The spatial gate is the
    reference code's: [max, mean] channel pooling, k x k convolution without bias, BatchNorm, sigmoid.

    YAML: ``[-1, 1, CBAM, [r, k]]``, all args optional (defaults 16 and 7); input channels are inferred.
    ``[-1, 1, CBAM, [8, 3]]`` uses r=8 and a 3x3 spatial kernel.

    Initialisation: both gates start at exactly 0.5 (see `ChannelAttention` and `SpatialAttention`), so a fresh CBAM
    scales its input uniformly by 0.25.

    Attributes:
        channel_attention (ChannelAttention): Channel gate.
        spatial_attention (SpatialAttention): Spatial gate with BatchNorm.

    Examples:
        >>> cbam = CBAM(64)
        >>> cbam(torch.randn(2, 64, 20, 20)).shape
        torch.Size([2, 64, 20, 20])
    """

    def __init__(self, c1: int, r: int = 16, k: int | tuple[int, int] = 7) -> None:
        """Initialize CBAM.

        Args:
            c1 (int): Input (and output) channels C.
            r (int): Reduction ratio of the channel gate's MLP, ``1 <= r <= C``.
            k (int | tuple[int, int]): Odd kernel size of the spatial gate, or an ``(kh, kw)`` pair.
        """
        super().__init__()
        check_reduction("CBAM", check_channels("CBAM", c1), r)  # checked here too, so an error names CBAM
        check_odd_kernel("CBAM", k)
        self.channel_attention = ChannelAttention(c1, r)
        self.spatial_attention = SpatialAttention(c1, k, pool="max_mean", bn=True)

    def forward_plain(self, x: torch.Tensor) -> torch.Tensor:
        """Plain formulation (benchmarks): plain channel gate, then plain spatial gate; (B, C, H, W) -> same."""
        ca, sa = self.channel_attention, self.spatial_attention
        y = ca.blend(x, ca.forward_plain(x))
        return sa.blend(y, sa.forward_plain(y))

    def attention_map(self, x: torch.Tensor, output: torch.Tensor) -> tuple[torch.Tensor, str]:
        """Return the spatial gate (B, H, W), computed on the channel-refined features it gates, and what it is."""
        return self.spatial_attention.gate(self.channel_attention(x))[:, 0], "spatial gate"

    def check_feature_map(self, h: int, w: int) -> None:
        """Reject a spatial kernel larger than the feature map (``h`` x ``w`` at 640 px)."""
        self.spatial_attention.check_feature_map(h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the channel gate, then the spatial gate.

        Args:
            x (torch.Tensor): Input of shape (B, C, H, W).

        Returns:
            (torch.Tensor): Output of shape (B, C, H, W).
        """
        ca, sa = self.channel_attention, self.spatial_attention
        if ca.identity_mix is not None or sa.identity_mix is not None:
            return self.blend(x, sa(ca(x)))  # gates with mixes of their own (started as the identity one by one)
        channel = ca.gate(x)
        mix = self.identity_mix
        if gating.lean_applies([x, channel, mix]):
            # training: the spatial gate pools the channel-gated map x * channel without keeping it (recomputed in
            # backward), and the output keeps x and the two gates only
            spatial = sa.gate_of_pooled(gating.product_into(sa.pooled, x, channel))
            return self.gated(x, channel, spatial)
        refined = x * channel  # inference: computed for the spatial gate anyway, so the mix is one lerp after it
        return self.blend(x, refined * sa.gate_of_pooled(sa.pooled(refined)))

    def fuse(self) -> CBAM:
        """Prepare both gates for inference (see `ChannelAttention.fuse` and `SpatialAttention.fuse`). Idempotent.

        Returns:
            (CBAM): This block.
        """
        self.channel_attention.fuse()
        self.spatial_attention.fuse()
        return self
