"""SK: Selective Kernel attention (Li, Wang, Hu, Yang, CVPR 2019, SKNet)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from yolo_attn.modules.arg_checks import BlockArgumentError, _is_int, check_channels, check_positive_int
from yolo_attn.modules.fusion import fold_batchnorm
from yolo_attn.modules.identity_start import AttentionBlock
from yolo_attn.registry import register_block


@register_block(aliases=("SK",))
class SKAttention(AttentionBlock):
    """Selective Kernel attention: parallel k x k branches, mixed per channel by a softmax over the branches.

    Paper: Li, Wang, Hu, Yang, "Selective Kernel Networks", CVPR 2019. Reference code: implus/SKNet (``SKConv``) and,
    for this module's arguments and state dict, the ``SKAttention`` module of xmu-xiaoma666/External-Attention-pytorch
    that the YOLO forks copy (z1069614715/objectdetection_script ``cv-attention/SK.py``); timm's ``SelectiveKernel``
    is the same split-fuse-select scheme (see Departures)::

        U_k = ReLU(BN_k(conv_k(x)))          for each kernel size k (padding k // 2, ``group`` groups, with bias)
        s   = mean_hw(sum_k U_k)              (B, C)
        z   = fc(s)                           Linear C -> d, d = max(L, C // reduction)
        a_k = softmax_k(fcs_k(z))             Linear d -> C per branch; softmax across the branches, per channel
        out = sum_k a_k * U_k

    Shapes: (B, C, H, W) -> (B, C, H, W). Parameters: ``sum_k (k^2 C^2 / group + 3 C) + (C + 1) d + K (d + 1) C``;
    with the default kernels [1, 3, 5, 7] the dense 7x7 and 5x5 branches dominate (84 C^2 weights: 5.5 M at C=256).

    YAML: ``[-1, 1, SKAttention, [kernels, reduction, group, L]]`` (alias ``SK``), all args optional; input channels
    are inferred. ``kernels``: list of odd kernel sizes, one branch each; ``reduction``: ratio of the squeeze width
    ``C // reduction``; ``group``: groups of every branch convolution (must divide C); ``L``: the minimum squeeze
    width d.

    State dict: the reference module's keys and shapes (``convs.{i}.conv``, ``convs.{i}.bn``, ``fc``, ``fcs.{i}``), so
    ``block.load_state_dict(reference.state_dict())`` works; implus/SKNet's ``SKConv`` holds the same tensors under
    ``convs.{i}.{0,1}`` instead of ``convs.{i}.{conv,bn}``. After `fuse` the branch BatchNorms are folded into the
    convolutions (``convs.{i}.bn`` becomes Identity).

    Departures:
        - From the paper (not from the reference codes): the paper's ``z = ReLU(BN(W s))`` has BN and ReLU; implus/SKNet
          and External-Attention apply the Linear ``fc`` alone, and so does this block (so their checkpoints load).
          timm's ``SelectiveKernelAttn`` follows the paper (1x1 conv without bias, BN, ReLU), and its branch
          convolutions have no bias; the test compares against timm in the regime where its ReLU passes everything.
        - Build-time checks of what the reference would only find at run time: odd kernel sizes (an even one changes
          the map size and breaks the sum), ``group`` dividing C.

    Identity start: the identity mix of `AttentionBlock`.

    Attributes:
        d (int): Squeeze width ``max(L, C // reduction)``.
        convs (nn.ModuleList): One ``Sequential(conv, bn, relu)`` per kernel size.
        fc (nn.Linear): Squeeze C -> d.
        fcs (nn.ModuleList): One Linear d -> C per branch (the select logits).

    Examples:
        >>> sk = SKAttention(64, kernels=[3, 5])
        >>> sk(torch.randn(2, 64, 20, 20)).shape
        torch.Size([2, 64, 20, 20])
    """

    def __init__(
        self, c1: int, kernels: Sequence[int] = (1, 3, 5, 7), reduction: int = 16, group: int = 1, L: int = 32
    ) -> None:
        """Initialize the selective-kernel block.

        Args:
            c1 (int): Input (and output) channels C.
            kernels (Sequence[int]): Odd kernel sizes, one branch each (the reference's default [1, 3, 5, 7]).
            reduction (int): Squeeze ratio; the squeeze width is ``max(L, C // reduction)``.
            group (int): Groups of each branch convolution; must divide C.
            L (int): Minimum squeeze width.
        """
        super().__init__()
        check_channels("SKAttention", c1)
        ks = list(kernels) if isinstance(kernels, Sequence) and not isinstance(kernels, str) else None
        if not ks or not all(_is_int(k) and k >= 1 and k % 2 == 1 for k in ks):
            raise BlockArgumentError(
                f"SKAttention: kernels must be a non-empty list of odd positive kernel sizes such as [1, 3, 5, 7], got "
                f"{kernels!r}; an even size would change the feature map's size"
            )
        check_positive_int("SKAttention", "reduction", reduction, "squeeze ratio")
        check_positive_int("SKAttention", "group", group, "groups of the branch convolutions")
        check_positive_int("SKAttention", "L", L, "minimum squeeze width")
        if c1 % group:
            raise BlockArgumentError(
                f"SKAttention: group={group} must divide the input channels, but {c1} % {group} = {c1 % group}"
            )
        self.d = max(L, c1 // reduction)
        self.convs = nn.ModuleList(
            nn.Sequential(
                OrderedDict(
                    conv=nn.Conv2d(c1, c1, kernel_size=k, padding=k // 2, groups=group),
                    bn=nn.BatchNorm2d(c1),
                    relu=nn.ReLU(),
                )
            )
            for k in ks
        )
        self.fc = nn.Linear(c1, self.d)
        self.fcs = nn.ModuleList(nn.Linear(self.d, c1) for _ in ks)

    def select(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the branches and compute their per-channel selection weights.

        Args:
            x (torch.Tensor): Input of shape (B, C, H, W).

        Returns:
            feats (torch.Tensor): Branch outputs of shape (K, B, C, H, W).
            weights (torch.Tensor): Softmax over the K branches, of shape (K, B, C, 1, 1).
        """
        feats = torch.stack([conv(x) for conv in self.convs])  # (K, B, C, H, W)
        z = self.fc(feats.sum(0).mean((2, 3)))  # (B, d)
        logits = torch.stack([fc(z) for fc in self.fcs])  # (K, B, C)
        return feats, logits.softmax(0)[..., None, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Mix the kernel branches of ``x`` per channel.

        Args:
            x (torch.Tensor): Input of shape (B, C, H, W).

        Returns:
            (torch.Tensor): Output of shape (B, C, H, W).
        """
        feats, weights = self.select(x)
        return self.blend(x, (weights * feats).sum(0))

    def fuse(self) -> SKAttention:
        """Fold each branch's BatchNorm (running statistics) into its convolution, for inference. Idempotent.

        Returns:
            (SKAttention): This block.
        """
        for branch in self.convs:
            if isinstance(branch.bn, nn.BatchNorm2d):
                branch.conv, branch.bn = fold_batchnorm(branch.conv, branch.bn), nn.Identity()
        return self
