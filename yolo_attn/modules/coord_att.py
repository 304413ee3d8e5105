"""Coordinate attention (Hou, Zhou, Feng, CVPR 2021)."""

from __future__ import annotations

import torch
from torch import nn

from yolo_attn.modules.arg_checks import check_channels, check_positive_int
from yolo_attn.modules.fusion import fold_batchnorm, positionwise
from yolo_attn.modules.identity_start import AttentionBlock
from yolo_attn.registry import register_block

MIN_HIDDEN = 8  # the reference code's floor on the hidden width: mip = max(8, C // r)


@register_block(bench_levels=("P3", "P4", "P5"))
class CoordAtt(AttentionBlock):
    """Coordinate attention: channel attention factorised along height and along width, keeping position.

    Paper: Hou, Zhou, Feng, "Coordinate Attention for Efficient Mobile Network Design", CVPR 2021 (reference code:
    houqb/CoordAttention, ``coordatt.py``). Steps:

    1. average-pool along W to ``(B, C, H, 1)`` and along H to ``(B, C, W, 1)``, concatenate to ``(B, C, H+W, 1)``;
    2. a shared 1x1 conv C -> mip (``mip = max(8, C // r)``) + BatchNorm + h_swish on the concatenation;
    3. split back into the H part and the W part, a 1x1 conv mip -> C + sigmoid on each, giving ``a_h (B, C, H, 1)``
       and ``a_w (B, C, 1, W)``;
    4. ``out = x * a_h * a_w``.

    The concatenation in step 2 matters in training: BatchNorm takes its statistics over both directions together.
    Pooling is a plain mean (ONNX ReduceMean) and the split is a slice at H, so the block exports at any input size.
    h_swish is ``nn.Hardswish``, the same function ``x * relu6(x + 3) / 6``. The 1x1 convs are stored as convolutions
    and applied to the ``(B, C, H+W)`` strip as batched matrix products (`positionwise`): the same numbers, at a
    fraction of a convolution call's cost on CPU.

    YAML: ``[-1, 1, CoordAtt, [r]]``, all args optional; input channels are inferred.

    Inference: `fuse` folds ``bn1`` into ``conv1`` and stacks ``conv_h`` and ``conv_w`` into one conv mip -> 2C,
    applied with one sigmoid to the whole strip; each gate keeps its half (rows of ``conv_h`` at the H positions, of
    ``conv_w`` at the W positions). Ultralytics' ``model.fuse()`` calls it.

    Initialisation: ``conv_h`` and ``conv_w`` start at zero, so a fresh block gates every element by exactly
    0.5 * 0.5 = 0.25, a uniform scale that keeps every feature's relative size.

    Attributes:
        conv1 (nn.Conv2d): Shared 1x1 conv C -> mip, with bias as in the reference code.
        bn1 (nn.Module): ``nn.BatchNorm2d`` over the mip channels; ``nn.Identity`` after `fuse`.
        act (nn.Hardswish): h_swish.
        conv_h (nn.Conv2d): 1x1 conv mip -> C for the height gate.
        conv_w (nn.Conv2d): 1x1 conv mip -> C for the width gate.
        gates_weight (torch.Tensor): After `fuse` only: buffer of ``conv_h`` and ``conv_w`` stacked, (2C, mip), with
            ``gates_bias``.

    Examples:
        >>> ca = CoordAtt(64)
        >>> ca(torch.randn(2, 64, 20, 24)).shape
        torch.Size([2, 64, 20, 24])
    """

    standard_sites = "positional"  # yolo_attn.cfg.sites: a positional gate: before SPPF, whose max-pools blur where

    def __init__(self, c1: int, r: int = 32) -> None:
        """Initialize coordinate attention.

        Args:
            c1 (int): Input (and output) channels C.
            r (int): Reduction ratio; the hidden width is ``max(8, C // r)``.
        """
        super().__init__()
        check_channels("CoordAtt", c1)
        mip = max(MIN_HIDDEN, c1 // check_positive_int("CoordAtt", "r", r, "reduction ratio"))
        self.conv1 = nn.Conv2d(c1, mip, 1)
        self.bn1 = nn.BatchNorm2d(mip)
        self.act = nn.Hardswish()
        self.conv_h = nn.Conv2d(mip, c1, 1)
        self.conv_w = nn.Conv2d(mip, c1, 1)
        for conv in (self.conv_h, self.conv_w):
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)

    def directional_gates(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Compute the height gate and the width gate.

        Args:
            x (torch.Tensor): Input of shape (B, C, H, W).

        Returns:
            a_h (torch.Tensor): Height gate in (0, 1) of shape (B, C, H, 1).
            a_w (torch.Tensor): Width gate in (0, 1) of shape (B, C, 1, W).
        """
        c, h = x.shape[1], x.shape[2]
        pooled = torch.cat((x.mean(3), x.mean(2)), 2)  # (B, C, H+W)
        y = positionwise(self.conv1.weight, self.conv1.bias, pooled)  # (B, mip, H+W)
        y = self.act(self.bn1(y[..., None]))[..., 0]  # BatchNorm2d takes 4-D input
        stacked = getattr(self, "gates_weight", None)  # getattr: blocks unpickled from older checkpoints
        if stacked is None:
            a_h = positionwise(self.conv_h.weight, self.conv_h.bias, y[:, :, :h]).sigmoid()
            a_w = positionwise(self.conv_w.weight, self.conv_w.bias, y[:, :, h:]).sigmoid()
        else:
            both = positionwise(stacked, self.gates_bias, y).sigmoid()  # (B, 2C, H+W): each gate everywhere, half used
            a_h, a_w = both[:, :c, :h], both[:, c:, h:]
        return a_h[..., None], a_w[:, :, None]

    def fuse(self) -> CoordAtt:
        """Fold ``bn1`` (running statistics) into ``conv1`` and stack the two gate convs, for inference. Idempotent.

        The stacked weight and bias are buffers derived from the parameters, outside the state dict and the parameter
        count; like the folded BatchNorm, they do not follow later changes to the parameters.

        Returns:
            (CoordAtt): This block, now without BatchNorm and two operations fewer.
        """
        if isinstance(self.bn1, nn.BatchNorm2d):
            self.conv1, self.bn1 = fold_batchnorm(self.conv1, self.bn1), nn.Identity()
        if getattr(self, "gates_weight", None) is None:
            with torch.no_grad():
                weight = torch.cat((self.conv_h.weight.flatten(1), self.conv_w.weight.flatten(1)))
                self.register_buffer("gates_weight", weight, persistent=False)
                self.register_buffer("gates_bias", torch.cat((self.conv_h.bias, self.conv_w.bias)), persistent=False)
        return self

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """Compute the combined gate ``a_h * a_w``.

        Args:
            x (torch.Tensor): Input of shape (B, C, H, W).

        Returns:
            (torch.Tensor): Gate in (0, 1) of shape (B, C, H, W).
        """
        a_h, a_w = self.directional_gates(x)
        return a_h * a_w

    def forward_plain(self, x: torch.Tensor) -> torch.Tensor:
        """Plain formulation (benchmarks): directional means, shared conv + BN + h_swish, split, two gates."""
        h = x.shape[2]
        pooled = torch.cat((x.mean(3, keepdim=True), x.mean(2, keepdim=True).transpose(2, 3)), 2)
        y = self.act(self.bn1(self.conv1(pooled)))
        a_h = self.conv_h(y[:, :, :h]).sigmoid()
        a_w = self.conv_w(y[:, :, h:].transpose(2, 3)).sigmoid()
        return x * a_w * a_h

    def attention_map(self, x: torch.Tensor, output: torch.Tensor) -> tuple[torch.Tensor, str]:
        """Return ``a_h * a_w`` averaged over channels (B, H, W), and what it is."""
        a_h, a_w = self.directional_gates(x)
        return (a_h * a_w).mean(1), "a_h * a_w, mean over channels"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reweight ``x`` by its height gate and its width gate.

        Args:
            x (torch.Tensor): Input of shape (B, C, H, W).

        Returns:
            (torch.Tensor): Output of shape (B, C, H, W).
        """
        a_h, a_w = self.directional_gates(x)
        return self.gated(x, a_w, a_h)
