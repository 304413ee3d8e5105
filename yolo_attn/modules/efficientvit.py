"""EfficientViT's local window attention (Liu et al., CVPR 2023): cascaded group attention in windows."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from yolo_attn.modules.arg_checks import BlockArgumentError, check_channels, check_positive_int
from yolo_attn.modules.identity_start import AttentionBlock
from yolo_attn.registry import register_block


class Conv2d_BN(nn.Sequential):
    """EfficientViT's ``Conv2d_BN``: a convolution without bias (``c``) and a BatchNorm (``bn``).

    The BatchNorm's scale starts at ``bn_weight_init`` (0 for the attention's output projection), its shift at 0.
    """

    def __init__(
        self,
        a: int,
        b: int,
        ks: int = 1,
        stride: int = 1,
        pad: int = 0,
        dilation: int = 1,
        groups: int = 1,
        bn_weight_init: float = 1.0,
    ) -> None:
        """Initialize the convolution ``a -> b`` and its BatchNorm."""
        super().__init__()
        self.add_module("c", nn.Conv2d(a, b, ks, stride, pad, dilation, groups, bias=False))
        self.add_module("bn", nn.BatchNorm2d(b))
        nn.init.constant_(self.bn.weight, bn_weight_init)
        nn.init.constant_(self.bn.bias, 0)


def bias_index(h: Any, w: Any, r: int, device: torch.device) -> torch.Tensor:
    """Index into the bias table of an r x r window for every pair of positions of an h x w window (h, w <= r).

    The reference numbers the offsets ``(|dy|, |dx|)`` of an r x r window in order of first appearance, which is
    ``|dy| * r + |dx|``; its ``attention_bias_idxs`` buffer is this index for h = w = r.

    Args:
        h (Any): Window height (an int, or a traced size).
        w (Any): Window width.
        r (int): Side of the window the table was made for.
        device (torch.device): Where to build the index.

    Returns:
        (torch.Tensor): Long tensor of shape (h*w, h*w).
    """
    ys = torch.arange(h, device=device).view(-1, 1).expand(-1, w).reshape(-1)
    xs = torch.arange(w, device=device).view(1, -1).expand(h, -1).reshape(-1)
    return (ys[:, None] - ys[None, :]).abs() * r + (xs[:, None] - xs[None, :]).abs()


class CascadedGroupAttention(nn.Module):
    """EfficientViT's cascaded group attention over one window: each head sees its channel slice plus the last head.

    Attributes:
        num_heads (int): Heads.
        scale (float): ``key_dim ** -0.5``.
        key_dim (int): Query and key channels per head.
        d (int): Value channels per head.
        attn_ratio (float): ``d / key_dim``.
        resolution (int): Side r of the window the bias table is made for.
        qkvs (nn.ModuleList): Per head, `Conv2d_BN` C/num_heads -> 2 key_dim + d.
        dws (nn.ModuleList): Per head, depthwise `Conv2d_BN` on the queries (kernel ``kernels[i]``).
        proj (nn.Sequential): ReLU and `Conv2d_BN` d num_heads -> C (BatchNorm scale 0 at init).
        attention_biases (nn.Parameter): Bias per head and window offset, (num_heads, r*r).
        attention_bias_idxs (torch.Tensor): Buffer, the reference's offset index of the r x r window (kept for the
            state dict; the forward indexes the table for the window it gets).
    """

    def __init__(
        self, dim: int, key_dim: int, num_heads: int, attn_ratio: float, resolution: int, kernels: Sequence[int]
    ) -> None:
        """Initialize the attention of ``dim`` channels in windows of side ``resolution``."""
        super().__init__()
        self.num_heads = num_heads
        self.scale = key_dim**-0.5
        self.key_dim = key_dim
        self.d = int(attn_ratio * key_dim)
        self.attn_ratio = attn_ratio
        self.resolution = resolution
        self.qkvs = nn.ModuleList(Conv2d_BN(dim // num_heads, key_dim * 2 + self.d) for _ in range(num_heads))
        self.dws = nn.ModuleList(
            Conv2d_BN(key_dim, key_dim, kernels[i], 1, kernels[i] // 2, groups=key_dim) for i in range(num_heads)
        )
        self.proj = nn.Sequential(nn.ReLU(), Conv2d_BN(self.d * num_heads, dim, bn_weight_init=0))
        points = list(itertools.product(range(resolution), range(resolution)))
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, len(points)))
        self.register_buffer("attention_bias_idxs", bias_index(resolution, resolution, resolution, torch.device("cpu")))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Attend within each window.

        Args:
            x (torch.Tensor): Windows of shape (B', C, h, w), h, w <= ``resolution``.

        Returns:
            (torch.Tensor): Shape (B', C, h, w).
        """
        b, _, h, w = x.shape
        bias = self.attention_biases[:, bias_index(h, w, self.resolution, x.device)]  # indexed now: never stale
        feats_in = x.chunk(len(self.qkvs), dim=1)
        feats_out = []
        feat = feats_in[0]
        for i, qkv in enumerate(self.qkvs):
            if i > 0:  # the previous head's output joins this head's input
                feat = feat + feats_in[i]
            q, k, v = qkv(feat).split([self.key_dim, self.key_dim, self.d], dim=1)
            q = self.dws[i](q)
            q, k, v = q.flatten(2), k.flatten(2), v.flatten(2)  # (B', ., h*w)
            attn = ((q.transpose(-2, -1) @ k) * self.scale).float() + bias[i].float()
            attn = attn.softmax(dim=-1).to(v.dtype)
            feat = (v @ attn.transpose(-2, -1)).reshape(b, self.d, h, w)
            feats_out.append(feat)
        return self.proj(torch.cat(feats_out, 1))


@register_block
class LocalWindowAttention(AttentionBlock):
    """EfficientViT local window attention: cascaded group attention in non-overlapping windows, padded at the edges.

    Paper: Liu, Peng, Zheng, Yang, Hu, Yuan, "EfficientViT: Memory Efficient Vision Transformer with Cascaded Group
    Attention", CVPR 2023. Reference code: microsoft/Cream, ``EfficientViT/classification/model/efficientvit.py``
    classes ``LocalWindowAttention``, ``CascadedGroupAttention`` and ``Conv2d_BN``, commit de2d467.

    With r = min(``window_resolution``, ``resolution``), N heads, key width k and value width d::

        windows = x itself if H <= r and W <= r, else x zero-padded to multiples of r and cut into r x r tiles
        per window, head i:  f_i  = x_i + o_{i-1}  (x_i: the i-th C/N channel slice; o_0 = 0 is not added)
                             q, k, v = split(Conv_BN(f_i));  q = depthwise Conv_BN(q)
                             o_i  = v softmax(q^T k / sqrt(k) + bias_i)^T      bias_i[n, m] = table[i, |dy| r + |dx|]
        out = Conv_BN(ReLU(cat(o_1, ..., o_N))), windows put back, padding cropped

    Shapes: (B, C, H, W) -> (B, C, H, W), any H, W >= 1. Parameters with the defaults at C=256: 93 316.

    YAML: ``[-1, 1, LocalWindowAttention, [key_dim, num_heads, attn_ratio, resolution, window_resolution, kernels]]``,
    all optional; defaults ``[16, 4, null, 14, 7, [5, 5, 5, 5]]`` (EfficientViT-M's stage settings: the reference
    class's own defaults, 8 heads and 4 kernels, raise an IndexError). Input channels are inferred and ``num_heads``
    must divide them. ``key_dim``: query/key width per head; ``attn_ratio``: value width over ``key_dim``, ``null``
    for C / (key_dim num_heads) as EfficientViT builds it (each head's value width is then C / num_heads, which the
    cascade needs); ``resolution`` and ``window_resolution``: the window side is their minimum; ``kernels``: the
    queries' depthwise kernel of each head (at least ``num_heads`` odd sizes).

    State dict: the reference's keys and shapes (``attn.qkvs``, ``attn.dws``, ``attn.proj``,
    ``attn.attention_biases``, ``attn.attention_bias_idxs``), so the reference module's state dict loads strictly.

    Departures from the reference:
        - Any H x W: the reference asserts H = W = ``resolution`` (classification only). Here windows are
          min(``window_resolution``, ``resolution``) wide (the reference's window when its assert holds), and a map
          no larger than a window is one window of its own size, whose bias is the table's entries for its offsets
          (the reference would fail on a bias of the wrong size).
        - The bias table is indexed in every forward, no cached ``ab`` (the reference's eval-mode cache goes stale
          after ``load_state_dict``, ``.to()`` or ``.half()``); the reference's ``train()`` override is dropped.
        - Padding amounts and window counts are computed from the tensor's shape without branching, so an ONNX
          export with dynamic H, W partitions correctly at every size.
        - Arguments the reference would fail on are refused at build time (`BlockArgumentError`): heads not
          dividing C, fewer kernels than heads, even kernels, a value width other than C / num_heads.
        - The attention softmax (with its bias) runs in float32 under autocast.

    Identity start: the identity mix of `AttentionBlock`. The module replaces its input (EfficientViT adds it to a
    residual stream outside it), and its output projection's BatchNorm scale starts at 0 as in the reference, so a
    block built from scratch outputs zeros until the first step moves that scale.

    Attributes:
        dim (int): Channels C.
        num_heads (int): Heads.
        resolution (int): The reference's input resolution (here only the bound on the window).
        window_resolution (int): The window side asked for.
        attn (CascadedGroupAttention): The attention within a window.

    Examples:
        >>> block = LocalWindowAttention(64)
        >>> block(torch.randn(2, 64, 15, 20)).shape
        torch.Size([2, 64, 15, 20])
    """

    def __init__(
        self,
        c1: int,
        key_dim: int = 16,
        num_heads: int = 4,
        attn_ratio: float | None = None,
        resolution: int = 14,
        window_resolution: int = 7,
        kernels: Sequence[int] = (5, 5, 5, 5),
    ) -> None:
        """Initialize LocalWindowAttention.

        Args:
            c1 (int): Input (and output) channels C.
            key_dim (int): Query and key channels per head.
            num_heads (int): Heads; must divide C.
            attn_ratio (float | None): Value width over ``key_dim``; None for C / (key_dim num_heads).
            resolution (int): Bound on the window side (the reference's input resolution).
            window_resolution (int): Window side.
            kernels (Sequence[int]): Odd depthwise kernel of each head's queries (the first ``num_heads`` are used).
        """
        super().__init__()
        name = "LocalWindowAttention"
        check_channels(name, c1)
        check_positive_int(name, "key_dim", key_dim, "query and key channels per head")
        check_positive_int(name, "num_heads", num_heads, "number of heads")
        check_positive_int(name, "resolution", resolution, "bound on the window side")
        check_positive_int(name, "window_resolution", window_resolution, "window side")
        if c1 % num_heads:
            raise BlockArgumentError(
                f"{name}: num_heads={num_heads} must divide the input channels, but {c1} % {num_heads} = "
                f"{c1 % num_heads}. Input channels are inferred, so pass a head count, not a channel count"
            )
        if (
            isinstance(kernels, (str, bytes))
            or not isinstance(kernels, Sequence)
            or not all(isinstance(k, int) and not isinstance(k, bool) and k > 0 and k % 2 for k in kernels)
        ):
            raise BlockArgumentError(f"{name}: kernels must be a list of odd positive kernel sizes, got {kernels!r}")
        if len(kernels) < num_heads:
            raise BlockArgumentError(
                f"{name}: kernels={list(kernels)} has {len(kernels)} sizes for num_heads={num_heads} heads; give one "
                "per head"
            )
        if attn_ratio is None:
            attn_ratio = c1 / (key_dim * num_heads)
        elif isinstance(attn_ratio, bool) or not isinstance(attn_ratio, (int, float)) or attn_ratio <= 0:
            raise BlockArgumentError(f"{name}: attn_ratio must be a positive number or null, got {attn_ratio!r}")
        d = int(attn_ratio * key_dim)
        if d < 1 or (num_heads > 1 and d != c1 // num_heads):
            raise BlockArgumentError(
                f"{name}: attn_ratio={attn_ratio} gives value width int({attn_ratio} * {key_dim}) = {d} per head, but "
                f"each head's output is added to the next head's {c1 // num_heads}-channel input; use null (the value "
                f"width C / num_heads = {c1 // num_heads})"
            )
        self.dim = c1
        self.num_heads = num_heads
        self.resolution = resolution
        self.window_resolution = window_resolution
        self.attn = CascadedGroupAttention(
            c1, key_dim, num_heads, attn_ratio, min(window_resolution, resolution), list(kernels)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the attention in windows.

        Args:
            x (torch.Tensor): Input of shape (B, C, H, W).

        Returns:
            (torch.Tensor): Output of shape (B, C, H, W).
        """
        b, c, h, w = x.shape
        r = self.attn.resolution
        tiled = (h > r) | (w > r)  # a map within one window is that window; else r x r tiles (bool or traced)
        wh, ww = h + tiled * (r - h), w + tiled * (r - w)
        pad_b, pad_r = (wh - h % wh) % wh, (ww - w % ww) % ww
        y = F.pad(x, (0, pad_r, 0, pad_b))
        nh, nw = (h + pad_b) // wh, (w + pad_r) // ww
        y = y.reshape(b, c, nh, wh, nw, ww).permute(0, 2, 4, 1, 3, 5).reshape(-1, c, wh, ww)
        y = self.attn(y)
        y = y.reshape(b, nh, nw, c, wh, ww).permute(0, 3, 1, 4, 2, 5).reshape(b, c, nh * wh, nw * ww)
        return self.blend(x, y[:, :, :h, :w])
