"""LSKA: Large Separable Kernel Attention (Lau, Po, Rehman, 2023)."""

from __future__ import annotations

import torch
from torch import nn

from yolo_attn.modules.arg_checks import BlockArgumentError, check_channels
from yolo_attn.modules.identity_start import AttentionBlock
from yolo_attn.registry import register_block

#: k_size -> (size of the local 1-D kernels, size of the dilated 1-D kernels, dilation), as in the reference code.
LSKA_KERNELS: dict[int, tuple[int, int, int]] = {
    7: (3, 3, 2),
    11: (3, 5, 2),
    23: (5, 7, 3),
    35: (5, 11, 3),
    41: (5, 13, 3),
    53: (5, 17, 3),
}

FRESH_SCALE = 0.5  # conv1's initial bias (weight 0): a fresh LSKA is x * 0.5


@register_block
class LSKA(AttentionBlock):
    """Large Separable Kernel Attention: a large depthwise kernel split into 1-D horizontal and vertical convolutions.

    Paper: Lau, Po, Rehman, "Large Separable Kernel Attention: Rethinking the Large Kernel Attention Design in CNN",
    Expert Systems with Applications 2024 (arXiv 2309.01439). Reference code: StevenLauHKHK/Large-Separable-Kernel-
    Attention, class ``LSKA`` in ``models/van.py``, which this block follows layer for layer.

    The k x k large-kernel attention of VAN (a local depthwise conv, a dilated depthwise conv, a 1x1 conv) with each
    2-D depthwise kernel replaced by a 1 x k then a k x 1 depthwise kernel:

    ``attn = conv1(conv_spatial_v(conv_spatial_h(conv0v(conv0h(x)))))``, ``out = x * attn``

    where ``conv0h``/``conv0v`` are depthwise (1, k0)/(k0, 1) convs, ``conv_spatial_h``/``conv_spatial_v`` depthwise
    (1, kd)/(kd, 1) convs with dilation d, and ``conv1`` a 1x1 conv C -> C, all with bias. The sizes per ``k_size``
    (`LSKA_KERNELS`): 7 -> (3, 3, d=2), 11 -> (3, 5, 2), 23 -> (5, 7, 3), 35 -> (5, 11, 3), 41 -> (5, 13, 3),
    53 -> (5, 17, 3). Every conv is padded to keep H x W, so the block runs at any feature-map size. Shapes:
    (B, C, H, W) -> (B, C, H, W). There is no sigmoid: ``attn`` is an unbounded multiplier, as in the reference.

    YAML: ``[-1, 1, LSKA, [k_size]]``, optional; default 7 (the reference's smallest, its ``VAN(k_size=7)`` default).
    ``k_size`` is one of 7, 11, 23, 35, 41, 53, the sizes the reference defines; any other is refused at build time.

    State dict: the reference module's keys and shapes (``conv0h``, ``conv0v``, ``conv_spatial_h``, ``conv_spatial_v``,
    ``conv1``), so ``block.load_state_dict(reference.state_dict())`` works without remapping (plus ``identity_mix``
    after `start_as_identity`, as for every block).

    Departures from the reference: the reference uses ``LSKA`` inside VAN's ``Attention`` (1x1 proj, GELU, LSKA, 1x1
    proj, residual); like the forks' zoos, this block is the ``LSKA`` unit alone, ``x * attn``. The reference's
    ``u = x.clone()`` is dropped (no in-place op follows, so it changes nothing). Initialisation: ``conv1`` starts with
    weight 0 and bias 0.5, so a fresh block scales ``x`` uniformly by exactly 0.5, as the package's gates do (the
    reference's random init multiplies ``x`` by a random signed map, scrambling a pretrained signal); every parameter
    gets a gradient from the second step. The other convs keep PyTorch's defaults, as the reference.

    Cost, one row after yolov8n's SPPF (C=256, 20 x 20 at 640 px), k_size=7: 4 * (3C + C) + C^2 + C = 69,888
    parameters (+2.2% of yolov8n), +0.055 GFLOPs (Ultralytics ``get_flops``); the 1x1 ``conv1`` is 94% of both.

    Attributes:
        k_size (int): The equivalent large kernel size.
        conv0h (nn.Conv2d): Depthwise (1, k0) conv.
        conv0v (nn.Conv2d): Depthwise (k0, 1) conv.
        conv_spatial_h (nn.Conv2d): Depthwise dilated (1, kd) conv.
        conv_spatial_v (nn.Conv2d): Depthwise dilated (kd, 1) conv.
        conv1 (nn.Conv2d): 1x1 conv C -> C.

    Examples:
        >>> lska = LSKA(64, k_size=11)
        >>> lska(torch.randn(2, 64, 20, 24)).shape
        torch.Size([2, 64, 20, 24])
    """

    def __init__(self, c1: int, k_size: int = 7) -> None:
        """Initialize LSKA.

        Args:
            c1 (int): Input (and output) channels C.
            k_size (int): Equivalent large kernel size: 7, 11, 23, 35, 41 or 53.
        """
        super().__init__()
        check_channels("LSKA", c1)
        if type(k_size) is not int or k_size not in LSKA_KERNELS:
            raise BlockArgumentError(
                f"LSKA: k_size must be one of {sorted(LSKA_KERNELS)} (the kernel sizes the reference code defines), "
                f"got {k_size!r} ({type(k_size).__name__})"
            )
        self.k_size = k_size
        k0, kd, d = LSKA_KERNELS[k_size]
        pad, dpad = (k0 - 1) // 2, d * (kd - 1) // 2
        self.conv0h = nn.Conv2d(c1, c1, (1, k0), padding=(0, pad), groups=c1)
        self.conv0v = nn.Conv2d(c1, c1, (k0, 1), padding=(pad, 0), groups=c1)
        self.conv_spatial_h = nn.Conv2d(c1, c1, (1, kd), padding=(0, dpad), groups=c1, dilation=d)
        self.conv_spatial_v = nn.Conv2d(c1, c1, (kd, 1), padding=(dpad, 0), groups=c1, dilation=d)
        self.conv1 = nn.Conv2d(c1, c1, 1)
        nn.init.zeros_(self.conv1.weight)  # a fresh block scales x by exactly 0.5 (see the class docstring)
        nn.init.constant_(self.conv1.bias, FRESH_SCALE)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """Compute the attention multiplier.

        Args:
            x (torch.Tensor): Input of shape (B, C, H, W).

        Returns:
            (torch.Tensor): Unbounded attention of shape (B, C, H, W).
        """
        attn = self.conv_spatial_v(self.conv_spatial_h(self.conv0v(self.conv0h(x))))
        return self.conv1(attn)

    def attention_map(self, x: torch.Tensor, output: torch.Tensor) -> tuple[torch.Tensor, str]:
        """Return the attention multiplying ``x``, averaged over channels (B, H, W), and what it is."""
        return self.attention(x).mean(1), "LSKA attention (conv1 output), mean over channels"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Multiply ``x`` by its large-separable-kernel attention.

        Args:
            x (torch.Tensor): Input of shape (B, C, H, W).

        Returns:
            (torch.Tensor): Output of shape (B, C, H, W).
        """
        return self.gated(x, self.attention(x))
