"""CAA: Context Anchor Attention of PKINet (Cai et al., CVPR 2024)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from yolo_attn.modules.arg_checks import BlockArgumentError, check_channels, check_positive_int
from yolo_attn.modules.fusion import fold_batchnorm
from yolo_attn.modules.identity_start import AttentionBlock
from yolo_attn.registry import register_block

BN_MOMENTUM, BN_EPS = 0.03, 0.001  # the reference's norm_cfg=dict(type='BN', momentum=0.03, eps=0.001)


class ConvModule(nn.Module):
    """mmcv's ``ConvModule`` as PKINet's CAA builds it: conv, then optional BN and SiLU (keys ``conv``, ``bn``).

    As in mmcv, the convolution has a bias only without a norm (``bias='auto'``), and its weight is initialised with
    ``kaiming_normal_(mode='fan_out', nonlinearity='relu')`` and a zero bias; the BN starts at weight 1, bias 0.

    Attributes:
        conv (nn.Conv2d): The convolution (with a bias after `fuse`).
        bn (nn.Module | None): ``nn.BatchNorm2d`` (momentum 0.03, eps 0.001) or ``nn.Identity`` after `fuse`; absent
            (None) without a norm.
        activate (nn.Module | None): ``nn.SiLU`` or None.
    """

    def __init__(
        self,
        c1: int,
        c2: int,
        kernel_size: int | tuple[int, int],
        padding: int | tuple[int, int],
        groups: int = 1,
        norm: bool = True,
        act: bool = True,
    ) -> None:
        """Initialize the conv (+ BN + SiLU) unit.

        Args:
            c1 (int): Input channels.
            c2 (int): Output channels.
            kernel_size (int | tuple[int, int]): Kernel size.
            padding (int | tuple[int, int]): Zero padding.
            groups (int): Convolution groups.
            norm (bool): Add a BatchNorm (then the convolution has no bias).
            act (bool): Add a SiLU.
        """
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, kernel_size, 1, padding, groups=groups, bias=not norm)
        nn.init.kaiming_normal_(self.conv.weight, mode="fan_out", nonlinearity="relu")
        if self.conv.bias is not None:
            nn.init.zeros_(self.conv.bias)
        self.bn = nn.BatchNorm2d(c2, eps=BN_EPS, momentum=BN_MOMENTUM) if norm else None
        self.activate = nn.SiLU() if act else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply conv, BN and SiLU (those present)."""
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return x if self.activate is None else self.activate(x)

    def fuse(self) -> ConvModule:
        """Fold the BatchNorm into the convolution (eval mode; idempotent)."""
        if isinstance(self.bn, nn.BatchNorm2d):
            self.conv, self.bn = fold_batchnorm(self.conv, self.bn), nn.Identity()
        return self


def _check_strip_kernel(name: str, value: Any) -> int:
    """Check a 1-D strip kernel size: a positive odd integer (even sizes would change the map's size)."""
    check_positive_int("CAA", name, value, "strip kernel size")
    if value % 2 == 0:
        raise BlockArgumentError(
            f"CAA: {name}={value} is even; the strip convolution pads {name} // 2 on each side, so an even kernel "
            f"grows the map by one and the gate no longer matches the input. Use an odd size such as {value + 1}"
        )
    return value


@register_block
class CAA(AttentionBlock):
    """Context Anchor Attention: average pool, 1x1 conv, a horizontal and a vertical depthwise strip, 1x1 conv, sigmoid.

    Paper: Cai, Lai, Wang, Cheng, Li, Yang, "Poly Kernel Inception Network for Remote Sensing Detection", CVPR 2024.
    Reference code: NUST-Machine-Intelligence-Laboratory/PKINet, ``mmrotate/models/backbones/pkinet.py``, class ``CAA``
    (commit c1e72da), with its class defaults (BN with momentum 0.03 and eps 0.001, SiLU).

    The computation, every layer keeping H x W::

        a      = avg_pool(x)                            7x7, stride 1, padding 3 (zeros counted)
        a      = SiLU(BN(conv1(a)))                     1x1, C -> C
        a      = v_conv(h_conv(a))                      depthwise (1, h_kernel_size) then (v_kernel_size, 1), with bias
        factor = sigmoid(SiLU(BN(conv2(a))))            1x1, C -> C
        out    = x * factor

    Shapes: (B, C, H, W) -> (B, C, H, W); every layer is padded to keep H x W, so the block runs at any feature-map
    size (1 x 1 included; in training, as for every BatchNorm layer, PyTorch refuses batch 1 at a 1 x 1 map, where the
    detector's own BatchNorms fail too). Parameters: ``2 C^2 + (h + v + 6) C``, 138,240 at C = 256 with the default
    11 x 11.

    YAML: ``[-1, 1, CAA, [h_kernel_size, v_kernel_size]]``, both optional (default 11, the reference's); input channels
    are inferred. ``h_kernel_size`` is the width of the horizontal strip, ``v_kernel_size`` the height of the vertical
    one; both must be odd.

    State dict: the reference's keys and shapes (``conv1.conv``, ``conv1.bn``, ``h_conv.conv``, ``v_conv.conv``,
    ``conv2.conv``, ``conv2.bn``), so the reference module's state dict loads strictly.

    Departures from the reference:
        - Returns ``x * factor``, as the forks' ``CAA`` does; the reference returns the factor, which its PKI block
          multiplies with its own features.
        - Even strip sizes are refused at build time (the reference builds them and then fails to multiply).
        - ``fuse`` folds the two BatchNorms into their convolutions (``bn`` becomes ``nn.Identity``).

    Identity start: the identity mix of `AttentionBlock`.

    Attributes:
        avg_pool (nn.AvgPool2d): 7x7 average pool, stride 1, padding 3.
        conv1 (ConvModule): 1x1 conv + BN + SiLU.
        h_conv (ConvModule): Depthwise (1, h_kernel_size) conv with bias.
        v_conv (ConvModule): Depthwise (v_kernel_size, 1) conv with bias.
        conv2 (ConvModule): 1x1 conv + BN + SiLU.
        act (nn.Sigmoid): The gate's sigmoid.

    Examples:
        >>> caa = CAA(64)
        >>> caa(torch.randn(2, 64, 20, 15)).shape
        torch.Size([2, 64, 20, 15])
    """

    def __init__(self, c1: int, h_kernel_size: int = 11, v_kernel_size: int = 11) -> None:
        """Initialize CAA.

        Args:
            c1 (int): Input (and output) channels C.
            h_kernel_size (int): Width of the horizontal depthwise strip (odd).
            v_kernel_size (int): Height of the vertical depthwise strip (odd).
        """
        super().__init__()
        check_channels("CAA", c1)
        _check_strip_kernel("h_kernel_size", h_kernel_size)
        _check_strip_kernel("v_kernel_size", v_kernel_size)
        self.avg_pool = nn.AvgPool2d(7, 1, 3)
        self.conv1 = ConvModule(c1, c1, 1, 0)
        self.h_conv = ConvModule(c1, c1, (1, h_kernel_size), (0, h_kernel_size // 2), groups=c1, norm=False, act=False)
        self.v_conv = ConvModule(c1, c1, (v_kernel_size, 1), (v_kernel_size // 2, 0), groups=c1, norm=False, act=False)
        self.conv2 = ConvModule(c1, c1, 1, 0)
        self.act = nn.Sigmoid()

    def factor(self, x: torch.Tensor) -> torch.Tensor:
        """Return the reference module's output, the gate ``factor`` of shape (B, C, H, W), values in (0, 1)."""
        return self.act(self.conv2(self.v_conv(self.h_conv(self.conv1(self.avg_pool(x))))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Gate ``x`` by its context anchor attention.

        Args:
            x (torch.Tensor): Input of shape (B, C, H, W).

        Returns:
            (torch.Tensor): ``x * factor``, shape (B, C, H, W).
        """
        return self.gated(x, self.factor(x))

    def fuse(self) -> CAA:
        """Fold the BatchNorms of ``conv1`` and ``conv2`` into their convolutions (eval mode; idempotent)."""
        self.conv1.fuse()
        self.conv2.fuse()
        return self

    def attention_map(self, x: torch.Tensor, output: torch.Tensor) -> tuple[torch.Tensor, str]:
        """Return the gate ``factor`` averaged over the channels (B, H, W), and what it is."""
        return self.factor(x).mean(1), "CAA gate (channel mean)"
