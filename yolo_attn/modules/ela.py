"""ELA: Efficient Local Attention (Xu & Wan, arXiv 2403.01123, 2024)."""

from __future__ import annotations

import torch
from torch import nn

from yolo_attn.modules.arg_checks import BlockArgumentError, check_channels
from yolo_attn.modules.identity_start import AttentionBlock
from yolo_attn.registry import register_block

#: phi -> (1-D kernel size, conv groups as a function of C, GroupNorm groups), the four variants of the paper.
ELA_VARIANTS = {
    "T": (5, "C", 32),
    "B": (7, "C", 16),
    "S": (5, "C/8", 16),
    "L": (7, "C/8", 16),
}


@register_block
class ELA(AttentionBlock):
    """Efficient Local Attention: coordinate-style gates from 1-D convolutions and GroupNorm, no channel reduction.

    Paper: Xu, Wan, "ELA: Efficient Local Attention for Deep Convolutional Neural Networks", arXiv 2403.01123, 2024.
    There is no official repository; this block follows the PyTorch listing of the paper (class ``ELA(in_channels,
    phi)``), which defines the four variants and is what the forks' copies derive from. Steps, for ``x`` (B, C, H, W):

    1. ``z_h = mean_W(x)`` (B, C, H) and ``z_w = mean_H(x)`` (B, C, W);
    2. one shared 1-D conv ``con1`` (C -> C, kernel k, 'same' padding, no bias, ``groups`` groups) on each strip;
    3. one shared ``GN`` (GroupNorm, ``num_groups`` groups) on each strip separately, then sigmoid:
       ``a_h = sigmoid(GN(con1(z_h)))`` (B, C, H, 1), ``a_w = sigmoid(GN(con1(z_w)))`` (B, C, 1, W);
    4. ``out = x * a_h * a_w``.

    The variants (``phi``; `ELA_VARIANTS`), as in the paper: ``T``: k=5, depthwise conv (groups C), GroupNorm 32;
    ``B``: k=7, depthwise, GroupNorm 16; ``S``: k=5, groups C/8, GroupNorm 16; ``L``: k=7, groups C/8, GroupNorm 16.
    The paper recommends T and B for lightweight networks, S and L for deep ones.

    YAML: ``[-1, 1, ELA, [phi]]``, optional. The paper's listing has no default; ``B`` is taken as the default because
    it is the setting of the forks' copies (``kernel_size=7``, depthwise, ``GroupNorm(16, C)``), so a bare ``ELA`` row
    means what it means in the forks.

    Size constraints, checked at build time (`BlockArgumentError`, reported as the row's error): C divisible by the
    GroupNorm groups (32 for T, 16 otherwise), and for S and L at least 8 channels with C divisible by C // 8. Any H x W
    works (means over H and W, 1-D convs with 'same' padding: ONNX-exportable at dynamic sizes).

    State dict: the listing's keys and shapes (``con1.weight``, ``GN.weight``, ``GN.bias``), so
    ``block.load_state_dict(reference.state_dict())`` works without remapping (plus ``identity_mix`` after
    `start_as_identity`).

    Departures from the reference: none in the formula. ``view`` reshapes become means without ``keepdim``.
    Initialisation: the GroupNorm weight starts at 0 (bias 0, as PyTorch's default), so both gates start at exactly
    0.5 and a fresh block scales ``x`` uniformly by 0.25, as `CoordAtt` does; ``con1`` gets a gradient from the second
    step.

    Cost, one row after yolov8n's SPPF (C=256, 20 x 20 at 640 px), phi=B: 2,304 parameters, +0.0045 GFLOPs.

    Attributes:
        phi (str): The variant.
        con1 (nn.Conv1d): The shared 1-D conv.
        GN (nn.GroupNorm): The shared GroupNorm.

    Examples:
        >>> ela = ELA(64)
        >>> ela(torch.randn(2, 64, 20, 24)).shape
        torch.Size([2, 64, 20, 24])
    """

    def __init__(self, c1: int, phi: str = "B") -> None:
        """Initialize ELA.

        Args:
            c1 (int): Input (and output) channels C.
            phi (str): Variant: ``"T"``, ``"B"``, ``"S"`` or ``"L"`` (kernel size, conv groups, GroupNorm groups).
        """
        super().__init__()
        check_channels("ELA", c1)
        if phi not in ELA_VARIANTS:
            raise BlockArgumentError(
                f"ELA: phi (the paper's variant) must be one of {list(ELA_VARIANTS)}, got {phi!r} "
                f"({type(phi).__name__}); T: k=5, GroupNorm 32; B: k=7, GroupNorm 16; S: k=5, conv groups C/8, "
                "GroupNorm 16; L: k=7, conv groups C/8, GroupNorm 16"
            )
        k, groups, num_groups = ELA_VARIANTS[phi]
        if c1 % num_groups:
            raise BlockArgumentError(
                f"ELA: variant {phi} normalises with GroupNorm({num_groups}), which needs C to be a multiple of "
                f"{num_groups}; this layer has C={c1}" + (" (variants B, S and L use 16)" if phi == "T" else "")
            )
        conv_groups = c1 if groups == "C" else c1 // 8
        if conv_groups < 1 or c1 % conv_groups:
            raise BlockArgumentError(
                f"ELA: variant {phi} uses C // 8 conv groups, which needs C >= 8 and C divisible by C // 8; "
                f"this layer has C={c1}"
            )
        self.phi = phi
        self.con1 = nn.Conv1d(c1, c1, k, padding=k // 2, groups=conv_groups, bias=False)
        self.GN = nn.GroupNorm(num_groups, c1)
        nn.init.zeros_(self.GN.weight)  # a fresh block scales x by exactly 0.5 * 0.5 (see the class docstring)

    def directional_gates(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Compute the height gate and the width gate.

        Args:
            x (torch.Tensor): Input of shape (B, C, H, W).

        Returns:
            a_h (torch.Tensor): Height gate in (0, 1) of shape (B, C, H, 1).
            a_w (torch.Tensor): Width gate in (0, 1) of shape (B, C, 1, W).
        """
        a_h = self.GN(self.con1(x.mean(3))).sigmoid()
        a_w = self.GN(self.con1(x.mean(2))).sigmoid()
        return a_h[..., None], a_w[:, :, None]

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
        return self.gated(x, a_h, a_w)
