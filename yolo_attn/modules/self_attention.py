"""Self-attention over the H x W positions of a feature map: multi-head (MHSA) and separable (MobileViTv2).

Both blocks are residual, ``out = x + proj(attention(x))``, with ``proj`` initialised to zero: a fresh block is the
identity, so inserting it leaves a pretrained signal untouched until training gives the attention a say.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from yolo_attn.modules.arg_checks import BlockArgumentError, check_channels, check_positive_int
from yolo_attn.modules.identity_start import AttentionBlock
from yolo_attn.registry import register_block


@register_block(bench_levels=("P4", "P5"))
class MHSA(AttentionBlock):
    """Multi-head self-attention among all H x W positions, as a residual block.

    Attention: Vaswani et al., "Attention Is All You Need", NeurIPS 2017; applied to a convolutional feature map as in
    BoTNet (Srinivas et al., "Bottleneck Transformers for Visual Recognition", CVPR 2021): queries, keys and values
    are 1x1 convolutions, every position attends to every position with ``softmax(q^T k / sqrt(d))`` per head, and the
    heads' outputs are concatenated and projected by a 1x1 convolution (W^O). ``out = x + W^O(MHA(x))``.

    Differences from BoTNet, both deliberate: no relative position encoding, because BoTNet's is sized for one
    feature-map shape while a detector trains and infers at several (position still reaches the block through the
    zero padding of the convolutions before it); and a residual connection with a zero-initialised W^O, so the block
    can be inserted anywhere. Cost grows with (H*W)^2: use it at low-resolution stages (P4/16, P5/32).

    Speed: the forward runs ``torch.nn.functional.scaled_dot_product_attention`` on queries, keys and values laid out
    as contiguous (B, heads, H*W, head_dim) tensors, which uses PyTorch's fused kernels (on CPU a flash-attention
    kernel that never holds the (H*W)^2 weights in memory). An ONNX export writes the same attention as explicit
    MatMul, Softmax, MatMul nodes, which every opset and runtime accepts.

    YAML: ``[-1, 1, MHSA, [heads]]``, all args optional; input channels are inferred and must be divisible by heads.

    Attributes:
        heads (int): Number of attention heads.
        head_dim (int): Channels per head, ``C // heads``.
        scale (float): Logit scale ``head_dim ** -0.5``.
        qkv (nn.Conv2d): 1x1 conv C -> 3C producing queries, keys and values.
        proj (nn.Conv2d): 1x1 output projection C -> C, zero-initialised.
        zero_output (str): ``"proj"``: `start_as_identity` zeroes it (the block has no identity mix).

    Examples:
        >>> mhsa = MHSA(64, heads=4)
        >>> mhsa(torch.randn(2, 64, 10, 12)).shape
        torch.Size([2, 64, 10, 12])
    """

    standard_sites = "global"  # yolo_attn.cfg.sites: O((HW)^2) over all positions: none at the highest-resolution level

    zero_output = "proj"

    def __init__(self, c1: int, heads: int = 4) -> None:
        """Initialize MHSA.

        Args:
            c1 (int): Input (and output) channels C.
            heads (int): Number of attention heads; must divide C.
        """
        super().__init__()
        check_channels("MHSA", c1)
        check_positive_int("MHSA", "heads", heads, "number of attention heads")
        if c1 % heads:
            raise BlockArgumentError(f"MHSA: heads={heads} must divide the {c1} input channels")
        self.heads = heads
        self.head_dim = c1 // heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Conv2d(c1, 3 * c1, 1)
        self.proj = nn.Conv2d(c1, c1, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def attention_weights(self, x: torch.Tensor) -> torch.Tensor:
        """Compute the attention of every position to every position.

        Args:
            x (torch.Tensor): Input of shape (B, C, H, W).

        Returns:
            (torch.Tensor): Weights of shape (B, heads, H*W, H*W); row i (a query position) sums to 1 over keys.
        """
        q, k, _ = self._qkv(x)
        return self._attend(q, k)

    def _qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Project ``x`` (B, C, H, W) to queries, keys and values, each of shape (B, heads, head_dim, H*W)."""
        b = x.shape[0]
        q, k, v = self.qkv(x).view(b, 3, self.heads, self.head_dim, -1).unbind(1)
        return q, k, v

    def _attend(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """Return softmax over keys of the scaled query-key products, shape (B, heads, N, N)."""
        return (q.transpose(-2, -1) @ k * self.scale).softmax(-1)

    def _tokens(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Project ``x`` (B, C, H, W) to queries, keys and values, each contiguous (B, heads, H*W, head_dim)."""
        qkv = self.qkv(x).view(x.shape[0], 3, self.heads, self.head_dim, -1).transpose(-2, -1).contiguous()
        q, k, v = qkv.unbind(1)
        return q, k, v

    def forward_plain(self, x: torch.Tensor) -> torch.Tensor:
        """Plain formulation (benchmarks): explicit products ``v @ softmax(q^T k * scale)^T``; (B, C, H, W) -> same."""
        q, k, v = self.qkv(x).view(x.shape[0], 3, self.heads, self.head_dim, -1).unbind(1)
        attention = (q.transpose(-2, -1) @ k * self.scale).softmax(-1)
        return x + self.proj((v @ attention.transpose(-2, -1)).reshape(x.shape))

    def attention_map(self, x: torch.Tensor, output: torch.Tensor) -> tuple[torch.Tensor, str]:
        """Return the attention each position receives (B, H, W), averaged over heads and queries."""
        b, _, h, w = x.shape
        received = self.attention_weights(x).mean((1, 2))  # (B, N): mean over heads, then over query rows
        return received.view(b, h, w), "attention received (mean over heads, queries)"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Add multi-head self-attention to ``x``.

        Args:
            x (torch.Tensor): Input of shape (B, C, H, W).

        Returns:
            (torch.Tensor): Output of shape (B, C, H, W).
        """
        q, k, v = self._tokens(x)
        if torch.onnx.is_in_onnx_export():  # explicit products: the SDPA export needs opset 14 and gains nothing
            out = ((q * self.scale) @ k.transpose(-2, -1)).softmax(-1) @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v, scale=self.scale)  # (B, heads, N, head_dim)
        return x + self.proj(out.transpose(-2, -1).reshape(x.shape))


@register_block(bench_levels=("P3", "P4", "P5"))
class SeparableSelfAttention(AttentionBlock):
    """Separable self-attention of MobileViTv2: linear in the number of positions, as a pre-norm residual block.

    Paper: Mehta, Rastegari, "Separable Self-attention for Mobile Vision Transformers", TMLR 2023 (reference code:
    apple/ml-cvnets, ``cvnets/layers/linear_attention.py`` ``LinearSelfAttention`` inside ``LinearAttnFFN``). A 1x1
    conv projects the input to one context-score map ``q`` and to keys ``k`` and values ``v`` (C each):

    ``s = softmax(q)`` over the positions, ``context = sum_n s_n k_n`` (one C-vector per image),
    ``out = x + W_O(relu(v) * context)``, computed on ``GroupNorm(1, C)(x)`` (the reference's ``layer_norm_2d``).

    Every pixel is a token: MobileViTv2 unfolds the map into 2x2 patches and attends among patches separately for each
    pixel offset; here the patch is 1x1, so the block needs no unfolding and accepts any H and W. Attention dropout
    (0 in the reference default) is omitted.

    YAML: ``[-1, 1, SeparableSelfAttention, []]``; input channels are inferred.

    Attributes:
        norm (nn.GroupNorm): Pre-normalisation over (C, H, W) per image.
        qkv (nn.Conv2d): 1x1 conv C -> 1 + 2C producing context scores, keys and values.
        proj (nn.Conv2d): 1x1 output projection C -> C, zero-initialised.
        zero_output (str): ``"proj"``: `start_as_identity` zeroes it (the block has no identity mix).

    Examples:
        >>> ssa = SeparableSelfAttention(64)
        >>> ssa(torch.randn(2, 64, 20, 24)).shape
        torch.Size([2, 64, 20, 24])
    """

    zero_output = "proj"

    def __init__(self, c1: int) -> None:
        """Initialize separable self-attention.

        Args:
            c1 (int): Input (and output) channels C.
        """
        super().__init__()
        self.c = check_channels("SeparableSelfAttention", c1)
        self.norm = nn.GroupNorm(1, c1)
        self.qkv = nn.Conv2d(c1, 1 + 2 * c1, 1)
        self.proj = nn.Conv2d(c1, c1, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def context_scores(self, x: torch.Tensor) -> torch.Tensor:
        """Compute the context scores, how much each position contributes to the context vector.

        Args:
            x (torch.Tensor): Input of shape (B, C, H, W).

        Returns:
            (torch.Tensor): Scores of shape (B, 1, H, W), summing to 1 over H and W.
        """
        q = self.qkv(self.norm(x))[:, :1]
        return q.flatten(2).softmax(-1).view_as(q)

    def forward_plain(self, x: torch.Tensor) -> torch.Tensor:
        """Plain formulation (benchmarks): the context vector as an element-wise product and a sum."""
        q, k, v = self.qkv(self.norm(x)).split((1, self.c, self.c), 1)
        scores = q.flatten(2).softmax(-1)
        context = (k.flatten(2) * scores).sum(-1, keepdim=True).unsqueeze(-1)
        return x + self.proj(F.relu(v) * context)

    def attention_map(self, x: torch.Tensor, output: torch.Tensor) -> tuple[torch.Tensor, str]:
        """Return the context scores (B, H, W), and what they are."""
        return self.context_scores(x)[:, 0], "context scores"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Add separable self-attention to ``x``.

        Args:
            x (torch.Tensor): Input of shape (B, C, H, W).

        Returns:
            (torch.Tensor): Output of shape (B, C, H, W).
        """
        q, k, v = self.qkv(self.norm(x)).split((1, self.c, self.c), 1)
        scores = q.flatten(2).softmax(-1)  # (B, 1, N)
        context = (k.flatten(2) * scores).sum(-1, keepdim=True).unsqueeze(-1)  # (B, C, 1, 1)
        return x + self.proj(F.relu(v) * context)
