"""ParNet attention: the ParNet block with its Skip-Squeeze-Excitation branch (Goyal et al., 2021)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from yolo_attn.modules.arg_checks import check_channels
from yolo_attn.modules.fusion import fold_batchnorm
from yolo_attn.modules.identity_start import AttentionBlock
from yolo_attn.registry import register_block


class _ConvBN(nn.Sequential):
    """Convolution without bias, then BatchNorm: the reference's ``conv_bn`` (keys ``conv.*``, ``bn.*``)."""

    def __init__(self, c: int, k: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c, c, k, padding=k // 2, bias=False)
        self.bn = nn.BatchNorm2d(c)


class _Affine(nn.Module):
    """Per-channel ``x * weight + bias``: an eval-mode BatchNorm, folded (keys ``weight`` and ``bias``, as its own)."""

    def __init__(self, bn: nn.BatchNorm2d) -> None:
        super().__init__()
        with torch.no_grad():
            scale = bn.weight / (bn.running_var + bn.eps).sqrt()
            self.weight = nn.Parameter(scale.detach().clone())
            self.bias = nn.Parameter((bn.bias - bn.running_mean * scale).detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        return x * self.weight[:, None, None] + self.bias[:, None, None]


class _ConvSig(nn.Module):
    """The SSE excitation: 1x1 convolution without bias, then sigmoid (the reference's ``ConvSig``)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c, c, 1, bias=False)
        self.act = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, 1, 1) -> gate (B, C, 1, 1)."""
        return self.act(self.conv(x))


class _SSE(nn.Module):
    """The Skip-Squeeze-Excitation gate of the reference's ``SE1`` (version 1): ``sigmoid(W avgpool(x))``."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.cvsig = _ConvSig(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> gate (B, C, 1, 1)."""
        return self.cvsig(x.mean((2, 3), keepdim=True))


@register_block
class ParNetAttention(AttentionBlock):
    """ParNet block: 3x3 conv-BN + 1x1 conv-BN + the Skip-Squeeze-Excitation branch, summed, then SiLU.

    Paper: Goyal, Bochkovskiy, Deng, Koltun, "Non-deep Networks", 2021 (arXiv 2110.07641), Fig. 2: the ParNet block.
    Reference code: imankgoyal/NonDeepNetworks (``imagenet/timm/models/simplenet_impl/repvgg.py``, ``RepVGGBlock``
    with ``se_block=True``, equal channels and stride 1, the ParNet block; the SSE gate is ``SE1`` with ``ConvSig`` of
    ``simplenet_impl/utils.py``; SiLU is the activation of the paper's models, ``'swish'`` in ``RepVGGOur``).

    ``b = BN_id(x)``; ``out = SiLU(BN_3(conv3x3(x)) + BN_1(conv1x1(x)) + b * sigmoid(W avgpool(b)))``, convolutions
    without bias. The SSE branch (skip + squeeze-excitation) is the attention: a single-layer SE on the
    BatchNorm-ed skip connection, which widens the receptive field of a shallow network without depth.

    The forks' ``ParNetAttention`` (xmu-xiaoma666/External-Attention-pytorch, copied by
    z1069614715/objectdetection_script) is this block with biased convolutions and without the skip BatchNorm; this
    one follows the authors' code.

    Shapes: (B, C, H, W) -> (B, C, H, W). YAML: ``[-1, 1, ParNetAttention, []]``, no args; input channels are
    inferred.

    State dict: the reference's keys and shapes (``rbr_identity.*`` the skip BatchNorm, ``rbr_dense.conv.weight``
    (C, C, 3, 3), ``rbr_dense.bn.*``, ``rbr_1x1.conv.weight`` (C, C, 1, 1), ``rbr_1x1.bn.*``,
    ``se.cvsig.conv.weight`` (C, C, 1, 1)), so ``load_state_dict(reference.state_dict())`` works either way.
    Cost at yolov8n's P5 (C=256): 722,432 parameters (11 C^2 + 6 C, about 23% of yolov8n's 3.2 M) and about
    0.5 GFLOPs on the 20 x 20 map at 640 px; four times that at P4: a full convolution block, not a light gate.

    Inference: `fuse` folds the two BatchNorms into their convolutions and the 1x1 kernel into the 3x3 one, as the
    reference's ``fuse_repvgg_block`` does (RepVGG re-parameterisation), and the skip BatchNorm into a per-channel
    affine map (same keys); no BatchNorm is left.

    Departure from the reference: none in the formula. A fresh block is not a gate (it convolves), so inserted into a
    pretrained network it starts as the identity through the identity mix.

    Attributes:
        rbr_identity (nn.Module): BatchNorm of the skip branch (a per-channel affine map after `fuse`).
        rbr_dense (nn.Module): 3x3 conv + BN (a biased 3x3 conv and an identity after `fuse`).
        rbr_1x1 (nn.Module | None): 1x1 conv + BN (None after `fuse`).
        se (nn.Module): The SSE gate.

    Examples:
        >>> block = ParNetAttention(64)
        >>> block(torch.randn(2, 64, 20, 20)).shape
        torch.Size([2, 64, 20, 20])
    """

    def __init__(self, c1: int) -> None:
        """Initialize the ParNet block.

        Args:
            c1 (int): Input (and output) channels C.
        """
        super().__init__()
        check_channels("ParNetAttention", c1)
        self.rbr_identity = nn.BatchNorm2d(c1)
        self.rbr_dense = _ConvBN(c1, 3)
        self.rbr_1x1 = _ConvBN(c1, 1)
        self.se = _SSE(c1)

    def _convs(self, x: torch.Tensor) -> torch.Tensor:
        y = self.rbr_dense(x)
        return y if self.rbr_1x1 is None else y + self.rbr_1x1(x)

    def forward_plain(self, x: torch.Tensor) -> torch.Tensor:
        """Plain formulation (benchmarks): the three branches, summed, SiLU; (B, C, H, W) -> same."""
        skip = self.rbr_identity(x)
        return F.silu(self._convs(x) + skip * self.se(skip))

    def fuse(self) -> ParNetAttention:
        """Re-parameterise the 3x3 and 1x1 conv-BN branches into one biased 3x3 convolution. Idempotent.

        Returns:
            (ParNetAttention): This block.
        """
        if self.rbr_1x1 is not None:
            dense = fold_batchnorm(self.rbr_dense.conv, self.rbr_dense.bn)
            point = fold_batchnorm(self.rbr_1x1.conv, self.rbr_1x1.bn)
            with torch.no_grad():
                dense.weight += F.pad(point.weight, [1, 1, 1, 1])
                dense.bias += point.bias
            self.rbr_dense.conv, self.rbr_dense.bn, self.rbr_1x1 = dense, nn.Identity(), None
        if isinstance(self.rbr_identity, nn.BatchNorm2d):
            self.rbr_identity = _Affine(self.rbr_identity)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the ParNet block.

        Args:
            x (torch.Tensor): Input of shape (B, C, H, W).

        Returns:
            (torch.Tensor): Output of shape (B, C, H, W).
        """
        return self.blend(x, self.forward_plain(x))
