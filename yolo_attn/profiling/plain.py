"""Plain formulations of the blocks: the forward passes as first written, before the speed work of issue 9.

Each function computes what a block's ``forward`` computes, reading the block's own weights, in the straightforward
form (one operation per step of the formula, the shared MLP run once per descriptor, explicit attention products, the
BatchNorm applied after its convolution). The block micro-benchmark times the blocks against these functions in the
same run, and the tests check that the blocks still compute the same numbers. They run in eval mode (running
BatchNorm statistics) and on unfused blocks; a fused block has no BatchNorm left and is compared through a copy made
before fusing.
"""

from __future__ import annotations

import copy
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
    return plain_forward(block.spatial_attention, plain_forward(block.channel_attention, x))


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


def plain_function(block: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """Return the plain formulation of ``block`` as a function of the input alone.

    A block with a ``blend(x, out)`` method (a block that can start as the identity) has its plain output passed
    through it, as its own forward does.

    Args:
        block (nn.Module): One of the channel-preserving blocks (or a subclass of one).

    Returns:
        (Callable[[torch.Tensor], torch.Tensor]): ``x (B, C, H, W) -> out (B, C, H, W)``.
    """
    plain = next((PLAIN[cls] for cls in type(block).__mro__ if cls in PLAIN), None)
    if plain is None:
        known = [c.__name__ for c in PLAIN]
        raise TypeError(f"no plain formulation for {type(block).__name__}; expected one of {known}")
    blend = getattr(block, "blend", None)
    if callable(blend):
        return lambda x: blend(x, plain(block, x))
    return lambda x: plain(block, x)


def plain_forward(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Run the plain formulation of ``block`` on ``x`` (see `plain_function`).

    Args:
        block (nn.Module): One of the channel-preserving blocks (or a subclass of one).
        x (torch.Tensor): Input of shape (B, C, H, W).

    Returns:
        (torch.Tensor): What the block computes, of shape (B, C, H, W).
    """
    return plain_function(block)(x)


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
        self._plain = plain_function(block)  # resolved once: a benchmark should time the formulation, not the lookup

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``plain_forward(self.block, x)`` for ``x`` of shape (B, C, H, W)."""
        return self._plain(x)


class _HiddenPlain(nn.Module):
    """Run a block's plain formulation while hiding the block from module walks (``fuse()`` finds nothing to fold).

    Keeps Ultralytics' layer attributes (``i``, ``f``, ``type``, ``np``) so the wrapper can stand in a model's layer
    list. Meant for timing and exporting the pre-issue-9 graph of a whole model in eval mode on CPU only.
    """

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        object.__setattr__(self, "hidden", block.requires_grad_(False))  # not a registered submodule: an ONNX trace
        # embeds its weights as constants, which needs them to be free of autograd
        for key in ("i", "f", "type", "np"):
            if hasattr(block, key):
                setattr(self, key, getattr(block, key))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``plain_forward(block, x)`` for ``x`` of shape (B, C, H, W)."""
        return plain_forward(self.hidden, x)


def plain_model(model: nn.Module) -> nn.Module:
    """Return an eval-mode copy of ``model`` whose yolo_attn blocks run their plain, unfusable formulation.

    This is the model as it ran before issue 9: every block's forward as first written, and its BatchNorms left in
    place by ``model.fuse()`` (which folds only Ultralytics' own layers in the copy). For benchmarks only.

    Args:
        model (nn.Module): A model (e.g. an Ultralytics ``DetectionModel``) holding yolo_attn blocks.

    Returns:
        (nn.Module): The copy; ``model`` is left untouched.
    """
    model = copy.deepcopy(model).eval()
    _hide_blocks(model)
    return model


def _hide_blocks(module: nn.Module) -> None:
    """Replace, in place and at any depth, each outermost block with a plain formulation by a `_HiddenPlain`."""
    for name, child in module.named_children():
        if any(cls in PLAIN for cls in type(child).__mro__):
            setattr(module, name, _HiddenPlain(child))
        else:
            _hide_blocks(child)
