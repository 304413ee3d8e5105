"""SCSA: Spatial and Channel Synergistic Attention (Si et al., arXiv 2407.05128)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from yolo_attn.modules.arg_checks import BlockArgumentError, check_channels, check_positive_int
from yolo_attn.modules.identity_start import AttentionBlock
from yolo_attn.registry import register_block


def window_pool_matrix(index: torch.Tensor, size: int | torch.Tensor, window: int) -> torch.Tensor:
    """Return the (n, size) matrix ``P`` with ``P @ v`` = ``avg_pool1d(v, k, stride=k)``, ``k = min(window, size)``.

    ``n = size // k`` windows of ``k`` cells each, the last ``size % k`` cells dropped, as ``nn.AvgPool2d`` with
    kernel and stride ``window`` does; where the axis is shorter than ``window`` the one window is the whole axis
    (``nn.AvgPool2d`` raises there). ``size`` is an int in eager mode and a traced 0-d tensor during an ONNX trace,
    so one exported graph serves every input size.

    Args:
        index (torch.Tensor): ``arange(size)`` as a float32 row, shape (1, size).
        size (int | torch.Tensor): Length of the pooled axis.
        window (int): Window size.

    Returns:
        (torch.Tensor): The float32 pooling matrix of shape (n, size), rows summing to 1.
    """
    k = torch.clamp(size, max=window) if isinstance(size, torch.Tensor) else min(size, window)
    rows = torch.arange(size // k, dtype=torch.float32, device=index.device)[:, None]
    return ((index >= rows * k) & (index < (rows + 1) * k)).float() / k


def _check_kernel_sizes(sizes: Any) -> list[int]:
    """Check ``group_kernel_sizes``: four odd positive integers (odd: the 1-D convolutions keep the length)."""
    ok = isinstance(sizes, Sequence) and not isinstance(sizes, str) and len(sizes) == 4
    if not ok or not all(isinstance(k, int) and not isinstance(k, bool) and k >= 1 and k % 2 for k in sizes):
        raise BlockArgumentError(
            "SCSA: group_kernel_sizes must be a list of 4 odd positive integers (the 1-D depthwise kernels of the four "
            f"channel groups; padding k // 2 keeps the length only for odd k), got {sizes!r} ({type(sizes).__name__})"
        )
    return list(sizes)


@register_block
class SCSA(AttentionBlock):
    """Spatial and Channel Synergistic Attention: multi-scale 1-D spatial gates, then a self-attention channel gate.

    Paper: Si, Xu, Zhu, Wang, Jiang, Yang, Li, "SCSA: Exploring the Synergistic Effects Between Spatial and Channel
    Attention", arXiv 2407.05128 (Neurocomputing 2025). Reference code: HZAI-ZJNU/SCSA,
    ``mmpretrain/models/attentions/SCSA.py``, class ``SCSA`` (commit 4680fe1), which this block follows layer for layer
    with the reference's defaults for every argument it does not take.

    Shared multi-semantic spatial attention (SMSA), the C channels in 4 groups of C/4, kernels k1..k4::

        x_h   = mean_W(x)  (B, C, H),  x_w = mean_H(x)  (B, C, W)
        a_h   = sigmoid(norm_h(cat(local_dwc(x_h[g1]), global_dwc_s(x_h[g2]), global_dwc_m(x_h[g3]),
                                   global_dwc_l(x_h[g4]))))                                    (B, C, H, 1)
        a_w   = the same convolutions on x_w, with norm_w                                      (B, C, 1, W)
        y     = x * a_h * a_w

    Progressive channel-wise self-attention (PCSA), on ``y`` pooled in ``window_size`` windows::

        p        = norm(avg_pool(y, window_size))                   (B, C, h, w), GroupNorm with one group
        q, k, v  = depthwise 1x1 convs of p, as (B, heads, C/heads, h*w)
        a_c      = sigmoid(mean_hw(softmax(q k^T / sqrt(C/heads)) v))      (B, C, 1, 1)
        out      = y * a_c = x * a_h * a_w * a_c

    The 1-D convolutions are depthwise with padding k // 2 and bias; ``q``, ``k``, ``v`` have no bias
    (``qkv_bias=False``). Shapes: (B, C, H, W) -> (B, C, H, W), any H x W from 1 x 1. Parameters (defaults):
    ``C/4 * (3+5+7+9) + C + 4 C + 3 C`` = 14 C, 3,584 at C = 256.

    YAML: ``[-1, 1, SCSA, [head_num, window_size, group_kernel_sizes]]``, all optional; input channels are inferred.
        - ``head_num`` (1): attention heads of PCSA; must divide C. 1 as every config the authors ship (the forks'
          copies use 8).
        - ``window_size`` (7): pooling window of PCSA (kernel and stride), or -1 for one global average.
        - ``group_kernel_sizes`` ([3, 5, 7, 9]): the 4 odd 1-D kernel sizes of SMSA's channel groups.
        C must be a multiple of 4 (4 groups, GroupNorm with 4 groups).

    State dict: the reference's keys and shapes (``local_dwc``, ``global_dwc_s``, ``global_dwc_m``, ``global_dwc_l``,
    ``norm_h``, ``norm_w``, ``norm``, ``q``, ``k``, ``v``), so the authors' ``SCSA(C, head_num)`` state dict loads
    strictly both ways.

    Departures from the reference:
        - Where H or W is smaller than ``window_size`` the pooling window along that axis shrinks to the whole axis
          (the authors' ``nn.AvgPool2d`` raises under 7 x 7); at every other size it is the authors' pooling
          (windows of ``window_size``, the remainder rows and columns dropped). The pooling is two run-time pooling
          matrices, so a traced ONNX graph follows the input size.
        - The channel attention (``q k^T``, softmax, ``@ v``) runs in float32 (AMP-safe); its gate is cast back.
        - Fixed at the reference's defaults: ``qkv_bias=False``, ``down_sample_mode='avg_pool'``,
          ``attn_drop_ratio=0``, ``gate_layer='sigmoid'`` (``fuse_bn``, ``norm_cfg``, ``act_cfg`` are unused there).
        - C must be a multiple of 4, checked at build time (the reference asserts only C >= 4 and fails later).
        - The three products are ``x * a_h * a_w * a_c`` in one gate (same up to float rounding).

    Identity start: the identity mix of `AttentionBlock`, blended on the product of the gates.

    Attributes:
        head_num (int): Attention heads.
        head_dim (int): Channels per head, C / head_num.
        scaler (float): ``head_dim ** -0.5``.
        window_size (int): Pooling window, or -1 for a global average.
        group_chans (int): Channels per SMSA group, C / 4.

    Examples:
        >>> scsa = SCSA(64)
        >>> scsa(torch.randn(2, 64, 20, 15)).shape
        torch.Size([2, 64, 20, 15])
    """

    def __init__(
        self, c1: int, head_num: int = 1, window_size: int = 7, group_kernel_sizes: Sequence[int] = (3, 5, 7, 9)
    ) -> None:
        """Initialize SCSA.

        Args:
            c1 (int): Input (and output) channels C, a multiple of 4.
            head_num (int): Attention heads of the channel self-attention; must divide C.
            window_size (int): Pooling window before the channel self-attention, or -1 for a global average.
            group_kernel_sizes (Sequence[int]): Four odd kernel sizes of the 1-D depthwise convolutions.
        """
        super().__init__()
        check_channels("SCSA", c1)
        if c1 % 4:
            raise BlockArgumentError(
                f"SCSA: the input channels must be a multiple of 4 (four channel groups, GroupNorm with 4 groups), "
                f"got {c1}"
            )
        check_positive_int("SCSA", "head_num", head_num, "number of attention heads")
        if c1 % head_num:
            raise BlockArgumentError(
                f"SCSA: head_num={head_num} heads must divide the input channels, but {c1} % {head_num} = "
                f"{c1 % head_num}; input channels are inferred, so pass a head count such as 1, not a channel count"
            )
        if not (isinstance(window_size, int) and not isinstance(window_size, bool)) or not (
            window_size >= 1 or window_size == -1
        ):
            raise BlockArgumentError(
                f"SCSA: window_size must be a positive integer or -1 (one global average), got {window_size!r} "
                f"({type(window_size).__name__})"
            )
        ks = _check_kernel_sizes(group_kernel_sizes)
        self.dim, self.head_num, self.head_dim = c1, head_num, c1 // head_num
        self.scaler = self.head_dim**-0.5
        self.group_kernel_sizes, self.window_size = ks, window_size
        self.group_chans = g = c1 // 4
        self.local_dwc = nn.Conv1d(g, g, kernel_size=ks[0], padding=ks[0] // 2, groups=g)
        self.global_dwc_s = nn.Conv1d(g, g, kernel_size=ks[1], padding=ks[1] // 2, groups=g)
        self.global_dwc_m = nn.Conv1d(g, g, kernel_size=ks[2], padding=ks[2] // 2, groups=g)
        self.global_dwc_l = nn.Conv1d(g, g, kernel_size=ks[3], padding=ks[3] // 2, groups=g)
        self.norm_h = nn.GroupNorm(4, c1)
        self.norm_w = nn.GroupNorm(4, c1)
        self.norm = nn.GroupNorm(1, c1)
        self.q = nn.Conv2d(c1, c1, kernel_size=1, bias=False, groups=c1)
        self.k = nn.Conv2d(c1, c1, kernel_size=1, bias=False, groups=c1)
        self.v = nn.Conv2d(c1, c1, kernel_size=1, bias=False, groups=c1)

    def spatial_gates(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The SMSA gates along H (B, C, H, 1) and along W (B, C, 1, W)."""
        convs = (self.local_dwc, self.global_dwc_s, self.global_dwc_m, self.global_dwc_l)

        def gate(pooled: torch.Tensor, norm: nn.GroupNorm) -> torch.Tensor:
            parts = torch.split(pooled, self.group_chans, dim=1)
            return norm(torch.cat([conv(p) for conv, p in zip(convs, parts, strict=True)], dim=1)).sigmoid()

        return gate(x.mean(3), self.norm_h).unsqueeze(3), gate(x.mean(2), self.norm_w).unsqueeze(2)

    def pool(self, y: torch.Tensor) -> torch.Tensor:
        """Average ``y`` in ``window_size`` windows (shrunk to the axis where it is shorter), (B, C, h, w)."""
        if self.window_size == -1:
            return y.mean((2, 3), keepdim=True)
        h, w = y.shape[2], y.shape[3]
        # arange(H) and arange(W) derived from y, so a traced graph keeps H and W dynamic
        rows = torch.ones_like(y[0, 0, :, 0], dtype=torch.float32).cumsum(0)[None] - 1
        cols = torch.ones_like(y[0, 0, 0, :], dtype=torch.float32).cumsum(0)[None] - 1
        pool_h = window_pool_matrix(rows, h, self.window_size).to(y.dtype)  # (h', H)
        pool_w = window_pool_matrix(cols, w, self.window_size).to(y.dtype)  # (w', W)
        return pool_h @ y @ pool_w.T

    def channel_gate(self, y: torch.Tensor) -> torch.Tensor:
        """The PCSA gate (B, C, 1, 1) of the spatially gated input ``y``."""
        p = self.norm(self.pool(y))
        b = y.shape[0]
        q, k, v = (f(p).reshape(b, self.head_num, self.head_dim, -1) for f in (self.q, self.k, self.v))
        with torch.autocast(y.device.type, enabled=False):
            attn = (q.float() @ k.float().transpose(-2, -1) * self.scaler).softmax(-1)  # (B, heads, d, d)
            out = (attn @ v.float()).mean(-1)  # (B, heads, d)
        return out.to(y.dtype).reshape(b, self.dim, 1, 1).sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Gate ``x`` along H and W, then by channel.

        Args:
            x (torch.Tensor): Input of shape (B, C, H, W).

        Returns:
            (torch.Tensor): Output of shape (B, C, H, W).
        """
        a_h, a_w = self.spatial_gates(x)
        return self.gated(x, a_h, a_w, self.channel_gate(x * a_h * a_w))

    def attention_map(self, x: torch.Tensor, output: torch.Tensor) -> tuple[torch.Tensor, str]:
        """Return the spatial gate ``a_h * a_w`` averaged over channels (B, H, W), and what it is."""
        a_h, a_w = self.spatial_gates(x)
        return (a_h * a_w).mean(1), "SMSA spatial gate a_h * a_w (channel mean)"
