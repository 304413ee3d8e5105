"""Shuffle Attention (Zhang & Yang, ICASSP 2021, SA-Net): grouped channel and spatial gates, then a channel shuffle."""

from __future__ import annotations

import torch
from torch import nn

from yolo_attn.modules.arg_checks import BlockArgumentError, check_channels, check_positive_int
from yolo_attn.modules.identity_start import AttentionBlock
from yolo_attn.registry import register_block


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave ``groups`` equal channel blocks of ``x`` (ShuffleNet's shuffle): (B, C, H, W) -> same shape.

    Args:
        x (torch.Tensor): Input of shape (B, C, H, W), C divisible by ``groups``.
        groups (int): Number of channel blocks.

    Returns:
        (torch.Tensor): Output of shape (B, C, H, W); channel ``j * groups + g`` is input channel ``g * C/groups + j``.
    """
    b, _, h, w = x.shape
    return x.reshape(b, groups, -1, h, w).transpose(1, 2).reshape(b, -1, h, w)


@register_block
class ShuffleAttention(AttentionBlock):
    """Shuffle Attention: in each of G channel groups, a channel gate on one half and a spatial gate on the other.

    Paper: Zhang, Yang, "SA-Net: Shuffle Attention for Deep Convolutional Neural Networks", ICASSP 2021. Reference code:
    wofmanaf/SA-Net, ``models/sa_resnet.py`` ``sa_layer`` (read, not copied). With ``x`` split into G groups of C/G
    channels (folded into the batch, ``(B*G, C/G, H, W)``) and each group into halves ``x0, x1`` of C/(2G) channels::

        x0' = x0 * sigmoid(cweight * mean_hw(x0) + cbias)          channel gate (one scale per channel)
        x1' = x1 * sigmoid(sweight * GN(x1) + sbias)               spatial gate (one scale per element)
        out = channel_shuffle(cat(x0', x1') regrouped to (B, C, H, W), 2)

    ``GN`` is a GroupNorm with one group per channel (C/(2G) groups of one channel), so it normalises each channel of
    each sub-feature over H x W. ``cweight, cbias, sweight, sbias`` have shape (1, C/(2G), 1, 1) and are shared by the
    G groups. The shuffle interleaves the two halves of the C channels, so information crosses the groups.

    Shapes: (B, C, H, W) -> (B, C, H, W). Cost: ``3C/G`` parameters (96 at yolov8n's P5, C=256).

    YAML: ``[-1, 1, ShuffleAttention, [G]]``, all args optional; input channels are inferred. ``G`` (default 8) is the
    reference's ``groups``: the number of channel groups. C must be divisible by 2G; that is checked when the model is
    built (a `BlockArgumentError`, reported by the integration as a YAML row error naming the layer), never at run
    time, and the message names the values of G that would fit.

    Departures from the reference:
        - Default ``G=8``, not the reference's ``groups=64`` (its ResNet setting): at 64, C must be a multiple of
          128, which yolov8n's P3 (64 channels) is not; 2G = 16 divides every P3-P5 width of YOLOv8, YOLO11 and YOLO26
          at every scale, and 8 is what the forks' copies use.
        - Global average pooling is ``mean`` over H and W (the reference: ``AdaptiveAvgPool2d(1)``), the same numbers,
          exported as ReduceMean at any input size.
        - The divisibility of C by 2G is checked at build time (the fork copies crash in ``reshape``).

    Initialisation: the reference's (``cweight = sweight = 0``, ``cbias = sbias = 1``): a fresh block scales every
    element by ``sigmoid(1)``, then shuffles the channels. Because of that shuffle a fresh block is not a uniform scale
    of its input; in a pretrained network use the identity start (``identity_mix``).

    State dict: the reference's keys and shapes (``cweight``, ``cbias``, ``sweight``, ``sbias``, ``gn.weight``,
    ``gn.bias``), so ``block.load_state_dict(sa_layer(C, G).state_dict())`` works as is.

    Attributes:
        groups (int): G.
        cweight (nn.Parameter): Channel-gate scale, (1, C/(2G), 1, 1); ``cbias`` its shift.
        sweight (nn.Parameter): Spatial-gate scale, (1, C/(2G), 1, 1); ``sbias`` its shift.
        gn (nn.GroupNorm): Per-channel normalisation of the spatial half, C/(2G) groups of one channel.

    Examples:
        >>> sa = ShuffleAttention(64)
        >>> sa(torch.randn(2, 64, 20, 20)).shape
        torch.Size([2, 64, 20, 20])
    """

    def __init__(self, c1: int, G: int = 8) -> None:
        """Initialize Shuffle Attention.

        Args:
            c1 (int): Input (and output) channels C, divisible by 2G.
            G (int): Number of channel groups (the reference's ``groups``).
        """
        super().__init__()
        check_channels("ShuffleAttention", c1)
        check_positive_int("ShuffleAttention", "G", G, "number of channel groups")
        if c1 % (2 * G):
            fitting = [g for g in range(1, c1 // 2 + 1) if c1 % (2 * g) == 0]
            hint = f"G in {fitting}" if fitting else f"none: {c1} is odd"
            raise BlockArgumentError(
                f"ShuffleAttention: the {c1} input channels must be divisible by 2G = {2 * G} (G={G} groups, each "
                f"split into a channel half and a spatial half); values of G that fit {c1} channels: {hint}"
            )
        self.groups = G
        half = c1 // (2 * G)
        self.cweight = nn.Parameter(torch.zeros(1, half, 1, 1))
        self.cbias = nn.Parameter(torch.ones(1, half, 1, 1))
        self.sweight = nn.Parameter(torch.zeros(1, half, 1, 1))
        self.sbias = nn.Parameter(torch.ones(1, half, 1, 1))
        self.gn = nn.GroupNorm(half, half)

    def _halves(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Split ``x`` (B, C, H, W) into the channel and spatial halves of its groups, each (B*G, C/(2G), H, W)."""
        b, _, h, w = x.shape
        return x.reshape(b * self.groups, -1, h, w).chunk(2, 1)

    def spatial_gate(self, x: torch.Tensor) -> torch.Tensor:
        """Return the spatial half's gate ``sigmoid(sweight * GN(x1) + sbias)`` of shape (B*G, C/(2G), H, W)."""
        return (self.sweight * self.gn(self._halves(x)[1]) + self.sbias).sigmoid()

    def attention_map(self, x: torch.Tensor, output: torch.Tensor) -> tuple[torch.Tensor, str]:
        """Return the spatial half's gate averaged over its channels and groups (B, H, W), and what it is."""
        gate = self.spatial_gate(x)
        return gate.reshape(x.shape[0], -1, *gate.shape[2:]).mean(1), "spatial-half gate, mean over channels"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Gate each group's halves by channel and by position, then shuffle the channels.

        Args:
            x (torch.Tensor): Input of shape (B, C, H, W).

        Returns:
            (torch.Tensor): Output of shape (B, C, H, W).
        """
        x0, x1 = self._halves(x)
        channel = x0 * (self.cweight * x0.mean((2, 3), keepdim=True) + self.cbias).sigmoid()
        spatial = x1 * (self.sweight * self.gn(x1) + self.sbias).sigmoid()
        out = torch.cat((channel, spatial), 1).reshape(x.shape)
        return self.blend(x, channel_shuffle(out, 2))
