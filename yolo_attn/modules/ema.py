"""EMA: Efficient Multi-Scale Attention with cross-spatial learning (Ouyang et al., ICASSP 2023)."""

from __future__ import annotations

import torch
from torch import nn

from yolo_attn.modules.arg_checks import BlockArgumentError, check_channels, check_positive_int
from yolo_attn.modules.identity_start import AttentionBlock
from yolo_attn.registry import register_block


@register_block
class EMA(AttentionBlock):
    """Efficient Multi-Scale Attention: grouped 1x1 (coordinate) and 3x3 branches that attend to each other's positions.

    Paper: Ouyang, He, Zhang, Luo, Huang, Guo, "Efficient Multi-Scale Attention Module with Cross-Spatial Learning",
    ICASSP 2023. Reference code: YOLOonMe/EMA-attention-module (``EMA_attention_module``, class ``EMA``).

    The C channels are split into G = ``factor`` groups of ``C/G`` channels, each processed alike (shared weights)::

        g      = x viewed as (B*G, C/G, H, W)
        a_h    = sigmoid(conv1x1(mean_w(g)))      (B*G, C/G, H, 1)
        a_w    = sigmoid(conv1x1(mean_h(g)))      (B*G, C/G, 1, W)
        x1     = GroupNorm(g * a_h * a_w)         one group per channel
        x2     = conv3x3(g)
        w      = softmax_c(mean_hw(x1)) . x2 + softmax_c(mean_hw(x2)) . x1      (B*G, 1, H, W)
        out    = g * sigmoid(w), viewed back as (B, C, H, W)

    Shapes: (B, C, H, W) -> (B, C, H, W). Parameters: ``10 (C/G)^2 + 4 C/G``, 672 at C=256, G=32.

    YAML: ``[-1, 1, EMA, [factor]]``, all args optional (default 32, the official one); input channels are inferred.
    ``factor`` (the reference's name; ``self.groups`` there) is the number of groups G; it must divide C.

    State dict: the reference's keys and shapes (``gn``, ``conv1x1``, ``conv3x3``), so
    ``block.load_state_dict(reference.state_dict())`` works.

    Departures from the reference:
        - The group count is checked at build time: it must divide C (the reference asserts only ``C // G > 0``, so
          C=48, G=32 builds and then fails in the first forward's reshape). A bad size raises `BlockArgumentError`
          naming the constraint and the channels.
        - The reference's ``c2=None`` constructor argument (a placeholder for YOLO forks' output channels, unused) is
          not taken: channels are inferred, so ``factor`` is the first YAML arg.
        - Export-friendly operators, same numbers: the pools are means over H or W (not adaptive pooling), the shared
          1x1 convolution runs on the H- and W-descriptors separately instead of on their concatenation followed by a
          split (identical for a 1x1 convolution), and the cross-spatial products are batched matrix products.

    Identity start: the identity mix of `AttentionBlock`.

    Attributes:
        groups (int): Number of groups G (``factor``).
        gn (nn.GroupNorm): GroupNorm over C/G channels, one group per channel.
        conv1x1 (nn.Conv2d): Shared 1x1 convolution C/G -> C/G of the coordinate branch, with bias.
        conv3x3 (nn.Conv2d): 3x3 convolution C/G -> C/G of the local branch, with bias.

    Examples:
        >>> ema = EMA(256)
        >>> ema(torch.randn(2, 256, 20, 20)).shape
        torch.Size([2, 256, 20, 20])
    """

    def __init__(self, c1: int, factor: int = 32) -> None:
        """Initialize EMA.

        Args:
            c1 (int): Input (and output) channels C.
            factor (int): Number of groups G; must divide C (G=32 needs C in 32, 64, 96, ...).
        """
        super().__init__()
        check_channels("EMA", c1)
        check_positive_int("EMA", "factor", factor, "number of channel groups")
        if c1 % factor:
            raise BlockArgumentError(
                f"EMA: factor={factor} groups must divide the input channels, but {c1} channels do not split into "
                f"{factor} equal groups ({c1} % {factor} = {c1 % factor}); choose a factor that divides {c1}, e.g. "
                f"{max(d for d in range(1, min(factor, c1) + 1) if c1 % d == 0)}. Input channels are inferred, so pass "
                "a group count, not a channel count"
            )
        self.groups = factor
        cg = c1 // factor
        self.gn = nn.GroupNorm(cg, cg)
        self.conv1x1 = nn.Conv2d(cg, cg, kernel_size=1, stride=1, padding=0)
        self.conv3x3 = nn.Conv2d(cg, cg, kernel_size=3, stride=1, padding=1)

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """Compute the cross-spatial attention logits of each group.

        Args:
            x (torch.Tensor): Input of shape (B, C, H, W).

        Returns:
            (torch.Tensor): Logits ``w`` of shape (B*G, 1, H, W), before the sigmoid.
        """
        g = x.reshape(-1, self.conv1x1.in_channels, x.shape[2], x.shape[3])  # (B*G, C/G, H, W)
        a_h = self.conv1x1(g.mean(3, keepdim=True)).sigmoid()  # (B*G, C/G, H, 1)
        a_w = self.conv1x1(g.mean(2, keepdim=True)).sigmoid()  # (B*G, C/G, 1, W)
        x1 = self.gn(g * a_h * a_w)
        x2 = self.conv3x3(g)
        s1 = x1.mean((2, 3)).softmax(-1).unsqueeze(1)  # (B*G, 1, C/G)
        s2 = x2.mean((2, 3)).softmax(-1).unsqueeze(1)
        w = torch.bmm(s1, x2.flatten(2)) + torch.bmm(s2, x1.flatten(2))  # (B*G, 1, H*W)
        return w.reshape(g.shape[0], 1, g.shape[2], g.shape[3])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reweight every position of every group of ``x``.

        Args:
            x (torch.Tensor): Input of shape (B, C, H, W).

        Returns:
            (torch.Tensor): Output of shape (B, C, H, W).
        """
        g = x.reshape(-1, self.conv1x1.in_channels, x.shape[2], x.shape[3])
        return self.gated(g, self.weights(x).sigmoid()).reshape(x.shape)

    def attention_map(self, x: torch.Tensor, output: torch.Tensor) -> tuple[torch.Tensor, str]:
        """Return the spatial gate ``sigmoid(w)`` averaged over the groups (B, H, W), and what it is."""
        gate = self.weights(x).sigmoid()
        return gate.reshape(x.shape[0], self.groups, x.shape[2], x.shape[3]).mean(1), "spatial gate (group mean)"
