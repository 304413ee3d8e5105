"""CPCA: Channel Prior Convolutional Attention (Huang et al., 2023), the RepBlock of CPCANet."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from yolo_attn.modules.arg_checks import BlockArgumentError, check_channels, check_positive_int
from yolo_attn.modules.identity_start import AttentionBlock
from yolo_attn.registry import register_block

# (name, kernel (kh, kw)) of the depthwise convolutions, in the reference's order
_DEPTHWISE = (
    ("dconv5_5", (5, 5)),
    ("dconv1_7", (1, 7)),
    ("dconv7_1", (7, 1)),
    ("dconv1_11", (1, 11)),
    ("dconv11_1", (11, 1)),
    ("dconv1_21", (1, 21)),
    ("dconv21_1", (21, 1)),
)


class CPCAChannelAttention(nn.Module):
    """CPCA's channel prior: ``sigmoid(MLP(avgpool(x))) + sigmoid(MLP(maxpool(x)))``, a (B, C, 1, 1) vector in (0, 2).

    The shared MLP is ``fc1`` (C -> C_h, bias), ReLU, ``fc2`` (C_h -> C, bias), the reference ``ChannelAttention``'s
    layers and keys. Unlike CBAM's channel gate, each descriptor is squashed by its own sigmoid before the sum.
    """

    def __init__(self, c: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(c, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> channel prior (B, C, 1, 1)."""
        avg = self.fc2(F.relu(self.fc1(x.mean((2, 3), keepdim=True)))).sigmoid()
        peak = self.fc2(F.relu(self.fc1(x.amax((2, 3), keepdim=True)))).sigmoid()
        return avg + peak


@register_block
class CPCA(AttentionBlock):
    """Channel Prior Convolutional Attention: a channel prior, then multi-scale depthwise strip convolutions.

    Paper: Huang, Chen, Li, Zhu, Zhou, "Channel prior convolutional attention for medical image segmentation", 2023
    (arXiv 2306.05196). Reference code: Cuthbert-Huang/CPCANet (``nnunet/network_architecture/CPCANet.py``,
    ``RepBlock`` with its ``ChannelAttention``), the module the forks copy as ``CPCA``.

    With ``P`` the shared 1x1 convolution ``conv`` (C -> C, bias; the reference applies the same layer three times)::

        u = GELU(P(x))
        f = CA(u) * u                                   # channel prior, CA in (0, 2)
        d = dw5x5(f)
        s = d + dw7x1(dw1x7(d)) + dw11x1(dw1x11(d)) + dw21x1(dw1x21(d))
        out = P(P(s) * f)                               # spatial attention P(s) times the channel prior

    All depthwise convolutions have bias and 'same' padding. Shapes: (B, C, H, W) -> (B, C, H, W) at any H and W
    (the strips are zero-padded, so a 21-tap kernel works on a smaller map); pooling is a plain mean / amax.

    YAML: ``[-1, 1, CPCA, [channelAttention_reduce]]``, optional (default 4, the reference's); input channels are
    inferred. The channel prior's hidden width is ``C // channelAttention_reduce``, which must be at least 1.

    State dict: the reference ``RepBlock``'s keys and shapes (``ca.fc1``, ``ca.fc2``, ``dconv5_5`` ...
    ``dconv21_1``, ``conv``), so ``load_state_dict(reference.state_dict())`` works either way.
    Cost at yolov8n's P5 (C=256): 127,040 parameters (65,792 of them in ``conv``).

    Departures from the reference: none in the formula; global pooling is a mean / amax instead of
    ``adaptive_*_pool2d`` (the same numbers, exported as ReduceMean / ReduceMax), the reference's in-place ReLU is
    out-of-place, and initialisation is PyTorch's default (the reference's nnU-Net wrapper re-initialises
    convolutions He-normal for the whole network). A fresh CPCA is not a gate (it mixes channels through ``conv``), so
    inserted into a pretrained network it starts as the identity through the identity mix.

    Attributes:
        ca (CPCAChannelAttention): The channel prior.
        dconv5_5, dconv1_7, dconv7_1, dconv1_11, dconv11_1, dconv1_21, dconv21_1 (nn.Conv2d): Depthwise convolutions.
        conv (nn.Conv2d): The shared 1x1 convolution.
        act (nn.GELU): Activation after the first ``conv``.

    Examples:
        >>> cpca = CPCA(64)
        >>> cpca(torch.randn(2, 64, 20, 20)).shape
        torch.Size([2, 64, 20, 20])
    """

    def __init__(self, c1: int, channelAttention_reduce: int = 4) -> None:
        """Initialize CPCA.

        Args:
            c1 (int): Input (and output) channels C.
            channelAttention_reduce (int): Reduction of the channel prior's MLP; hidden width ``C // reduce``.
        """
        super().__init__()
        check_channels("CPCA", c1)
        r = check_positive_int("CPCA", "channelAttention_reduce", channelAttention_reduce, "channel prior reduction")
        if c1 // r < 1:
            raise BlockArgumentError(
                f"CPCA: channelAttention_reduce={r} leaves no hidden channel for {c1} input channels ({c1} // {r} = 0);"
                f" expected 1 <= channelAttention_reduce <= {c1}. Input channels are inferred, so pass a ratio such "
                "as 4, not a channel count"
            )
        self.ca = CPCAChannelAttention(c1, c1 // r)
        for name, (kh, kw) in _DEPTHWISE:
            setattr(self, name, nn.Conv2d(c1, c1, (kh, kw), padding=(kh // 2, kw // 2), groups=c1))
        self.conv = nn.Conv2d(c1, c1, 1)
        self.act = nn.GELU()

    def _parts(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the channel-prior features ``f`` and the spatial attention ``P(s)``, both (B, C, H, W)."""
        u = self.act(self.conv(x))
        f = self.ca(u) * u
        d = self.dconv5_5(f)
        s = d + self.dconv7_1(self.dconv1_7(d)) + self.dconv11_1(self.dconv1_11(d)) + self.dconv21_1(self.dconv1_21(d))
        return f, self.conv(s)

    def forward_plain(self, x: torch.Tensor) -> torch.Tensor:
        """Plain formulation (benchmarks): the reference's sequence of layers; (B, C, H, W) -> same."""
        f, spatial = self._parts(x)
        return self.conv(spatial * f)

    def attention_map(self, x: torch.Tensor, output: torch.Tensor) -> tuple[torch.Tensor, str]:
        """Return the spatial attention ``P(s)`` averaged over channels (B, H, W), and what it is."""
        return self._parts(x)[1].mean(1), "spatial attention (channel mean)"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the channel prior, then the multi-scale spatial attention.

        Args:
            x (torch.Tensor): Input of shape (B, C, H, W).

        Returns:
            (torch.Tensor): Output of shape (B, C, H, W).
        """
        f, spatial = self._parts(x)
        return self.blend(x, self.conv(spatial * f))
