"""BiFormer's Bi-Level Routing Attention, the NCHW version (Zhu et al., CVPR 2023)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from yolo_attn.modules.arg_checks import BlockArgumentError, check_channels, check_positive_int
from yolo_attn.modules.identity_start import AttentionBlock
from yolo_attn.registry import register_block


def _region(n: int, n_win: int) -> int | torch.Tensor:
    """Region size along one side, ``max(n // n_win, 1)``: a tensor while tracing, so that ONNX keeps it dynamic.

    Args:
        n (int): Map size along that side (a traced size during export).
        n_win (int): Windows per side.

    Returns:
        (int | torch.Tensor): The region size (a 0-d tensor while tracing).
    """
    if torch.jit.is_tracing():
        return torch.clamp(torch.as_tensor(n) // n_win, min=1)
    return max(n // n_win, 1)


@register_block(aliases=["BiLevelRoutingAttention_nchw", "BRA"])
class BiLevelRoutingAttention(AttentionBlock):
    """Bi-Level Routing Attention: each region of the map attends, token to token, to the top-k regions routed to it.

    Paper: Zhu, Wang, Ke, Zhang, Lau, "BiFormer: Vision Transformer with Bi-Level Routing Attention", CVPR 2023.
    Reference code: rayleizhu/BiFormer ``ops/bra_nchw.py`` class ``nchwBRA`` (commit b0ccf7a) with its attention
    function ``regional_routing_attention_torch`` of ``ops/torch/rrsda.py`` (commit 5b15121); the forks' class
    ``BiLevelRoutingAttention_nchw`` is a copy of it (an alias here).

    With region size ``(rh, rw) = (H // n_win, W // n_win)`` (at least 1 here, see below) the map is cut into
    ``R = ceil(H / rh) * ceil(W / rw)`` regions::

        q, k, v  = qkv_linear(x).chunk(3)                     (B, C, H, W) each
        q_r, k_r = region means of q, k (no gradient)          (B, R, C), (B, C, R)   fp32, from the means of x
        idx      = topk(q_r @ k_r, topk)                       (B, R, topk): the regions each region attends to
        q, k, v  = zero-padded to multiples of (rh, rw), split into heads and regions of rh * rw tokens
        attn     = softmax(scale * q @ gather(k, idx)^T)       per head and region, over topk * rh * rw tokens, fp32
        out      = output_linear(crop(attn @ gather(v, idx)) + lepe(v))

    ``lepe`` is a depthwise ``side_dwconv`` x ``side_dwconv`` convolution of ``v`` (the local context enhancement);
    ``scale = qk_scale or C ** -0.5`` (C, not the head width, as the reference keeps for its old checkpoints). The
    region means average only the map's own pixels (the reference's ``avg_pool2d`` with ``ceil_mode=True,
    count_include_pad=False``); the padded tokens are zeros after the projection and are attended to, unmasked, as in
    the reference. Shapes: (B, C, H, W) -> (B, C, H, W). Parameters: ``4 C^2 + 4 C + C (side_dwconv^2 + 1)``. Cost at
    yolov8n's standard sites (after SPPF and at the three Detect inputs, 640 px): +616k parameters, +1.92 GFLOPs
    (Ultralytics' counter; 1.98 by PyTorch's).

    YAML: ``[-1, 1, BiLevelRoutingAttention, [num_heads, n_win, qk_scale, topk, side_dwconv]]``, all optional
    (defaults 8, 7, null, 4, 3, the reference's); input channels are inferred. ``num_heads`` must divide C (8 divides
    every Ultralytics width, all multiples of 8); ``n_win`` is the number of windows per side (so the region size
    follows the map); ``qk_scale`` the logit scale (null: ``C ** -0.5``); ``topk`` the number of regions each region
    attends to; ``side_dwconv`` the odd kernel of ``lepe`` (0: no ``lepe``).

    State dict: the reference's keys and shapes (``lepe``, ``qkv_linear``, ``output_linear``), so
    ``block.load_state_dict(nchwBRA(C, ...).state_dict())`` works in both directions.

    Departures from the reference (where the reference runs, the outputs are its outputs):
        - Maps with fewer than ``n_win`` pixels on a side (P5 is 4 x 4 at imgsz 128; the reference's region size 0
          fails in ``avg_pool2d``): the region size is at least 1, so each pixel is a region there.
        - Fewer regions than ``topk`` (the reference's ``torch.topk`` fails): each region attends to all regions
          (the extra picks are masked out of the softmax), with a static k, so an ONNX export runs at any size.
        - The region means of q and k as the projection (the first 2C rows of ``qkv_linear``) of the region means of
          x, the same numbers since the projection is linear, so that the routing is fp32 under autocast (a bf16 q
          flips routed regions); the means as sums over the zero-padded regions over pixel counts (what
          ``avg_pool2d`` computes), as ONNX pooling needs a static kernel and the region size follows the map.
        - Routing scores, their top-k and the token softmax in fp32 under autocast (the output is autocast's dtype).
        - No ``auto_pad`` / ``attn_backend`` / ``ret_attn_mask`` arguments (the reference's ``auto_pad`` is unused:
          the torch backend always pads; only the torch backend exists).

    Identity start: the identity mix of `AttentionBlock` (the block returns the reference's output, with no residual).

    Attributes:
        dim (int): Channels C.
        num_heads (int): Number of attention heads.
        head_dim (int): Channels per head.
        scale (float): Logit scale.
        topk (int): Regions each region attends to.
        n_win (int): Windows per side.
        lepe (nn.Conv2d | None): Depthwise convolution of ``v`` (None for ``side_dwconv=0``).
        qkv_linear (nn.Conv2d): 1x1 convolution C -> 3C.
        output_linear (nn.Conv2d): 1x1 convolution C -> C.

    Examples:
        >>> bra = BiLevelRoutingAttention(64)
        >>> bra(torch.randn(2, 64, 15, 20)).shape
        torch.Size([2, 64, 15, 20])
    """

    def __init__(
        self,
        c1: int,
        num_heads: int = 8,
        n_win: int = 7,
        qk_scale: float | None = None,
        topk: int = 4,
        side_dwconv: int = 3,
    ) -> None:
        """Initialize BiLevelRoutingAttention.

        Args:
            c1 (int): Input (and output) channels C.
            num_heads (int): Number of attention heads; must divide C.
            n_win (int): Windows per side of the map (the region size is ``H // n_win`` x ``W // n_win``).
            qk_scale (float | None): Logit scale; None for ``C ** -0.5``.
            topk (int): Regions each region attends to.
            side_dwconv (int): Odd kernel size of the depthwise ``lepe`` convolution of the values; 0 for none.
        """
        super().__init__()
        name = "BiLevelRoutingAttention"
        check_channels(name, c1)
        check_positive_int(name, "num_heads", num_heads, "number of attention heads")
        check_positive_int(name, "n_win", n_win, "number of windows per side")
        check_positive_int(name, "topk", topk, "number of routed regions")
        if c1 % num_heads:
            divisors = [d for d in range(1, min(num_heads, c1) + 1) if c1 % d == 0]
            raise BlockArgumentError(
                f"{name}: num_heads={num_heads} must divide the {c1} input channels ({c1} % {num_heads} = "
                f"{c1 % num_heads}); e.g. num_heads={divisors[-1]}. Input channels are inferred, so pass a head "
                "count, not a channel count"
            )
        if qk_scale is not None and (
            isinstance(qk_scale, bool)
            or not isinstance(qk_scale, (int, float))
            or not math.isfinite(qk_scale)
            or qk_scale < 0
        ):
            raise BlockArgumentError(
                f"{name}: qk_scale (logit scale) must be null or a non-negative number, got {qk_scale!r} "
                f"({type(qk_scale).__name__})"
            )
        if (
            isinstance(side_dwconv, bool)
            or not isinstance(side_dwconv, int)
            or side_dwconv < 0
            or (side_dwconv > 0 and side_dwconv % 2 == 0)
        ):
            raise BlockArgumentError(
                f"{name}: side_dwconv (kernel of the depthwise lepe convolution) must be 0 (none) or an odd positive "
                f"integer, got {side_dwconv!r} ({type(side_dwconv).__name__}); an even kernel would change the map size"
            )
        self.dim = c1
        self.num_heads = num_heads
        self.head_dim = c1 // num_heads
        self.scale = qk_scale or c1**-0.5  # the reference's: C, not the head width
        self.lepe = (
            nn.Conv2d(c1, c1, kernel_size=side_dwconv, stride=1, padding=side_dwconv // 2, groups=c1)
            if side_dwconv > 0
            else None
        )
        self.topk = topk
        self.n_win = n_win
        self.qkv_linear = nn.Conv2d(c1, 3 * c1, kernel_size=1)
        self.output_linear = nn.Conv2d(c1, c1, kernel_size=1)

    def _regions(self, t: torch.Tensor, rh: int | torch.Tensor, rw: int | torch.Tensor) -> torch.Tensor:
        """Split a padded (B, C, nh*rh, nw*rw) map into (B, heads, nh*nw, rh*rw, head_dim) region token sequences."""
        b, _, hp, wp = t.shape
        t = t.reshape(b, self.num_heads, self.head_dim, hp // rh, rh, wp // rw, rw)
        return t.permute(0, 1, 3, 5, 4, 6, 2).reshape(b, self.num_heads, (hp // rh) * (wp // rw), rh * rw, -1)

    def attend(self, x: torch.Tensor) -> torch.Tensor:
        """Compute the reference module's output (no identity mix).

        Args:
            x (torch.Tensor): Input of shape (B, C, H, W).

        Returns:
            (torch.Tensor): Output of shape (B, C, H, W).
        """
        b, c, h, w = x.shape
        rh, rw = _region(h, self.n_win), _region(w, self.n_win)
        q, k, v = self.qkv_linear(x).chunk(3, dim=1)
        pad = (0, (rw - w % rw) % rw, 0, (rh - h % rh) % rh)  # zero padding after the projection, bottom and right
        qp, kp, vp = F.pad(q, pad), F.pad(k, pad), F.pad(v, pad)
        hp, wp = qp.shape[2], qp.shape[3]
        nh, nw = hp // rh, wp // rw

        # Region-to-region routing in fp32, without gradient (the reference detaches q and k here). The region means
        # of q and k (avg_pool2d, ceil_mode=True, count_include_pad=False: over each region's own pixels) are the
        # projection of the region means of x, the projection being linear: computed so, in fp32 whatever the
        # autocast, a low-precision q or k cannot flip which regions are routed.
        count = F.pad(torch.ones_like(x[:1, :1], dtype=torch.float32), pad).reshape(1, 1, nh, rh, nw, rw).sum((3, 5))
        x_r = F.pad(x.detach().float(), pad).reshape(b, c, nh, rh, nw, rw).sum((3, 5)) / count
        with torch.autocast(x.device.type, enabled=False):
            weight, bias = self.qkv_linear.weight[: 2 * c].detach(), self.qkv_linear.bias[: 2 * c].detach()
            q_r, k_r = F.conv2d(x_r, weight.float(), bias.float()).chunk(2, dim=1)  # (B, C, nh, nw) each
            a_r = q_r.flatten(2).transpose(1, 2) @ k_r.flatten(2)  # (B, R, R), the region graph's adjacency
        # topk columns of -inf: with fewer regions than topk the surplus picks land there and are masked below.
        scores, idx_r = torch.topk(F.pad(a_r, (0, self.topk), value=float("-inf")), k=self.topk, dim=-1)
        picked = torch.isfinite(scores)  # (B, R, topk): False only for surplus picks
        idx_r = torch.where(picked, idx_r, torch.zeros_like(idx_r))

        # Token-to-token attention within the routed regions.
        q_s, k_s, v_s = self._regions(qp, rh, rw), self._regions(kp, rh, rw), self._regions(vp, rh, rw)
        _, heads, regions, size, head_dim = k_s.shape
        index = idx_r.reshape(b, 1, regions, self.topk, 1, 1).expand(-1, heads, -1, -1, size, head_dim)
        k_g = torch.gather(k_s.unsqueeze(2).expand(-1, -1, regions, -1, -1, -1), 3, index)
        v_g = torch.gather(v_s.unsqueeze(2).expand(-1, -1, regions, -1, -1, -1), 3, index)
        logits = ((q_s * self.scale) @ k_g.flatten(-3, -2).transpose(-1, -2)).float()  # (B, heads, R, n, topk * n)
        mask = torch.where(picked, 0.0, float("-inf")).reshape(b, 1, regions, 1, self.topk, 1)
        logits = logits + mask.expand(-1, -1, -1, -1, -1, size).flatten(-2)
        attn = torch.softmax(logits, dim=-1).to(v_g.dtype)
        out = attn @ v_g.flatten(-3, -2)  # (B, heads, R, rh*rw, head_dim)

        out = out.reshape(b, heads, nh, nw, rh, rw, head_dim).permute(0, 1, 6, 2, 4, 3, 5).reshape(b, c, hp, wp)
        out = out[:, :, :h, :w]
        if self.lepe is not None:
            out = out + self.lepe(v)
        return self.output_linear(out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply bi-level routing attention to ``x``.

        Args:
            x (torch.Tensor): Input of shape (B, C, H, W).

        Returns:
            (torch.Tensor): Output of shape (B, C, H, W).
        """
        return self.blend(x, self.attend(x))
