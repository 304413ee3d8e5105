"""Triplet attention (Misra et al., WACV 2021): three Z-pool gates over the (C, W), (H, C) and (H, W) planes."""

from __future__ import annotations

import torch
from torch import nn

from yolo_attn.modules.arg_checks import check_bool, check_channels
from yolo_attn.modules.fusion import fold_batchnorm
from yolo_attn.modules.identity_start import AttentionBlock
from yolo_attn.registry import register_block

KERNEL = 7  # the reference's fixed kernel size


class BasicConv(nn.Module):
    """The reference's ``BasicConv`` as the gates use it: a 2 -> 1 7x7 conv without bias, then BatchNorm (no ReLU).

    Attributes:
        conv (nn.Conv2d): 2 -> 1 convolution, 'same' padding, no bias (a bias after `fold` only).
        bn (nn.Module): ``nn.BatchNorm2d(1, eps=1e-5, momentum=0.01)``, or ``nn.Identity`` after `fold`.
    """

    def __init__(self) -> None:
        """Initialize the convolution and its BatchNorm (BatchNorm weight and bias zero: a fresh gate is 0.5)."""
        super().__init__()
        self.conv = nn.Conv2d(2, 1, KERNEL, padding=(KERNEL - 1) // 2, bias=False)
        self.bn = nn.BatchNorm2d(1, eps=1e-5, momentum=0.01)
        nn.init.zeros_(self.bn.weight)
        nn.init.zeros_(self.bn.bias)

    def fold(self) -> None:
        """Fold the BatchNorm (running statistics) into the convolution, for inference. Idempotent."""
        if isinstance(self.bn, nn.BatchNorm2d):
            self.conv, self.bn = fold_batchnorm(self.conv, self.bn), nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``bn(conv(x))`` for x of shape (B, 2, P, Q): (B, 1, P, Q)."""
        return self.bn(self.conv(x))


class AttentionGate(nn.Module):
    """The reference's ``AttentionGate``: Z-pool ([max, mean] over dim 1), `BasicConv`, sigmoid.

    Attributes:
        conv (BasicConv): The 7x7 convolution and its BatchNorm.
    """

    def __init__(self) -> None:
        """Initialize the gate."""
        super().__init__()
        self.conv = BasicConv()

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        """Return the gate ``sigmoid(conv(pooled))`` for Z-pooled maps (B, 2, P, Q): (B, 1, P, Q)."""
        return self.conv(pooled).sigmoid()


def _zpool(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Z-pool: [max, mean] of ``x`` over ``dim``, stacked as 2 channels after the batch axis."""
    return torch.stack((x.amax(dim), x.mean(dim)), 1)


@register_block
class TripletAttention(AttentionBlock):
    """Triplet attention: cross-dimension interaction by rotating the tensor and gating each rotated plane.

    Paper: Misra, Nalamada, Arasanipalai, Hou, "Rotate to Attend: Convolutional Triplet Attention Module", WACV 2021.
    Reference code: landskape-ai/triplet-attention, ``triplet_attention.py`` ``TripletAttention`` (the root file, the
    latest version; read, not copied). Each branch Z-pools one axis ([max, mean]), convolves the other two with a 7x7
    kernel (2 -> 1, BatchNorm, no bias) and gates with a sigmoid::

        g_cw = sigmoid(BN(conv([max_H x, mean_H x])))      over the (C, W) plane, broadcast over H
        g_hc = sigmoid(BN(conv([max_W x, mean_W x])))      over the (H, C) plane, broadcast over W
        g_hw = sigmoid(BN(conv([max_C x, mean_C x])))      over the (H, W) plane, broadcast over C (a CBAM spatial gate)
        out  = x * (g_cw + g_hc + g_hw) / 3                ( x * (g_cw + g_hc) / 2 with no_spatial )

    Shapes: (B, C, H, W) -> (B, C, H, W). Parameters: 3 x (2 * 49 + 2) = 300 (200 with ``no_spatial``), independent
    of C; works at any C, H and W (the 7x7 kernel is zero-padded along the channel axis too).

    YAML: ``[-1, 1, TripletAttention, [no_spatial]]``, all args optional; input channels are inferred.
    ``no_spatial`` (false): drop the (H, W) branch, as the reference's switch does.

    Initialisation: every gate's BatchNorm weight and bias start at zero, so a fresh gate is exactly 0.5 and a fresh
    block scales its input by 0.5. This is what the reference's ResNet init does for the (H, W) branch (its keys
    named ``SpatialGate``); its other two branches get BatchNorm weight 1 there, a random gate at start.

    Inference: `fuse` folds each gate's BatchNorm into its convolution (Ultralytics' ``model.fuse()`` calls it).

    Departures from the reference:
        - The gates multiply ``x`` once, ``x * (g_cw + g_hc + g_hw) / 3``, instead of permuting ``x`` into each plane,
          gating, permuting back and averaging three gated copies: the gates are computed on the Z-pooled planes
          (the same numbers, pooled without copying ``x``), and the sum is the same up to rounding.
        - BatchNorm init of the (C, W) and (H, C) branches (above); ``torch.sigmoid_`` in place becomes ``sigmoid``.
        - The reference's class takes no channel count (it has no use for one); the YAML block takes the inferred
          ``c1`` first like every block and ignores it.

    State dict: the reference's keys and shapes (``cw.conv.conv.weight``, ``cw.conv.bn.*``, the same for ``hc`` and
    ``hw``), so ``block.load_state_dict(TripletAttention_reference(no_spatial).state_dict())`` works as is (before
    `fuse`). The older ``MODELS/triplet_attention.py`` of that repository names the branches ``ChannelGateH``,
    ``ChannelGateW``, ``SpatialGate`` and the conv ``spatial``: its checkpoints need that renaming.

    Attributes:
        no_spatial (bool): Without the (H, W) branch.
        cw (AttentionGate): Gate over the (C, W) plane; ``hc`` over (H, C); ``hw`` over (H, W) (absent with
            ``no_spatial``).

    Examples:
        >>> ta = TripletAttention(64)
        >>> ta(torch.randn(2, 64, 20, 20)).shape
        torch.Size([2, 64, 20, 20])
    """

    def __init__(self, c1: int, no_spatial: bool = False) -> None:
        """Initialize triplet attention.

        Args:
            c1 (int): Input (and output) channels C; the block's parameters do not depend on it.
            no_spatial (bool): Drop the (H, W) branch.
        """
        super().__init__()
        check_channels("TripletAttention", c1)
        self.no_spatial = check_bool("TripletAttention", "no_spatial", no_spatial)
        self.cw = AttentionGate()
        self.hc = AttentionGate()
        if not no_spatial:
            self.hw = AttentionGate()

    def spatial_gate(self, x: torch.Tensor) -> torch.Tensor:
        """Return the (H, W) branch's gate (B, 1, H, W) for ``x`` (B, C, H, W) (not with ``no_spatial``)."""
        return self.hw(_zpool(x, 1))

    def gates(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Return the branches' gates, each broadcastable to ``x``: (B, C, 1, W), (B, C, H, 1) and (B, 1, H, W).

        Args:
            x (torch.Tensor): Input of shape (B, C, H, W).

        Returns:
            (list[torch.Tensor]): The (C, W), (H, C) and, without ``no_spatial``, (H, W) gates.
        """
        g_cw = self.cw(_zpool(x, 2)).transpose(1, 2)  # pooled (B, 2, C, W) -> gate (B, 1, C, W) -> (B, C, 1, W)
        g_hc = self.hc(_zpool(x, 3).transpose(2, 3)).permute(0, 3, 2, 1)  # (B, 2, H, C) -> (B, 1, H, C) -> (B, C, H, 1)
        return [g_cw, g_hc] if self.no_spatial else [g_cw, g_hc, self.spatial_gate(x)]

    def fuse(self) -> TripletAttention:
        """Fold every gate's BatchNorm into its convolution, for inference. Idempotent.

        Returns:
            (TripletAttention): This block, now without BatchNorm.
        """
        for gate in (self.cw, self.hc, getattr(self, "hw", None)):
            if gate is not None:
                gate.conv.fold()
        return self

    def attention_map(self, x: torch.Tensor, output: torch.Tensor) -> tuple[torch.Tensor, str]:
        """Return the (H, W) gate (B, H, W), or with ``no_spatial`` the channel mean of ``|output|``."""
        if self.no_spatial:
            return super().attention_map(x, output)
        return self.spatial_gate(x)[:, 0], "spatial gate (H-W branch)"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Gate ``x`` by the average of its branches' gates.

        Args:
            x (torch.Tensor): Input of shape (B, C, H, W).

        Returns:
            (torch.Tensor): Output of shape (B, C, H, W).
        """
        gates = self.gates(x)
        total = gates[0] + gates[1] if self.no_spatial else gates[0] + gates[1] + gates[2]
        return self.gated(x, total, 1 / len(gates))
