"""NAM: normalization-based attention (Liu et al., NeurIPS 2021 workshop), the BatchNorm-scale channel gate."""

from __future__ import annotations

import torch
from torch import nn

from yolo_attn.modules.arg_checks import check_channels
from yolo_attn.modules.identity_start import AttentionBlock
from yolo_attn.registry import register_block


class Channel_Att(nn.Module):
    """The reference's ``Channel_Att`` holder: the BatchNorm whose scales weigh the channels.

    Attributes:
        bn2 (nn.BatchNorm2d): BatchNorm over the C input channels (affine).
    """

    def __init__(self, c1: int) -> None:
        """Initialize the BatchNorm (PyTorch's init: weight 1, bias 0, as the reference's ResNet sets it)."""
        super().__init__()
        self.bn2 = nn.BatchNorm2d(c1, affine=True)


@register_block(aliases=("NAM",))
class NAMAttention(AttentionBlock):
    """Normalization-based attention, channel module: channels weighted by their share of the BatchNorm scales.

    Paper: Liu, Shao, Zhang, Wu, Hoffmann, "NAM: Normalization-based Attention Module", NeurIPS 2021 Workshop
    ImageNet_PPF. Reference code: Christian-lyc/NAM, ``MODELS/attention.py`` ``Att`` / ``Channel_Att`` (read, not
    copied). With ``gamma``, ``beta`` the BatchNorm's scale and shift::

        w_c = |gamma_c| / sum_j |gamma_j|                       (a constant for the gradient: the reference's .data)
        out = x * sigmoid(w_c * BN(x)_c),   BN(x)_c = gamma_c (x_c - mu_c) / sqrt(var_c + eps) + beta_c

    Only the channel module: the reference's ``Att`` has no spatial branch (its ``no_spatial`` and ``shape`` arguments
    are unused), and that is what the paper's released code computes.

    Shapes: (B, C, H, W) -> (B, C, H, W). Cost: 2C parameters (512 at yolov8n's P5, C=256), and the BatchNorm's
    running statistics.

    YAML: ``[-1, 1, NAMAttention, []]`` (alias ``NAM``); no args, input channels are inferred.

    Initialisation: the reference's (BatchNorm weight 1, bias 0), so ``w_c = 1/C`` and a fresh gate is
    ``sigmoid(BN(x)/C)``: within about ``|x_hat| / (4C)`` of 0.5, not one uniform scale. In a pretrained network use
    the identity start (``identity_mix``); a zero BatchNorm weight would make ``w`` 0/0.

    Departures from the reference:
        - ``weight.data`` becomes ``weight.detach()`` (the same: no gradient through ``w``), and the permute-multiply-
          permute becomes a broadcast product.
        - The reference's ``Att`` takes ``shape``, ``out_channels`` and ``no_spatial`` and uses none of them: the YAML
          block has no args. Its sparsity penalty on the BatchNorm scales is a training-loss term, not part of the
          block, and is not added.

    State dict: the reference ``Att``'s keys and shapes (``Channel_Att.bn2.{weight, bias, running_mean, running_var,
    num_batches_tracked}``), so ``block.load_state_dict(Att(C, shape).state_dict())`` works as is.

    Attributes:
        Channel_Att (Channel_Att): Holds ``bn2``, named as in the reference.

    Examples:
        >>> nam = NAMAttention(64)
        >>> nam(torch.randn(2, 64, 20, 20)).shape
        torch.Size([2, 64, 20, 20])
    """

    def __init__(self, c1: int) -> None:
        """Initialize NAM.

        Args:
            c1 (int): Input (and output) channels C.
        """
        super().__init__()
        check_channels("NAMAttention", c1)
        self.Channel_Att = Channel_Att(c1)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """Compute the gate.

        Args:
            x (torch.Tensor): Input of shape (B, C, H, W).

        Returns:
            (torch.Tensor): Gate in (0, 1) of shape (B, C, H, W).
        """
        bn = self.Channel_Att.bn2
        scale = bn.weight.detach().abs()
        return (bn(x) * (scale / scale.sum())[:, None, None]).sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reweight ``x`` by its normalization-based gate.

        Args:
            x (torch.Tensor): Input of shape (B, C, H, W).

        Returns:
            (torch.Tensor): Output of shape (B, C, H, W).
        """
        return self.gated(x, self.gate(x))
