"""LSK block: Large Selective Kernel attention of LSKNet (Li et al., ICCV 2023)."""

from __future__ import annotations

import torch
from torch import nn

from yolo_attn.modules.arg_checks import BlockArgumentError, check_channels
from yolo_attn.modules.identity_start import AttentionBlock
from yolo_attn.registry import register_block


@register_block(aliases=("LSKblock",))
class LSKBlock(AttentionBlock):
    """Large selective kernel block: two depthwise receptive fields, mixed per position by a spatial selection gate.

    Paper: Li, Hou, Wang, Li, Cheng, Yang, Li, "Large Selective Kernel Network for Remote Sensing Object Detection",
    ICCV 2023. Reference code: zcablii/LSKNet, class ``LSKblock`` in ``mmrotate/models/backbones/lsknet.py``, which this
    block follows layer for layer. Steps, for ``x`` of shape (B, C, H, W):

    1. ``a1 = conv0(x)``: depthwise 5x5; ``a2 = conv_spatial(a1)``: depthwise 7x7 with dilation 3 (receptive field 23);
    2. ``u1 = conv1(a1)``, ``u2 = conv2(a2)``: 1x1 convs C -> C/2;
    3. ``s = sigmoid(conv_squeeze([mean_c([u1, u2]), max_c([u1, u2])]))``: a 7x7 conv 2 -> 2 on the channel mean and
       max of the concatenated (B, C/2 * 2, H, W) maps, giving one selection mask per branch, (B, 2, H, W);
    4. ``attn = conv(u1 * s[:, 0] + u2 * s[:, 1])``: 1x1 conv C/2 -> C; ``out = x * attn``.

    All convs have bias. C/2 is ``C // 2`` as in the reference (so C >= 2). Every conv keeps H x W, so the block runs at
    any feature-map size. ``attn`` is unbounded (no sigmoid), as in the reference.

    YAML: ``[-1, 1, LSKBlock, []]`` (alias ``LSKblock``, the reference's class name); no args, as the reference.

    State dict: the reference module's keys and shapes (``conv0``, ``conv_spatial``, ``conv1``, ``conv2``,
    ``conv_squeeze``, ``conv``), so ``block.load_state_dict(reference.state_dict())`` works without remapping (plus
    ``identity_mix`` after `start_as_identity`).

    Departures from the reference: LSKNet wraps ``LSKblock`` in an ``Attention`` unit (1x1 proj, GELU, LSKblock, 1x1
    proj, residual); like the forks' zoos, this block is ``LSKblock`` alone, ``x * attn``. Initialisation: the last
    1x1 ``conv`` starts with weight 0 and bias 0.5, so a fresh block scales ``x`` uniformly by exactly 0.5, as the
    package's gates do (the reference's random init multiplies ``x`` by a random signed map); every parameter gets a
    gradient from the second step. The other convs keep PyTorch's defaults, as the reference.

    Cost, one row after yolov8n's SPPF (C=256, 20 x 20 at 640 px): 118,470 parameters (+3.8% of yolov8n), +0.094
    GFLOPs (Ultralytics ``get_flops``), mostly the three 1x1 convs.

    Attributes:
        conv0 (nn.Conv2d): Depthwise 5x5 conv.
        conv_spatial (nn.Conv2d): Depthwise 7x7 conv, dilation 3.
        conv1 (nn.Conv2d): 1x1 conv C -> C/2 on the small receptive field.
        conv2 (nn.Conv2d): 1x1 conv C -> C/2 on the large receptive field.
        conv_squeeze (nn.Conv2d): 7x7 conv 2 -> 2 giving the two selection masks.
        conv (nn.Conv2d): 1x1 conv C/2 -> C.

    Examples:
        >>> lsk = LSKBlock(64)
        >>> lsk(torch.randn(2, 64, 20, 24)).shape
        torch.Size([2, 64, 20, 24])
    """

    def __init__(self, c1: int) -> None:
        """Initialize the LSK block.

        Args:
            c1 (int): Input (and output) channels C, at least 2 (the branches have C // 2 channels).
        """
        super().__init__()
        check_channels("LSKBlock", c1)
        if c1 < 2:
            raise BlockArgumentError(f"LSKBlock: needs at least 2 input channels (branches of C // 2), got C={c1}")
        half = c1 // 2
        self.conv0 = nn.Conv2d(c1, c1, 5, padding=2, groups=c1)
        self.conv_spatial = nn.Conv2d(c1, c1, 7, padding=9, groups=c1, dilation=3)
        self.conv1 = nn.Conv2d(c1, half, 1)
        self.conv2 = nn.Conv2d(c1, half, 1)
        self.conv_squeeze = nn.Conv2d(2, 2, 7, padding=3)
        self.conv = nn.Conv2d(half, c1, 1)
        nn.init.zeros_(self.conv.weight)  # a fresh block scales x by exactly 0.5 (see the class docstring)
        nn.init.constant_(self.conv.bias, 0.5)

    def select(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Compute the two branches and their spatial selection masks.

        Args:
            x (torch.Tensor): Input of shape (B, C, H, W).

        Returns:
            u1 (torch.Tensor): Small-receptive-field branch, (B, C/2, H, W).
            u2 (torch.Tensor): Large-receptive-field branch, (B, C/2, H, W).
            masks (torch.Tensor): Selection masks in (0, 1), (B, 2, H, W): channel 0 for ``u1``, 1 for ``u2``.
        """
        a1 = self.conv0(x)
        u1, u2 = self.conv1(a1), self.conv2(self.conv_spatial(a1))
        both = torch.cat((u1, u2), 1)
        pooled = torch.cat((both.mean(1, keepdim=True), both.amax(1, keepdim=True)), 1)
        return u1, u2, self.conv_squeeze(pooled).sigmoid()

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """Compute the attention multiplier (B, C, H, W) for input ``x`` (B, C, H, W)."""
        u1, u2, masks = self.select(x)
        return self.conv(u1 * masks[:, :1] + u2 * masks[:, 1:])

    def attention_map(self, x: torch.Tensor, output: torch.Tensor) -> tuple[torch.Tensor, str]:
        """Return the spatial selection mask of the large-kernel branch (B, H, W), and what it is."""
        return self.select(x)[2][:, 1], "spatial selection mask of the large (dilated 7x7) kernel branch"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Multiply ``x`` by its selective-kernel attention.

        Args:
            x (torch.Tensor): Input of shape (B, C, H, W).

        Returns:
            (torch.Tensor): Output of shape (B, C, H, W).
        """
        return self.gated(x, self.attention(x))
