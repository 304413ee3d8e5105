"""CloFormer's attention (Fan et al., arXiv 2303.17803): local context-aware heads plus pooled global heads."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from yolo_attn.modules.arg_checks import BlockArgumentError, check_bool, check_channels, check_positive_int
from yolo_attn.modules.identity_start import AttentionBlock
from yolo_attn.registry import register_block


class AttnMap(nn.Module):
    """CloFormer's ``AttnMap``: 1x1 conv, Swish (``MemoryEfficientSwish``, i.e. SiLU), 1x1 conv, each with bias.

    Attributes:
        act_block (nn.Sequential): The three layers (state-dict keys ``act_block.0``, ``act_block.2``).
    """

    def __init__(self, dim: int) -> None:
        """Initialize the map over ``dim`` channels."""
        super().__init__()
        self.act_block = nn.Sequential(nn.Conv2d(dim, dim, 1, 1, 0), nn.SiLU(), nn.Conv2d(dim, dim, 1, 1, 0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the context-aware weights of ``x``."""
        return self.act_block(x)


def _int_list(name: str, value: Any) -> list[int]:
    """Check a YAML list of integers."""
    if (
        isinstance(value, (str, bytes))
        or not isinstance(value, Sequence)
        or not value
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        raise BlockArgumentError(
            f"EfficientAttention: {name} must be a non-empty list of integers, got {value!r} ({type(value).__name__})"
        )
    return list(value)


def _check_rate(name: str, value: Any) -> float:
    """Check a dropout rate in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise BlockArgumentError(f"EfficientAttention: {name} must be a number in [0, 1), got {value!r}")
    return float(value)


@register_block(aliases=["CloAttention"])
class EfficientAttention(AttentionBlock):
    """CloFormer attention: context-aware local heads (convolution-weighted, tanh) and global heads over pooled keys.

    Paper: Fan, Huang, He, "Rethinking Local Perception in Lightweight Vision Transformer" (CloFormer), arXiv
    2303.17803. Reference code: qhfan/CloFormer, ``classification/models/blocks.py`` class ``EfficientAttention``
    (with ``AttnMap``), commit 4219213.

    The ``num_heads`` heads of ``d = C / num_heads`` channels are split into groups by ``group_split``: group i <
    len(kernel_sizes) (``group_split[i]`` heads, width ``m = group_split[i] * d``) is a high-frequency group, the last
    group (``g = group_split[-1]`` heads) the low-frequency one::

        high, per kernel k_i:  q, k, v = dwconv_k(qkv_i(x))       1x1 conv C -> 3m, then a k x k depthwise conv
                               y_i     = tanh(AttnMap(q * k) / sqrt(d)) * v
        low:                   q       = global_q(x)             (B, g, H*W, d)
                               k, v    = global_kv(avgpool_w(x)) (B, g, H*W / w^2, d), w = window_size
                               y_g     = softmax(q k^T / sqrt(d)) v
        out = proj(cat(y_1, ..., y_g))                            1x1 conv C -> C

    Shapes: (B, C, H, W) -> (B, C, H, W), any H, W >= 1. Parameters with the defaults at C=256: 306 176.

    YAML: ``[-1, 1, EfficientAttention, [num_heads, group_split, kernel_sizes, window_size, attn_drop, proj_drop,
    qkv_bias]]``, all optional; defaults ``[8, [4, 4], [5], 4, 0.0, 0.0, True]`` (the forks' ``CloAttention``
    values; the reference module has no defaults for the first three and window 7). Input channels are inferred and
    ``num_heads`` must divide them; ``group_split`` (heads per group) sums to ``num_heads`` and has one more entry than
    ``kernel_sizes`` (odd depthwise kernel sizes, one per high-frequency group); ``window_size`` is the pooling window
    of the low-frequency keys and values. ``CloAttention`` is an alias.

    State dict: the reference's keys and shapes (``convs``, ``act_blocks``, ``qkvs``, ``global_q``, ``global_kv``,
    ``proj``), so the reference module's state dict loads strictly, and ours into it.

    Departures from the reference:
        - Any H x W: the reference's reshape needs H and W divisible by ``window_size``. Here the map is zero-padded to
          multiples of the window for the pooling only, and each pooled key/value is the mean over the window's real
          positions (the padding does not count); queries and the local heads see the map as it is, so nothing is
          cropped. At multiples of the window the numbers are the reference's.
        - Arguments the reference would fail on later are refused at build time (`BlockArgumentError`): heads not
          dividing C, group sizes that do not sum to ``num_heads`` or do not match ``kernel_sizes``, an empty local
          group (its index would shift the reference's module lists), even kernel sizes.
        - Under autocast the local groups run in float32 (their weights are ``tanh`` of a map of ``q * k``, so a
          half-precision ``q`` or ``k`` moved the output by 30% of its scale with random weights) and the global
          softmax in float32. The pooling is a padded average pool divided by a pooled mask (exportable, any size).

    Identity start: the identity mix of `AttentionBlock` (the module replaces its input; CloFormer adds it to a
    residual stream outside the module).

    Attributes:
        num_heads (int): Heads.
        dim_head (int): Channels per head d.
        scalor (float): ``d ** -0.5``.
        group_split (list[int]): Heads per group, the last the low-frequency one.
        kernel_sizes (list[int]): Depthwise kernel size of each high-frequency group.
        window_size (int): Pooling window of the low-frequency keys and values.
        convs, act_blocks, qkvs (nn.ModuleList): The high-frequency groups' layers.
        global_q, global_kv (nn.Conv2d): The low-frequency group's projections (when it has heads).
        proj (nn.Conv2d): 1x1 output projection C -> C.

    Examples:
        >>> block = EfficientAttention(64)
        >>> block(torch.randn(2, 64, 15, 20)).shape
        torch.Size([2, 64, 15, 20])
    """

    def __init__(
        self,
        c1: int,
        num_heads: int = 8,
        group_split: Sequence[int] = (4, 4),
        kernel_sizes: Sequence[int] = (5,),
        window_size: int = 4,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        qkv_bias: bool = True,
    ) -> None:
        """Initialize EfficientAttention.

        Args:
            c1 (int): Input (and output) channels C.
            num_heads (int): Heads; must divide C.
            group_split (Sequence[int]): Heads of each high-frequency group, then of the low-frequency group.
            kernel_sizes (Sequence[int]): Odd depthwise kernel size of each high-frequency group.
            window_size (int): Pooling window of the low-frequency keys and values.
            attn_drop (float): Dropout on the attention weights.
            proj_drop (float): Dropout after ``proj``.
            qkv_bias (bool): Bias in the projections.
        """
        super().__init__()
        name = "EfficientAttention"
        check_channels(name, c1)
        check_positive_int(name, "num_heads", num_heads, "number of heads")
        group_split = _int_list("group_split", group_split)
        kernel_sizes = _int_list("kernel_sizes", kernel_sizes)
        check_positive_int(name, "window_size", window_size, "pooling window of the global keys and values")
        check_bool(name, "qkv_bias", qkv_bias)
        if c1 % num_heads:
            raise BlockArgumentError(
                f"{name}: num_heads={num_heads} must divide the input channels, but {c1} % {num_heads} = "
                f"{c1 % num_heads}. Input channels are inferred, so pass a head count, not a channel count"
            )
        if sum(group_split) != num_heads or any(g < 0 for g in group_split):
            raise BlockArgumentError(
                f"{name}: group_split={group_split} must be head counts >= 0 that sum to num_heads={num_heads}"
            )
        if len(kernel_sizes) + 1 != len(group_split):
            raise BlockArgumentError(
                f"{name}: group_split={group_split} needs one entry per kernel size in kernel_sizes={kernel_sizes} "
                "plus one for the global heads"
            )
        if any(g == 0 for g in group_split[:-1]):
            raise BlockArgumentError(
                f"{name}: group_split={group_split} has a local group without heads; the reference's forward would "
                "pair the wrong layers (drop the kernel size from kernel_sizes instead)"
            )
        if any(k < 1 or k % 2 == 0 for k in kernel_sizes):
            raise BlockArgumentError(
                f"{name}: kernel_sizes={kernel_sizes} must be odd positive sizes ('same' padding keeps H x W)"
            )
        self.dim = c1
        self.num_heads = num_heads
        self.dim_head = c1 // num_heads
        self.scalor = self.dim_head**-0.5
        self.kernel_sizes = kernel_sizes
        self.window_size = window_size
        self.group_split = group_split
        convs, act_blocks, qkvs = [], [], []
        for kernel_size, group_head in zip(kernel_sizes, group_split[:-1], strict=True):
            width = 3 * self.dim_head * group_head
            convs.append(nn.Conv2d(width, width, kernel_size, 1, kernel_size // 2, groups=width))
            act_blocks.append(AttnMap(self.dim_head * group_head))
            qkvs.append(nn.Conv2d(c1, width, 1, 1, 0, bias=qkv_bias))
        if group_split[-1] != 0:
            self.global_q = nn.Conv2d(c1, group_split[-1] * self.dim_head, 1, 1, 0, bias=qkv_bias)
            self.global_kv = nn.Conv2d(c1, group_split[-1] * self.dim_head * 2, 1, 1, 0, bias=qkv_bias)
        self.convs = nn.ModuleList(convs)
        self.act_blocks = nn.ModuleList(act_blocks)
        self.qkvs = nn.ModuleList(qkvs)
        self.proj = nn.Conv2d(c1, c1, 1, 1, 0, bias=qkv_bias)
        self.attn_drop = nn.Dropout(_check_rate("attn_drop", attn_drop))
        self.proj_drop = nn.Dropout(_check_rate("proj_drop", proj_drop))

    def high_fre_attntion(
        self, x: torch.Tensor, to_qkv: nn.Module, mixer: nn.Module, attn_block: nn.Module
    ) -> torch.Tensor:
        """Context-aware local attention of one high-frequency group (the reference's method name).

        Args:
            x (torch.Tensor): Input of shape (B, C, H, W).
            to_qkv (nn.Module): 1x1 conv C -> 3m.
            mixer (nn.Module): Depthwise conv on the 3m channels.
            attn_block (nn.Module): The group's `AttnMap`.

        Returns:
            (torch.Tensor): Shape (B, m, H, W).
        """
        with torch.autocast(x.device.type, enabled=False):  # in the weights' precision: see "Departures"
            q, k, v = mixer(to_qkv(x.to(mixer.weight.dtype))).chunk(3, dim=1)
            attn = self.attn_drop(torch.tanh(attn_block(q * k) * self.scalor))
            return attn * v

    def low_fre_attention(self, x: torch.Tensor) -> torch.Tensor:
        """Global attention of the low-frequency heads to window-averaged keys and values.

        Args:
            x (torch.Tensor): Input of shape (B, C, H, W).

        Returns:
            (torch.Tensor): Shape (B, g * d, H, W).
        """
        b, _, h, w = x.shape
        ws, d = self.window_size, self.dim_head
        q = self.global_q(x).reshape(b, -1, d, h * w).transpose(-1, -2)  # (b, g, h*w, d)
        pad_b, pad_r = (ws - h % ws) % ws, (ws - w % ws) % ws
        pooled = F.avg_pool2d(F.pad(x, (0, pad_r, 0, pad_b)), ws, ws)
        share = F.avg_pool2d(F.pad(torch.ones_like(x[:1, :1]), (0, pad_r, 0, pad_b)), ws, ws)  # real share of each
        kv = self.global_kv(pooled / share).flatten(2)  # (b, 2 g d, n)
        k, v = kv.reshape(b, 2, -1, d, kv.shape[-1]).transpose(-1, -2).unbind(1)  # (b, g, n, d) each
        attn = (self.scalor * q @ k.transpose(-1, -2)).float().softmax(dim=-1)
        res = self.attn_drop(attn).to(v.dtype) @ v  # (b, g, h*w, d)
        return res.transpose(2, 3).reshape(b, -1, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the attention.

        Args:
            x (torch.Tensor): Input of shape (B, C, H, W).

        Returns:
            (torch.Tensor): Output of shape (B, C, H, W).
        """
        res = [
            self.high_fre_attntion(x, to_qkv, mixer, attn_block)
            for to_qkv, mixer, attn_block in zip(self.qkvs, self.convs, self.act_blocks, strict=True)
        ]
        if self.group_split[-1] != 0:
            res.append(self.low_fre_attention(x))
        return self.blend(x, self.proj_drop(self.proj(torch.cat(res, dim=1))))
