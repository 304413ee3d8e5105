"""Plain formulations of the blocks: the forward passes as first written, before the speed work of issue 9.

Each function computes what a block's ``forward`` computes, reading the block's own weights, in the straightforward
form (one operation per step of the formula, the shared MLP run once per descriptor, explicit attention products, the
BatchNorm applied after its convolution). The block micro-benchmark times the blocks against these functions in the
same run, and the tests check that the blocks still compute the same numbers. They run in eval mode (running
BatchNorm statistics) and on unfused blocks; a fused block has no BatchNorm left and is compared through a copy made
before fusing.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from yolo_attn.modules import (
    CBAM,
    ECA,
    MHSA,
    SAM,
    SE,
    ChannelAttention,
    CoordAtt,
    SeparableSelfAttention,
    SpatialAttention,
)


def plain_se(block: SE, x: torch.Tensor) -> torch.Tensor:
    """SE: average pool, FC, ReLU, FC, sigmoid, scale."""
    return x * block.fc2(block.act(block.fc1(x.mean((2, 3), keepdim=True)))).sigmoid()


def plain_channel_attention(block: ChannelAttention, x: torch.Tensor) -> torch.Tensor:
    """CBAM channel gate with the shared MLP run twice, once per descriptor."""
    return x * (block.mlp(x.mean((2, 3), keepdim=True)) + block.mlp(x.amax((2, 3), keepdim=True))).sigmoid()


def plain_spatial_attention(block: SpatialAttention, x: torch.Tensor) -> torch.Tensor:
    """CBAM spatial gate: channel [max, mean] (or mean), conv, BatchNorm (if any), sigmoid, scale."""
    mean = x.mean(1, keepdim=True)
    pooled = torch.cat((x.amax(1, keepdim=True), mean), 1) if block.pool == "max_mean" else mean
    return x * block.bn(block.conv(pooled)).sigmoid()


def plain_cbam(block: CBAM, x: torch.Tensor) -> torch.Tensor:
    """CBAM: plain channel gate, then plain spatial gate."""
    return plain_spatial_attention(block.spatial_attention, plain_channel_attention(block.channel_attention, x))


def plain_eca(block: ECA, x: torch.Tensor) -> torch.Tensor:
    """ECA: average pool, 1-D conv across channels, sigmoid, scale."""
    return x * block.conv(x.mean((2, 3)).unsqueeze(1)).transpose(1, 2).unsqueeze(-1).sigmoid()


def plain_sam(block: SAM, x: torch.Tensor) -> torch.Tensor:
    """SAM: 1x1 conv, BatchNorm, sigmoid, element-wise scale."""
    return x * block.bn(block.conv(x)).sigmoid()


def plain_coord_att(block: CoordAtt, x: torch.Tensor) -> torch.Tensor:
    """Coordinate attention: directional means, shared conv + BN + h_swish, split, two gates, two products."""
    h = x.shape[2]
    pooled = torch.cat((x.mean(3, keepdim=True), x.mean(2, keepdim=True).transpose(2, 3)), 2)
    y = block.act(block.bn1(block.conv1(pooled)))
    a_h = block.conv_h(y[:, :, :h]).sigmoid()
    a_w = block.conv_w(y[:, :, h:].transpose(2, 3)).sigmoid()
    return x * a_w * a_h


def plain_mhsa(block: MHSA, x: torch.Tensor) -> torch.Tensor:
    """MHSA with explicit products: ``v @ softmax(q^T k * scale)^T`` in the (B, heads, head_dim, N) layout."""
    q, k, v = block.qkv(x).view(x.shape[0], 3, block.heads, block.head_dim, -1).unbind(1)
    attention = (q.transpose(-2, -1) @ k * block.scale).softmax(-1)
    return x + block.proj((v @ attention.transpose(-2, -1)).reshape(x.shape))


def plain_separable(block: SeparableSelfAttention, x: torch.Tensor) -> torch.Tensor:
    """Separable self-attention with the context vector as an element-wise product and a sum."""
    q, k, v = block.qkv(block.norm(x)).split((1, block.c, block.c), 1)
    scores = q.flatten(2).softmax(-1)
    context = (k.flatten(2) * scores).sum(-1, keepdim=True).unsqueeze(-1)
    return x + block.proj(F.relu(v) * context)


#: Block class -> its plain formulation. Subclasses are looked up through their MRO (see `plain_forward`).
PLAIN: dict[type[nn.Module], Callable[[nn.Module, torch.Tensor], torch.Tensor]] = {
    SE: plain_se,
    ChannelAttention: plain_channel_attention,
    SpatialAttention: plain_spatial_attention,
    CBAM: plain_cbam,
    ECA: plain_eca,
    SAM: plain_sam,
    CoordAtt: plain_coord_att,
    MHSA: plain_mhsa,
    SeparableSelfAttention: plain_separable,
}


def plain_forward(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Run the plain formulation of ``block`` on ``x``.

    Args:
        block (nn.Module): One of the channel-preserving blocks (or a subclass of one).
        x (torch.Tensor): Input of shape (B, C, H, W).

    Returns:
        (torch.Tensor): What the block computes, of shape (B, C, H, W).
    """
    for cls in type(block).__mro__:
        if cls in PLAIN:
            return PLAIN[cls](block, x)
    raise TypeError(f"no plain formulation for {type(block).__name__}; expected one of {[c.__name__ for c in PLAIN]}")


class Plain(nn.Module):
    """Wrap a block so that its forward is the plain formulation (for benchmarks and exports of the old graph).

    Attributes:
        block (nn.Module): The wrapped block, whose weights are used.
    """

    def __init__(self, block: nn.Module) -> None:
        """Wrap ``block``.

        Args:
            block (nn.Module): A channel-preserving block with a plain formulation.
        """
        super().__init__()
        self.block = block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``plain_forward(self.block, x)`` for ``x`` of shape (B, C, H, W)."""
        return plain_forward(self.block, x)
