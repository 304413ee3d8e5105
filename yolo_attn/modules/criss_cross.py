"""Criss-cross attention (Huang et al., ICCV 2019, CCNet): each position attends to its row and its column."""

from __future__ import annotations

import torch
from torch import nn

from yolo_attn.modules.arg_checks import BlockArgumentError, check_channels, check_positive_int
from yolo_attn.modules.identity_start import AttentionBlock
from yolo_attn.registry import register_block


@register_block
class CrissCrossAttention(AttentionBlock):
    """Criss-cross attention: self-attention restricted to the row and the column of each position, applied R times.

    Paper: Huang, Wang, Huang, Huang, Wei, Liu, "CCNet: Criss-Cross Attention for Semantic Segmentation", ICCV 2019.
    Reference code: speedinghzl/CCNet, ``cc_attention/functions.py`` ``CrissCrossAttention`` (the pure-PyTorch
    version, branch ``pure-python`` and master; read, not copied), applied ``recurrence`` times with shared weights as
    its ``RCCAModule`` does. With ``q = W_q x``, ``k = W_k x`` (1x1 convs C -> C/8) and ``v = W_v x`` (C -> C)::

        e_H[h, w, h'] = q[:, h, w] . k[:, h', w]    (-inf at h' = h, so the position itself counts once)
        e_W[h, w, w'] = q[:, h, w] . k[:, h, w']
        a = softmax over the H + W entries of [e_H, e_W]
        out[:, h, w] = gamma * (sum_h' a_H[h, w, h'] v[:, h', w] + sum_w' a_W[h, w, w'] v[:, h, w']) + x[:, h, w]

    ``gamma`` is a learned scalar, zero at initialisation (the reference's), so a fresh block is the identity. With
    ``recurrence = R`` the same module runs R times on its own output: after R = 2 every position has reached every
    other (the paper's best setting).

    Shapes: (B, C, H, W) -> (B, C, H, W); the attention is (B, H, W, H + W), O(HW(H + W)) memory.
    Cost at yolov8n's P5 (C=256): 82,241 parameters (the C x C value conv dominates).

    YAML: ``[-1, 1, CrissCrossAttention, [recurrence]]``, all args optional; input channels are inferred.
    ``recurrence`` (1): the paper's R, how many times the block is applied (2 in the paper's best setting).

    Size constraint: C >= 8 (the query/key width is C // 8), checked at build time.

    Identity start: `start_as_identity` zeroes ``gamma`` (what a fresh block has, so no ``identity_mix`` is needed).

    Departures from the reference:
        - Only the criss-cross module (and its recurrence); ``RCCAModule``'s 3x3 conv + BN before and after it and its
          concatenating bottleneck are the segmentation head's, which change the channel count.
        - The row and column products are batched matrix products on permuted views instead of the reference's
          ``view(B*W, -1, H)`` copies, and the diagonal mask is built from ``arange`` on the input's device (the
          reference's ``INF`` calls ``.cuda()``, so it does not run on a CPU); the same numbers, and it exports to ONNX
          with dynamic H and W.
        - Under autocast (AMP) the query and key projections, their products and the softmax run in fp32: in fp16 or
          bf16 the logits lose
          about 0.4% of their size, which a softmax turns into weights off by tens of percent (and fp16 logits can
          overflow). Outside autocast nothing changes.

    State dict: the reference's keys and shapes (``query_conv``, ``key_conv``, ``value_conv``, ``gamma`` of shape
    (1,)), so ``block.load_state_dict(CrissCrossAttention_reference(C).state_dict())`` works as is.

    Attributes:
        recurrence (int): R.
        query_conv (nn.Conv2d): C -> C/8 queries; ``key_conv`` the keys.
        value_conv (nn.Conv2d): C -> C values.
        gamma (nn.Parameter): Residual scale of shape (1,), zero at initialisation.
        zero_output (str): ``"gamma"``: the identity start zeroes it.

    Examples:
        >>> cca = CrissCrossAttention(64, recurrence=2)
        >>> cca(torch.randn(2, 64, 20, 20)).shape
        torch.Size([2, 64, 20, 20])
    """

    zero_output = "gamma"

    def __init__(self, c1: int, recurrence: int = 1) -> None:
        """Initialize criss-cross attention.

        Args:
            c1 (int): Input (and output) channels C, at least 8.
            recurrence (int): How many times the block is applied (with shared weights).
        """
        super().__init__()
        check_channels("CrissCrossAttention", c1)
        if c1 < 8:
            raise BlockArgumentError(
                f"CrissCrossAttention: the query/key width is C // 8, so C must be at least 8; got {c1} input channels"
            )
        self.recurrence = check_positive_int("CrissCrossAttention", "recurrence", recurrence, "the paper's R")
        self.query_conv = nn.Conv2d(c1, c1 // 8, 1)
        self.key_conv = nn.Conv2d(c1, c1 // 8, 1)
        self.value_conv = nn.Conv2d(c1, c1, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def attention_weights(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the criss-cross attention of one pass on ``x`` (B, C, H, W).

        Returns:
            a_h (torch.Tensor): Weights along the column, (B, H, W, H'): query (h, w) to key (h', w).
            a_w (torch.Tensor): Weights along the row, (B, H, W, W'): query (h, w) to key (h, w').
        """
        h = x.shape[2]
        amp = torch.is_autocast_enabled(x.device.type)
        with torch.autocast(x.device.type, enabled=False):  # logits and softmax in fp32 under AMP (see the docstring)
            xq = x.float() if amp else x  # their projections too (bf16 q, k drift); outside AMP the module's own dtype
            q, k = self.query_conv(xq), self.key_conv(xq)
            e_h = q.permute(0, 3, 2, 1) @ k.permute(0, 3, 1, 2)  # (B, W, H, H')
            rows = torch.arange(h, device=x.device)
            e_h = e_h.masked_fill(rows[:, None] == rows[None, :], float("-inf")).transpose(1, 2)  # (B, H, W, H')
            e_w = q.permute(0, 2, 3, 1) @ k.permute(0, 2, 1, 3)  # (B, H, W, W')
            a = torch.cat((e_h, e_w), 3).softmax(3).to(x.dtype)
        return a[..., :h], a[..., h:]

    def step(self, x: torch.Tensor) -> torch.Tensor:
        """One criss-cross pass: ``x + gamma * (column context + row context)``, (B, C, H, W) -> same."""
        a_h, a_w = self.attention_weights(x)
        v = self.value_conv(x)
        out_h = (v.permute(0, 3, 1, 2) @ a_h.permute(0, 2, 3, 1)).permute(0, 2, 3, 1)  # (B, W, C, H) -> (B, C, H, W)
        out_w = (v.permute(0, 2, 1, 3) @ a_w.transpose(2, 3)).transpose(1, 2)  # (B, H, C, W) -> (B, C, H, W)
        return self.gamma * (out_h + out_w) + x

    def start_as_identity(self) -> CrissCrossAttention:
        """Make this block return its input by zeroing ``gamma``; idempotent.

        Returns:
            (CrissCrossAttention): ``self``.
        """
        with torch.no_grad():
            self.gamma.zero_()
        return self

    def attention_map(self, x: torch.Tensor, output: torch.Tensor) -> tuple[torch.Tensor, str]:
        """Return the attention each position receives in the last pass (B, H, W), summed over its row and column."""
        for _ in range(self.recurrence - 1):
            x = self.step(x)
        a_h, a_w = self.attention_weights(x)
        return a_h.sum(1).transpose(1, 2) + a_w.sum(2), "attention received (last pass, sum over queries)"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply criss-cross attention ``recurrence`` times.

        Args:
            x (torch.Tensor): Input of shape (B, C, H, W).

        Returns:
            (torch.Tensor): Output of shape (B, C, H, W).
        """
        y = x
        for _ in range(self.recurrence):
            y = self.step(y)
        return self.blend(x, y)
