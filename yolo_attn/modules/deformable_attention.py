"""DAT's deformable attention, ``DAttentionBaseline`` (Xia et al., CVPR 2022)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from yolo_attn.modules.arg_checks import BlockArgumentError, check_bool, check_channels, check_positive_int
from yolo_attn.modules.identity_start import AttentionBlock
from yolo_attn.registry import register_block

LOG2_8 = math.log2(8.0)


class LayerNormProxy(nn.Module):
    """LayerNorm over the channels of a (B, C, H, W) map (the reference's ``LayerNormProxy``, same state dict).

    Attributes:
        norm (nn.LayerNorm): LayerNorm over C.
    """

    def __init__(self, dim: int) -> None:
        """Initialize the LayerNorm over ``dim`` channels."""
        super().__init__()
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise each position's channels: (B, C, H, W) -> (B, C, H, W)."""
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def _grid(ones: torch.Tensor, dim: int, half: float) -> torch.Tensor:
    """Normalised coordinates ``(i + half) / max(n - 1, 1) * 2 - 1`` of the n positions along ``dim`` of ``ones``.

    Built from the tensor's shape with tensor operations (a cumulative sum), so an ONNX export keeps it dynamic.

    Args:
        ones (torch.Tensor): Ones of shape (1, 1, H, W), fp32.
        dim (int): 2 (rows) or 3 (columns).
        half (float): 0.5 for the reference points (pixel centres), 0 for the query grid.

    Returns:
        (torch.Tensor): Coordinates of the shape of ``ones``.
    """
    n = ones.sum(dim, keepdim=True)
    return (ones.cumsum(dim) - 1 + half) / (n - 1).clamp(min=1) * 2 - 1


def _pair(name: str, value: Any) -> tuple[int, int]:
    """Check ``q_size``: one positive integer or a pair of them."""
    pair = (value, value) if isinstance(value, int) else value
    if (
        isinstance(pair, (str, bytes))
        or not isinstance(pair, Sequence)
        or len(pair) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in pair)
    ):
        raise BlockArgumentError(
            f"DAttention: {name} must be a positive integer or a pair [h, w] of them, got {value!r} "
            f"({type(value).__name__})"
        )
    return pair[0], pair[1]


def _number(name: str, value: Any, low: float, high: float | None, meaning: str) -> float:
    """Check a real number in [low, high) (no upper bound for ``high=None``)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < low or (high is not None and value >= high):
        bound = f"in [{low}, {high})" if high is not None else f">= {low}"
        raise BlockArgumentError(f"DAttention: {name} ({meaning}) must be a number {bound}, got {value!r}")
    return float(value)


def _deficit(n: int, least: int) -> int | torch.Tensor:
    """Rows (or columns) to add so that a side of ``n`` reaches ``least``: a tensor while tracing (dynamic in ONNX)."""
    if torch.jit.is_tracing():
        return torch.clamp(least - torch.as_tensor(n), min=0)
    return max(least - n, 0)


def _bilinear(img: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """``F.grid_sample(img, grid, "bilinear", padding_mode="zeros", align_corners=True)`` by gathers, for ONNX export.

    ONNX has GridSample from opset 16 only; four gathers of the corner pixels and their bilinear weights export at
    every opset and compute the same numbers. Sizes come from the tensors, so the export stays dynamic.

    Args:
        img (torch.Tensor): Input of shape (N, C, H, W).
        grid (torch.Tensor): Sampling points (x, y) in [-1, 1], shape (N, Ho, Wo, 2).

    Returns:
        (torch.Tensor): Samples of shape (N, C, Ho, Wo).
    """
    n, c = img.shape[0], img.shape[1]
    ones = torch.ones_like(img[:1, :1], dtype=grid.dtype)  # (1, 1, H, W)
    h, w = ones[0, 0, :, 0].sum(), ones[0, 0, 0, :].sum()  # 0-d tensors
    px, py = (grid[..., 0] + 1) * ((w - 1) / 2), (grid[..., 1] + 1) * ((h - 1) / 2)  # pixel coordinates
    x0, y0 = px.floor(), py.floor()
    flat = img.reshape(n, c, -1)
    out = torch.zeros_like(flat[:, :, :1]) * px.reshape(n, 1, -1)  # (N, C, Ho*Wo) zeros
    for yi, wy in ((y0, 1 - (py - y0)), (y0 + 1, py - y0)):
        for xi, wx in ((x0, 1 - (px - x0)), (x0 + 1, px - x0)):
            inside = (xi >= 0) & (xi <= w - 1) & (yi >= 0) & (yi <= h - 1)
            index = torch.minimum(yi.clamp(min=0), h - 1) * w + torch.minimum(xi.clamp(min=0), w - 1)
            corner = torch.gather(flat, 2, index.long().reshape(n, 1, -1).expand(-1, c, -1))
            out = out + corner * (wx * wy * inside).reshape(n, 1, -1)
    return out.reshape(n, c, grid.shape[1], grid.shape[2])


def _sample(img: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Bilinear sampling with ``align_corners=True`` and zero padding: ``F.grid_sample``, gathers in an ONNX export."""
    if torch.onnx.is_in_onnx_export():
        return _bilinear(img, grid)
    return F.grid_sample(img, grid, mode="bilinear", align_corners=True)


@register_block(aliases=["DAT"])
class DAttention(AttentionBlock):
    """Deformable attention: every position attends to keys and values sampled at learned offsets from a grid.

    Paper: Xia, Pan, Song, Li, Huang, "Vision Transformer with Deformable Attention", CVPR 2022. Reference code:
    LeapLabTHU/DAT ``models/dat_blocks.py`` class ``DAttentionBaseline`` (commit 32173fc), which this block follows
    layer for layer; the forks' ``DAttention`` (z1069614715/objectdetection_script) wraps it with ``n_head_channels =
    C // n_heads`` and the YAML args below, and is an alias here.

    With G = ``n_groups`` groups of C/G channels and ``n_heads`` heads of ``C / n_heads`` channels::

        q       = proj_q(x)                                                     (B, C, H, W)
        offset  = conv_offset(q per group)                                      (B*G, 2, Hk, Wk)   fp32
                  (depthwise ksize x ksize conv with stride, LayerNorm, GELU, 1x1 conv to 2, no bias)
        pos     = reference points + tanh(offset) * offset_range_factor / (Hk - 1, Wk - 1)   normalised, fp32
        x_s     = grid_sample(x per group, pos, bilinear, align_corners=True)  (B, C, 1, Hk*Wk)    fp32
        k, v    = proj_k(x_s), proj_v(x_s)
        attn    = softmax(q^T k * scale + bias)                                 per head, (H*W, Hk*Wk), fp32
        out     = proj_out(v attn^T + rpe_table(q))                             (B, C, H, W)

    The reference points are the pixel centres of the Hk x Wk grid ``(i + 0.5) / (Hk - 1) * 2 - 1`` (the reference's,
    a half-pixel off the ``align_corners=True`` corners). The position encoding (``use_pe``) is one of: ``dwc_pe``, a
    depthwise 3x3 conv of q added to the output (the forks' default, on here); ``log_cpb``, an MLP of the log-spaced
    query-to-sample displacements as a logit bias; otherwise a ``(n_heads, 2 q_h - 1, 2 q_w - 1)`` table sampled at the
    displacements, which runs at any map size (``q_size`` only sets its resolution). With ``stride`` s the offsets come
    from a strided conv: ``Hk x Wk ~ H/s x W/s`` sampled keys, ``H*W x Hk*Wk`` logits per head (quadratic in H*W at
    s=1: meant for P4/P5). Shapes: (B, C, H, W) -> (B, C, H, W). Parameters at the defaults:
    ``4 C^2 + 4 C + (C/G) (ksize^2 + 1 + 2 + 2) + 10 C``. Cost at yolov8n's standard sites for global attention
    (640 px): +601k parameters, +2.29 GFLOPs (Ultralytics' counter and PyTorch's).

    YAML: ``[-1, 1, DAttention, [q_size, n_heads, n_groups, attn_drop, proj_drop, stride, offset_range_factor, use_pe,
    dwc_pe, no_off, fixed_pe, ksize, log_cpb]]``, all optional (defaults ``[20, 20]``, 8, 4, 0, 0, 1, 4, true, true,
    false, false, 3, false: the forks'); input channels are inferred. ``n_heads`` and ``n_groups`` must divide C (8 and
    4 divide every Ultralytics width, all multiples of 8); with ``log_cpb`` or the table encoding ``n_groups`` must also
    divide ``n_heads``. ``offset_range_factor`` < 0 clamps the positions to the map instead of bounding the offsets.

    State dict: the reference's keys and shapes (``conv_offset.{0,1.norm,3}``, ``proj_q``, ``proj_k``, ``proj_v``,
    ``proj_out``, ``rpe_table``), so ``block.load_state_dict(DAttentionBaseline(...).state_dict())`` works both ways.

    Departures from the reference (where the reference runs, the outputs are its outputs):
        - Maps with a side of 1 (or a 1-wide sampling grid): the reference divides by ``Hk - 1 = 0`` (NaN positions);
          here the divisors are at least 1, so the reference point is the map's centre there.
        - ``ksize == stride > 1`` (an unpadded offset conv) on a map smaller than ``ksize``: the reference's conv
          fails; here the offset network's input is zero-padded at the bottom and right up to ``ksize``.
        - Offsets, reference points, sampling grids and ``grid_sample`` in fp32, and the softmax in fp32, under
          autocast (the reference samples in the input dtype, the forks cast the grid to it).
        - Grids built from the map's shape with tensor operations (not ``linspace`` of Python sizes, nor a
          ``torch.tensor`` of the offset range), so an ONNX export runs at any size; in an ONNX export the bilinear
          sampling is four gathers with their weights (the same numbers), as GridSample needs opset 16.
        - ``fixed_pe`` (a bias table for exactly one map size, q_size) and ``no_off`` (the no-offset ablation) are
          refused at build time; the forks' unused ``kv_size`` is not taken. Dropouts are not in place (in-place
          dropout of the softmax output breaks its backward when ``attn_drop > 0``).
        - The module returns only its output (the reference also returns the positions and reference points).

    Identity start: the identity mix of `AttentionBlock` (the block returns the reference's output, with no residual).

    Attributes:
        n_heads (int): Number of attention heads.
        n_head_channels (int): Channels per head, ``C // n_heads``.
        n_groups (int): Number of offset groups G.
        n_group_channels (int): Channels per group, ``C // G``.
        conv_offset (nn.Sequential): The offset network.
        proj_q, proj_k, proj_v, proj_out (nn.Conv2d): 1x1 projections C -> C.
        rpe_table (nn.Module | nn.Parameter | None): The position encoding (see above), None without ``use_pe``.

    Examples:
        >>> dat = DAttention(64)
        >>> dat(torch.randn(2, 64, 15, 20)).shape
        torch.Size([2, 64, 15, 20])
    """

    standard_sites = "global"  # yolo_attn.sites: H*W x Hk*Wk logits: none at the highest-resolution level

    def __init__(
        self,
        c1: int,
        q_size: int | Sequence[int] = (20, 20),
        n_heads: int = 8,
        n_groups: int = 4,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        stride: int = 1,
        offset_range_factor: float = 4,
        use_pe: bool = True,
        dwc_pe: bool = True,
        no_off: bool = False,
        fixed_pe: bool = False,
        ksize: int = 3,
        log_cpb: bool = False,
    ) -> None:
        """Initialize DAttention.

        Args:
            c1 (int): Input (and output) channels C.
            q_size (int | Sequence[int]): ``[h, w]`` resolution of the table position encoding (used only with
                ``use_pe`` and neither ``dwc_pe`` nor ``log_cpb``); any map size runs.
            n_heads (int): Number of attention heads; must divide C.
            n_groups (int): Number of offset groups; must divide C.
            attn_drop (float): Dropout on the attention weights.
            proj_drop (float): Dropout on the output.
            stride (int): Stride of the offset network (the sampling grid is about H/stride x W/stride).
            offset_range_factor (float): Bound of the offsets in grid cells (``tanh`` scaled); < 0 clamps instead.
            use_pe (bool): Use a position encoding.
            dwc_pe (bool): Depthwise-conv position encoding (else ``log_cpb`` or the table).
            no_off (bool): The no-offset ablation; refused.
            fixed_pe (bool): A bias table for one map size; refused where it would be used.
            ksize (int): Kernel of the offset network's depthwise conv.
            log_cpb (bool): Log-spaced continuous position bias (an MLP of the displacements).
        """
        super().__init__()
        name = "DAttention"
        check_channels(name, c1)
        q_h, q_w = _pair("q_size", q_size)
        check_positive_int(name, "n_heads", n_heads, "number of attention heads")
        check_positive_int(name, "n_groups", n_groups, "number of offset groups")
        check_positive_int(name, "stride", stride, "stride of the offset network")
        check_positive_int(name, "ksize", ksize, "kernel of the offset network")
        _number("attn_drop", attn_drop, 0.0, 1.0, "dropout probability")
        _number("proj_drop", proj_drop, 0.0, 1.0, "dropout probability")
        _number("offset_range_factor", offset_range_factor, -math.inf, None, "offset bound")
        for flag, value in {"use_pe": use_pe, "dwc_pe": dwc_pe, "no_off": no_off, "fixed_pe": fixed_pe}.items():
            check_bool(name, flag, value)
        check_bool(name, "log_cpb", log_cpb)
        for what, count in (("n_heads", n_heads), ("n_groups", n_groups)):
            if c1 % count:
                divisors = [d for d in range(1, min(count, c1) + 1) if c1 % d == 0]
                raise BlockArgumentError(
                    f"{name}: {what}={count} must divide the {c1} input channels ({c1} % {count} = {c1 % count}); "
                    f"e.g. {what}={divisors[-1]}. Input channels are inferred, so pass a count, not a channel count"
                )
        if no_off:
            raise BlockArgumentError(
                f"{name}: no_off=True (the paper's ablation without offsets) is not supported: it is attention to an "
                "average-pooled map, not deformable attention"
            )
        table = use_pe and not dwc_pe
        if table and fixed_pe:
            raise BlockArgumentError(
                f"{name}: fixed_pe=True learns a bias for exactly one map size (q_size={[q_h, q_w]}), and a detector "
                "sees many (training, rectangular validation, other imgsz); use dwc_pe (the default), log_cpb or the "
                "table encoding (use_pe with dwc_pe, fixed_pe and log_cpb false), which run at any size"
            )
        if table and n_heads % n_groups:
            raise BlockArgumentError(
                f"{name}: with {'log_cpb' if log_cpb else 'the table position encoding'}, n_groups={n_groups} must "
                f"divide n_heads={n_heads} (each group's heads share its sampled points)"
            )
        self.dwc_pe = dwc_pe
        self.n_head_channels = c1 // n_heads
        self.scale = self.n_head_channels**-0.5
        self.n_heads = n_heads
        self.q_h, self.q_w = q_h, q_w
        self.kv_h, self.kv_w = q_h // stride, q_w // stride
        self.nc = c1
        self.n_groups = n_groups
        self.n_group_channels = c1 // n_groups
        self.n_group_heads = n_heads // n_groups
        self.use_pe = use_pe
        self.fixed_pe = fixed_pe
        self.no_off = no_off
        self.offset_range_factor = float(offset_range_factor)
        self.ksize = ksize
        self.log_cpb = log_cpb
        self.stride = stride
        pad_size = ksize // 2 if ksize != stride else 0
        self.least = ksize - 2 * pad_size  # the offset conv needs maps of at least this many pixels a side
        cg = self.n_group_channels
        self.conv_offset = nn.Sequential(
            nn.Conv2d(cg, cg, ksize, stride, pad_size, groups=cg),
            LayerNormProxy(cg),
            nn.GELU(),
            nn.Conv2d(cg, 2, 1, 1, 0, bias=False),
        )
        self.proj_q = nn.Conv2d(c1, c1, kernel_size=1, stride=1, padding=0)
        self.proj_k = nn.Conv2d(c1, c1, kernel_size=1, stride=1, padding=0)
        self.proj_v = nn.Conv2d(c1, c1, kernel_size=1, stride=1, padding=0)
        self.proj_out = nn.Conv2d(c1, c1, kernel_size=1, stride=1, padding=0)
        self.proj_drop = nn.Dropout(proj_drop)
        self.attn_drop = nn.Dropout(attn_drop)
        if not use_pe:
            self.rpe_table = None
        elif dwc_pe:
            self.rpe_table = nn.Conv2d(c1, c1, kernel_size=3, stride=1, padding=1, groups=c1)
        elif log_cpb:
            self.rpe_table = nn.Sequential(
                nn.Linear(2, 32, bias=True), nn.ReLU(inplace=True), nn.Linear(32, self.n_group_heads, bias=False)
            )
        else:
            self.rpe_table = nn.Parameter(torch.zeros(n_heads, q_h * 2 - 1, q_w * 2 - 1))
            nn.init.trunc_normal_(self.rpe_table, std=0.01)

    def attend(self, x: torch.Tensor) -> torch.Tensor:
        """Compute the reference module's output (no identity mix).

        Args:
            x (torch.Tensor): Input of shape (B, C, H, W).

        Returns:
            (torch.Tensor): Output of shape (B, C, H, W).
        """
        b, c, h, w = x.shape
        g, cg, heads, hc = self.n_groups, self.n_group_channels, self.n_heads, self.n_head_channels
        q = self.proj_q(x)
        q_off = q.reshape(b * g, cg, h, w)
        if self.least > 1:  # an unpadded offset conv (ksize == stride): maps smaller than ksize are padded to it
            q_off = F.pad(q_off, (0, _deficit(w, self.least), 0, _deficit(h, self.least)))
        offset = self.conv_offset(q_off).float()  # (B*G, 2, Hk, Wk): y, x
        ones = torch.ones_like(offset[:1, :1])  # (1, 1, Hk, Wk)
        if self.offset_range_factor >= 0:
            rng_y = 1.0 / (ones.sum(2, keepdim=True) - 1).clamp(min=1)
            rng_x = 1.0 / (ones.sum(3, keepdim=True) - 1).clamp(min=1)
            offset = offset.tanh() * torch.cat((rng_y.expand_as(ones), rng_x.expand_as(ones)), 1)
            offset = offset * self.offset_range_factor
        pos = offset + torch.cat((_grid(ones, 2, 0.5), _grid(ones, 3, 0.5)), 1)  # (B*G, 2, Hk, Wk): y, x
        if self.offset_range_factor < 0:
            pos = pos.clamp(-1.0, 1.0)
        grid = pos.flip(1).permute(0, 2, 3, 1)  # (B*G, Hk, Wk, 2): x, y
        x_sampled = _sample(x.reshape(b * g, cg, h, w).float(), grid)
        x_sampled = x_sampled.to(q.dtype).reshape(b, c, 1, -1)  # (B, C, 1, Hk*Wk)

        q = q.reshape(b * heads, hc, -1)  # (B*heads, hc, H*W)
        k = self.proj_k(x_sampled).reshape(b * heads, hc, -1)  # (B*heads, hc, Hk*Wk)
        v = self.proj_v(x_sampled).reshape(b * heads, hc, -1)
        attn = (q.transpose(1, 2) @ k).float() * self.scale  # (B*heads, H*W, Hk*Wk)

        if self.use_pe and not self.dwc_pe:
            ones_q = torch.ones_like(x[:1, :1], dtype=torch.float32)  # (1, 1, H, W)
            q_grid = torch.cat((_grid(ones_q, 2, 0.0), _grid(ones_q, 3, 0.0)), 1).flatten(2).transpose(1, 2)
            samples = pos.flatten(2).transpose(1, 2)  # (B*G, Hk*Wk, 2): y, x
            displacement = q_grid.unsqueeze(2) - samples.unsqueeze(1)  # (B*G, H*W, Hk*Wk, 2)
            if self.log_cpb:
                displacement = displacement * 4.0
                displacement = torch.sign(displacement) * torch.log2(displacement.abs() + 1.0) / LOG2_8
                bias = self.rpe_table(displacement.to(self.rpe_table[0].weight.dtype))  # (B*G, H*W, Hk*Wk, G_h)
                bias = bias.permute(0, 3, 1, 2)
            else:
                table = self.rpe_table.float().reshape(1, g, self.n_group_heads, *self.rpe_table.shape[1:])
                table = table.expand(b, -1, -1, -1, -1).reshape(b * g, self.n_group_heads, *self.rpe_table.shape[1:])
                bias = _sample(table, (displacement * 0.5).flip(-1))
            attn = attn + bias.reshape(b * heads, attn.shape[1], attn.shape[2]).float()

        attn = self.attn_drop(attn.softmax(dim=2)).to(v.dtype)
        out = v @ attn.transpose(1, 2)  # (B*heads, hc, H*W)
        if self.use_pe and self.dwc_pe:
            out = out + self.rpe_table(q.reshape(b, c, h, w)).reshape(b * heads, hc, -1)
        return self.proj_drop(self.proj_out(out.reshape(b, c, h, w)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply deformable attention to ``x``.

        Args:
            x (torch.Tensor): Input of shape (B, C, H, W).

        Returns:
            (torch.Tensor): Output of shape (B, C, H, W).
        """
        return self.blend(x, self.attend(x))
