"""SEAM and MultiSEAM: the separated-and-enhancement attention modules of YOLO-FaceV2 (Yu et al., arXiv 2208.02019)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from yolo_attn.modules.arg_checks import BlockArgumentError, _describe, _is_int, check_channels, check_positive_int
from yolo_attn.modules.identity_start import AttentionBlock
from yolo_attn.registry import register_block


class BatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` that, in training, normalises a single value per channel with its running statistics.

    PyTorch's BatchNorm raises in training when it sees one value per channel (batch 1 and a 1 x 1 map, e.g.
    MultiSEAM's 7 x 7 patches of a 10 x 10 map), since no variance can be estimated from it. This one then normalises
    as in eval mode and leaves the running statistics unchanged; every other input is plain BatchNorm. Same parameters,
    buffers and state dict as ``nn.BatchNorm2d``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise ``x`` of shape (B, C, H, W)."""
        if self.training and x.shape[0] * x.shape[2] * x.shape[3] == 1:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        return super().forward(x)


class Residual(nn.Module):
    """``fn(x) + x``, the authors' ``Residual`` (key ``fn``)."""

    def __init__(self, fn: nn.Module) -> None:
        """Initialize with the residual branch ``fn``."""
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``fn(x) + x``."""
        return self.fn(x) + x


def _depthwise_pointwise(c: int, kernel_size: int) -> nn.Sequential:
    """One unit of the authors' ``DCovN`` stacks: residual (depthwise k x k, GELU, BN), then 1x1 conv, GELU, BN."""
    return nn.Sequential(
        Residual(
            nn.Sequential(
                nn.Conv2d(c, c, kernel_size=kernel_size, stride=1, padding=kernel_size // 2, groups=c),
                nn.GELU(),
                BatchNorm2d(c),
            )
        ),
        nn.Conv2d(c, c, kernel_size=1, stride=1, padding=0, groups=1),
        nn.GELU(),
        BatchNorm2d(c),
    )


def _excitation(c: int, reduction: int) -> nn.Sequential:
    """The authors' ``fc``: Linear C -> C/r (no bias), ReLU, Linear C/r -> C (no bias), sigmoid."""
    return nn.Sequential(
        nn.Linear(c, c // reduction, bias=False),
        nn.ReLU(inplace=True),
        nn.Linear(c // reduction, c, bias=False),
        nn.Sigmoid(),
    )


def _check_count(block: str, name: str, value: Any, meaning: str) -> int:
    """Check a repeat count: an integer >= 0 (0 is a stack without depthwise units, as the authors' code allows)."""
    if not _is_int(value) or value < 0:
        raise BlockArgumentError(f"{block}: {name} ({meaning}) must be an integer >= 0, got {_describe(value)}")
    return value


def _check_reduction(block: str, c1: int, reduction: Any) -> int:
    """Check the excitation's reduction ratio: C // reduction must leave at least one hidden unit."""
    check_positive_int(block, "reduction", reduction, "reduction ratio")
    if c1 // reduction < 1:
        raise BlockArgumentError(
            f"{block}: reduction={reduction} leaves no hidden unit for {c1} input channels ({c1} // {reduction} = 0); "
            f"expected 1 <= reduction <= {c1}. Input channels are inferred, so pass a ratio such as 16, not a channel "
            "count"
        )
    return reduction


@register_block
class SEAM(AttentionBlock):
    """Separated-and-enhancement attention: depthwise-separable units, global average pool, SE MLP, ``exp`` gate.

    Paper: Yu, Huang, Dou, Liu, Liu, Zhang, Zhou, "YOLO-FaceV2: A Scale and Occlusion Aware Face Detector", arXiv
    2208.02019. Reference code: Krasjet-Yu/YOLO-FaceV2, ``models/common.py``, class ``SEAM`` (commit 8e61afa).

    The computation (``n`` units, each a depthwise 3x3 residual then a 1x1 channel mix)::

        y   = x
        y   = y + BN(GELU(dwconv3x3(y)))                       n times, each followed by
        y   = BN(GELU(conv1x1(y)))
        s   = sigmoid(W2 ReLU(W1 mean_hw(y)))                  W1: C -> C/r, W2: C/r -> C, no biases
        out = x * exp(s)                                       a channel gate with values in (1, e)

    Shapes: (B, C, H, W) -> (B, C, H, W); every convolution keeps H x W, so the block runs at any feature-map size
    (1 x 1 included). Parameters: ``n (C^2 + 15 C) + 2 C^2 / r``, 77,568 at C = 256, n = 1, r = 16.

    YAML: ``[-1, 1, SEAM, [n, reduction]]``, both optional (defaults 1 and 16, the reference's); input channels are
    inferred. ``n`` (>= 0) is the number of depthwise-separable units, ``reduction`` the SE MLP's ratio (C // reduction
    >= 1). The authors' YAMLs write ``[256, 1, 8]`` (output channels, n, reduction): here that is ``[1, 8]``.

    State dict: the reference's keys and shapes (``DCovN.<i>.0.fn.0`` depthwise conv, ``DCovN.<i>.0.fn.2`` BN,
    ``DCovN.<i>.1`` 1x1 conv, ``DCovN.<i>.3`` BN, ``fc.0``, ``fc.2``), so its state dict loads strictly.

    Departures from the reference:
        - Channel-preserving: no ``c2`` argument (the reference sets ``c2 = c1`` whatever it is given).
        - In training, a BatchNorm that sees one value per channel (batch 1, 1 x 1 map) normalises with its running
          statistics instead of raising (`BatchNorm2d`); any other input is plain BatchNorm.

    Identity start: the identity mix of `AttentionBlock`.

    Attributes:
        DCovN (nn.Sequential): The ``n`` depthwise-separable units.
        avg_pool (nn.AdaptiveAvgPool2d): Global average pool.
        fc (nn.Sequential): The SE MLP ending in a sigmoid.

    Examples:
        >>> seam = SEAM(64)
        >>> seam(torch.randn(2, 64, 20, 15)).shape
        torch.Size([2, 64, 20, 15])
    """

    def __init__(self, c1: int, n: int = 1, reduction: int = 16) -> None:
        """Initialize SEAM.

        Args:
            c1 (int): Input (and output) channels C.
            n (int): Number of depthwise-separable units (>= 0).
            reduction (int): Reduction ratio of the SE MLP; C // reduction must be >= 1.
        """
        super().__init__()
        check_channels("SEAM", c1)
        _check_count("SEAM", "n", n, "number of depthwise-separable units")
        _check_reduction("SEAM", c1, reduction)
        self.DCovN = nn.Sequential(*[_depthwise_pointwise(c1, 3) for _ in range(n)])
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = _excitation(c1, reduction)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Gate the channels of ``x`` by ``exp(s)``.

        Args:
            x (torch.Tensor): Input of shape (B, C, H, W).

        Returns:
            (torch.Tensor): Output of shape (B, C, H, W).
        """
        y = self.avg_pool(self.DCovN(x)).flatten(1)
        y = self.fc(y)[:, :, None, None]
        return self.gated(x, torch.exp(y))


def _check_patch_sizes(value: Any) -> tuple[int, int, int]:
    """Check MultiSEAM's ``patch_size``: a list of three positive integers."""
    if (
        not isinstance(value, Sequence)
        or isinstance(value, str)
        or len(value) != 3
        or not all(_is_int(p) and p >= 1 for p in value)
    ):
        raise BlockArgumentError(
            f"MultiSEAM: patch_size must be a list of three positive integers (one per branch, e.g. [3, 5, 7]), got "
            f"{_describe(value)}"
        )
    return value[0], value[1], value[2]


@register_block
class MultiSEAM(AttentionBlock):
    """Multi-head SEAM: three patch-embedding branches (patches 3, 5, 7) and the input pooled, averaged, SE, ``exp``.

    Paper: Yu et al., "YOLO-FaceV2: A Scale and Occlusion Aware Face Detector", arXiv 2208.02019. Reference code:
    Krasjet-Yu/YOLO-FaceV2, ``models/common.py``, class ``MultiSEAM`` with its ``DcovN`` (commit 8e61afa).

    Each branch ``DCovN<i>`` embeds non-overlapping p_i x p_i patches, then runs ``depth`` depthwise-separable units::

        z_i = BN(GELU(patch_conv_i(x)))                        k = stride = p_i, C -> C, bias; (H // p_i, W // p_i)
        z_i = z_i + BN(GELU(dwconv_kxk(z_i)))                  depth times, each followed by
        z_i = BN(GELU(conv1x1(z_i)))
        m   = (mean_hw(z_0) + mean_hw(z_1) + mean_hw(z_2) + mean_hw(x)) / 4
        s   = sigmoid(W2 ReLU(W1 m))                           W1: C -> C/r, W2: C/r -> C, no biases
        out = x * exp(s)                                       a channel gate with values in (1, e)

    As the reference, a branch drops the last H mod p_i rows and W mod p_i columns. Shapes: (B, C, H, W) ->
    (B, C, H, W). Parameters: ``(p_0^2 + p_1^2 + p_2^2) C^2 + 9 C + 3 depth (C^2 + (k^2 + 6) C) + 2 C^2 / r``, 5.66 M
    at C = 256 with the defaults (the dense 7 x 7 patch convolution alone is 3.2 M).

    **Small maps.** The reference raises when H or W is smaller than a patch (its patch convolution would have no
    output). Here a branch whose patch is larger than the map zero-pads the map at the bottom and right up to one patch
    (``max(p_i - H, 0)`` rows, ``max(p_i - W, 0)`` columns), so that branch sees one patch holding the whole map; a
    map at least as large as every patch is not padded and gives the reference's numbers. The pad is computed from
    the tensor's shape, so an ONNX export with dynamic H and W pads correctly at every size.

    YAML: ``[-1, 1, MultiSEAM, [depth, kernel_size, patch_size, reduction]]``, all optional (defaults 1, 3,
    ``[3, 5, 7]``, 16); input channels are inferred. ``depth`` (>= 0) is the number of depthwise-separable units per
    branch, ``kernel_size`` (odd) their depthwise kernel, ``patch_size`` the three branches' patch sizes, ``reduction``
    the SE MLP's ratio (C // reduction >= 1). The authors' YAMLs write ``[128, 1, 3, [6, 7, 8], 16]`` (output
    channels first): here that is ``[1, 3, [6, 7, 8], 16]``.

    State dict: the reference's keys and shapes (``DCovN0``/``DCovN1``/``DCovN2``: ``.0`` patch conv, ``.2`` BN,
    ``.<3+i>.0.fn.0`` depthwise conv, ``.<3+i>.0.fn.2`` BN, ``.<3+i>.1`` 1x1 conv, ``.<3+i>.3`` BN; ``fc.0``,
    ``fc.2``), so its state dict loads strictly.

    Departures from the reference:
        - Maps smaller than a patch are zero-padded up to one patch (above) instead of raising.
        - The depthwise convolution pads ``kernel_size // 2`` (the reference pads 1 whatever the kernel, so only
          ``kernel_size=3`` runs there; at 3 both are the same); even kernel sizes are refused at build time.
        - Channel-preserving: no ``c2`` argument (the reference sets ``c2 = c1`` whatever it is given).
        - GELU as the authors' code; the forks' copies (e.g. z1069614715/objectdetection_script) use SiLU.
        - In training, a BatchNorm that sees one value per channel (batch 1 and a 1 x 1 patch grid, e.g. 7 x 7 patches
          of a 10 x 10 map) normalises with its running statistics instead of raising (`BatchNorm2d`).

    Identity start: the identity mix of `AttentionBlock`.

    Attributes:
        patch_size (tuple[int, int, int]): The branches' patch sizes.
        DCovN0 (nn.Sequential): Branch of patch ``patch_size[0]``.
        DCovN1 (nn.Sequential): Branch of patch ``patch_size[1]``.
        DCovN2 (nn.Sequential): Branch of patch ``patch_size[2]``.
        avg_pool (nn.AdaptiveAvgPool2d): Global average pool.
        fc (nn.Sequential): The SE MLP ending in a sigmoid.

    Examples:
        >>> block = MultiSEAM(64)
        >>> block(torch.randn(2, 64, 4, 6)).shape
        torch.Size([2, 64, 4, 6])
    """

    def __init__(
        self,
        c1: int,
        depth: int = 1,
        kernel_size: int = 3,
        patch_size: Sequence[int] = (3, 5, 7),
        reduction: int = 16,
    ) -> None:
        """Initialize MultiSEAM.

        Args:
            c1 (int): Input (and output) channels C.
            depth (int): Number of depthwise-separable units per branch (>= 0).
            kernel_size (int): Odd kernel size of the depthwise convolutions.
            patch_size (Sequence[int]): Patch sizes of the three branches.
            reduction (int): Reduction ratio of the SE MLP; C // reduction must be >= 1.
        """
        super().__init__()
        check_channels("MultiSEAM", c1)
        _check_count("MultiSEAM", "depth", depth, "depthwise-separable units per branch")
        check_positive_int("MultiSEAM", "kernel_size", kernel_size, "depthwise kernel size")
        if kernel_size % 2 == 0:
            raise BlockArgumentError(
                f"MultiSEAM: kernel_size={kernel_size} is even; the depthwise convolution of each residual unit must "
                f"keep its map's size (padding kernel_size // 2), which needs an odd size such as {kernel_size + 1}"
            )
        self.patch_size = _check_patch_sizes(patch_size)
        _check_reduction("MultiSEAM", c1, reduction)
        self.DCovN0 = self._branch(c1, depth, kernel_size, self.patch_size[0])
        self.DCovN1 = self._branch(c1, depth, kernel_size, self.patch_size[1])
        self.DCovN2 = self._branch(c1, depth, kernel_size, self.patch_size[2])
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = _excitation(c1, reduction)

    @staticmethod
    def _branch(c: int, depth: int, kernel_size: int, patch: int) -> nn.Sequential:
        """The authors' ``DcovN``: patch embedding (conv p x p, stride p, GELU, BN), then ``depth`` units."""
        return nn.Sequential(
            nn.Conv2d(c, c, kernel_size=patch, stride=patch),
            nn.GELU(),
            BatchNorm2d(c),
            *[_depthwise_pointwise(c, kernel_size) for _ in range(depth)],
        )

    @staticmethod
    def fit(x: torch.Tensor, patch: int) -> torch.Tensor:
        """Zero-pad ``x`` at the bottom and right to at least ``patch`` rows and columns (unchanged when it has them).

        Args:
            x (torch.Tensor): Map of shape (B, C, H, W).
            patch (int): Patch size of the branch.

        Returns:
            (torch.Tensor): Shape (B, C, max(H, patch), max(W, patch)).
        """
        h, w = x.shape[2], x.shape[3]
        if torch.jit.is_tracing():  # sizes are traced tensors: record the arithmetic, so an export pads at any size
            return F.pad(x, (0, (patch - w).clamp(min=0), 0, (patch - h).clamp(min=0)))
        if h >= patch and w >= patch:
            return x
        return F.pad(x, (0, max(patch - w, 0), 0, max(patch - h, 0)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Gate the channels of ``x`` by ``exp(s)``.

        Args:
            x (torch.Tensor): Input of shape (B, C, H, W).

        Returns:
            (torch.Tensor): Output of shape (B, C, H, W).
        """
        y0 = self.avg_pool(self.DCovN0(self.fit(x, self.patch_size[0]))).flatten(1)
        y1 = self.avg_pool(self.DCovN1(self.fit(x, self.patch_size[1]))).flatten(1)
        y2 = self.avg_pool(self.DCovN2(self.fit(x, self.patch_size[2]))).flatten(1)
        y4 = self.avg_pool(x).flatten(1)
        y = self.fc((y0 + y1 + y2 + y4) / 4)[:, :, None, None]
        return self.gated(x, torch.exp(y))
