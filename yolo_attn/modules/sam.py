"""SAM: the point-wise spatial attention module of YOLOv4 (Darknet ``[sam]``, the "modified SAM")."""

from __future__ import annotations

import torch
from torch import nn

from yolo_attn.modules.arg_checks import check_channels
from yolo_attn.modules.fusion import fold_batchnorm
from yolo_attn.modules.identity_start import AttentionBlock
from yolo_attn.registry import register_block


@register_block(bench_levels=("P3", "P4", "P5"))
class SAM(AttentionBlock):
    """Point-wise spatial attention: one gate per element from a 1x1 convolution, as in YOLOv4.

    Paper: Bochkovskiy, Wang, Liao, "YOLOv4: Optimal Speed and Accuracy of Object Detection", 2020, Fig. 6 ("modified
    SAM": from spatial-wise to point-wise attention, no pooling). In Darknet it is a ``[convolutional]`` layer with
    ``batch_normalize=1, size=1, activation=logistic`` whose output a ``[sam]`` layer multiplies element-wise with the
    input: ``out = x * sigmoid(BN(conv1x1(x)))``. The convolution has no bias, as Darknet's does under BatchNorm.

    YAML: ``[-1, 1, SAM, []]``; input channels are inferred.

    Initialisation: the BatchNorm weight and bias start at zero (as CBAM's reference code does for its spatial gate),
    so a fresh gate is exactly 0.5 everywhere.

    Inference: `fuse` folds the BatchNorm into the convolution (Ultralytics' ``model.fuse()`` calls it), leaving
    three operations per forward: convolution, sigmoid, product.

    Attributes:
        conv (nn.Conv2d): C -> C 1x1 convolution, without bias until `fuse` folds the BatchNorm into it.
        bn (nn.Module): ``nn.BatchNorm2d`` over the C gate logits; ``nn.Identity`` after `fuse`.

    Examples:
        >>> sam = SAM(64)
        >>> sam(torch.randn(2, 64, 20, 20)).shape
        torch.Size([2, 64, 20, 20])
    """

    standard_sites = "positional"  # yolo_attn.cfg.sites: gated before SPPF, whose max-pools carry the gated responses

    def __init__(self, c1: int) -> None:
        """Initialize SAM.

        Args:
            c1 (int): Input (and output) channels C.
        """
        super().__init__()
        check_channels("SAM", c1)
        self.conv = nn.Conv2d(c1, c1, 1, bias=False)
        self.bn = nn.BatchNorm2d(c1)
        nn.init.zeros_(self.bn.weight)
        nn.init.zeros_(self.bn.bias)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """Compute the element-wise gate.

        Args:
            x (torch.Tensor): Input of shape (B, C, H, W).

        Returns:
            (torch.Tensor): Gate in (0, 1) of shape (B, C, H, W).
        """
        return self.bn(self.conv(x)).sigmoid()

    def fuse(self) -> SAM:
        """Fold the BatchNorm (running statistics) into the convolution, for inference. Idempotent.

        Returns:
            (SAM): This block, now computing ``x * sigmoid(conv(x))`` with the folded convolution.
        """
        if isinstance(self.bn, nn.BatchNorm2d):
            self.conv, self.bn = fold_batchnorm(self.conv, self.bn), nn.Identity()
        return self

    def forward_plain(self, x: torch.Tensor) -> torch.Tensor:
        """Plain formulation (benchmarks): 1x1 conv, BatchNorm, sigmoid, element-wise scale."""
        return x * self.bn(self.conv(x)).sigmoid()

    def attention_map(self, x: torch.Tensor, output: torch.Tensor) -> tuple[torch.Tensor, str]:
        """Return the point-wise gate averaged over channels (B, H, W), and what it is."""
        return self.gate(x).mean(1), "gate, mean over channels"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reweight every element of ``x``.

        Args:
            x (torch.Tensor): Input of shape (B, C, H, W).

        Returns:
            (torch.Tensor): Output of shape (B, C, H, W).
        """
        return self.gated(x, self.gate(x))
