"""Effective Squeeze-and-Excitation (eSE) of VoVNetV2 / CenterMask (Lee & Park, CVPR 2020)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from yolo_attn.modules.arg_checks import check_bool, check_channels
from yolo_attn.modules.fusion import pointwise
from yolo_attn.modules.identity_start import AttentionBlock
from yolo_attn.registry import register_block


@register_block(aliases=("ESE", "EffectiveSEModule"))
class EffectiveSE(AttentionBlock):
    """Effective Squeeze-and-Excitation: SE with one full C -> C layer (no reduction) and a hard-sigmoid gate.

    Paper: Lee, Park, "CenterMask: Real-Time Anchor-Free Instance Segmentation", CVPR 2020 (VoVNetV2's eSE). Reference
    code: youngwanLEE/CenterMask (``maskrcnn_benchmark/modeling/backbone/vovnet.py``, ``eSEModule``) and timm
    ``timm.layers.squeeze_excite.EffectiveSEModule``, which this block follows (its ``add_maxpool`` switch included).

    ``out = x * hsigmoid(W avgpool(x) + b)`` with ``W: C -> C`` and ``hsigmoid(z) = relu6(z + 3) / 6``. With
    ``add_maxpool=True`` (timm's experimental path) the descriptor is ``0.5 * avgpool(x) + 0.5 * maxpool(x)``.
    The SE paper's two reduced layers (C -> C/r -> C) become one, so no channel information is lost in a bottleneck.

    Shapes: (B, C, H, W) -> (B, C, H, W); the gate is (B, C, 1, 1). Global pooling is a plain mean / amax over H and W
    (ONNX ReduceMean / ReduceMax at any input size); the 1x1 convolution runs on the pooled (B, C) vector as a product
    (`pointwise`). Cost: C^2 + C parameters, 65,792 at yolov8n's P5 (C=256).

    YAML: ``[-1, 1, EffectiveSE, [add_maxpool]]`` (aliases ``ESE``, ``EffectiveSEModule``), all args optional;
    input channels are inferred.

    State dict: ``fc.weight`` (C, C, 1, 1) and ``fc.bias`` (C,), the keys and shapes of both references, so
    ``load_state_dict(reference.state_dict())`` works either way.

    Departures from the reference: ``fc`` starts at zero (weight and bias), so a fresh gate is exactly
    ``hsigmoid(0) = 0.5`` for every channel (as `SE` does; the references use PyTorch's default initialisation), which
    keeps a pretrained signal's relative sizes. The formula is the reference's.

    Attributes:
        add_maxpool (bool): Whether the descriptor averages the global average and the global max.
        fc (nn.Conv2d): The C -> C 1x1 convolution with bias.

    Examples:
        >>> ese = EffectiveSE(64)
        >>> ese(torch.randn(2, 64, 20, 20)).shape
        torch.Size([2, 64, 20, 20])
    """

    def __init__(self, c1: int, add_maxpool: bool = False) -> None:
        """Initialize the eSE block.

        Args:
            c1 (int): Input (and output) channels C.
            add_maxpool (bool): Average the global max with the global average in the descriptor (timm's switch).
        """
        super().__init__()
        check_channels("EffectiveSE", c1)
        self.add_maxpool = check_bool("EffectiveSE", "add_maxpool", add_maxpool)
        self.fc = nn.Conv2d(c1, c1, 1)
        nn.init.zeros_(self.fc.weight)
        nn.init.zeros_(self.fc.bias)

    def _descriptor(self, x: torch.Tensor, keepdim: bool) -> torch.Tensor:
        d = x.mean((2, 3), keepdim=keepdim)
        if self.add_maxpool:
            d = 0.5 * d + 0.5 * x.amax((2, 3), keepdim=keepdim)
        return d

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """Compute the channel gate.

        Args:
            x (torch.Tensor): Input of shape (B, C, H, W).

        Returns:
            (torch.Tensor): Gate in [0, 1] of shape (B, C, 1, 1).
        """
        return F.hardsigmoid(pointwise(self.fc.weight, self.fc.bias, self._descriptor(x, False)))[:, :, None, None]

    def forward_plain(self, x: torch.Tensor) -> torch.Tensor:
        """Plain formulation (benchmarks): pool, 1x1 conv, hard sigmoid, scale; (B, C, H, W) -> same."""
        return x * F.hardsigmoid(self.fc(self._descriptor(x, True)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reweight the channels of ``x``.

        Args:
            x (torch.Tensor): Input of shape (B, C, H, W).

        Returns:
            (torch.Tensor): Output of shape (B, C, H, W).
        """
        return self.gated(x, self.gate(x))
