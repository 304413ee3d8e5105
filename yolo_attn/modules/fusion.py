"""Inference forms of the blocks' layers: a BatchNorm folded into its convolution, a 1x1 convolution as a product."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def pointwise(weight: torch.Tensor, bias: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
    """Apply a 1x1 convolution's weights to channel vectors: ``x @ W.T + b``, the convolution at a single position.

    On the pooled descriptors of a gate, a matrix product (one ``addmm``) costs a fraction of what a convolution call
    on a 1x1 map costs on CPU; the numbers are the same, and the module keeps its checkpoint layout.

    Args:
        weight (torch.Tensor): Weight of shape (C_out, C_in) or (C_out, C_in, 1, 1).
        bias (torch.Tensor | None): Bias of shape (C_out,).
        x (torch.Tensor): Channel vectors of shape (..., C_in).

    Returns:
        (torch.Tensor): Shape (..., C_out).
    """
    return F.linear(x, weight.flatten(1), bias)


def positionwise(weight: torch.Tensor, bias: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Apply a 1x1 convolution's weights at every position of a 1-D map, as one batched product (``baddbmm``).

    The same numbers as the convolution, for the short pooled strips of coordinate attention, where a convolution
    call costs several times the product on CPU.

    Args:
        weight (torch.Tensor): Weight of shape (C_out, C_in) or (C_out, C_in, 1, 1).
        bias (torch.Tensor): Bias of shape (C_out,).
        x (torch.Tensor): Map of shape (B, C_in, L).

    Returns:
        (torch.Tensor): Shape (B, C_out, L).
    """
    batch, length = x.shape[0], x.shape[2]
    return torch.baddbmm(bias[:, None].expand(batch, -1, length), weight.flatten(1).expand(batch, -1, -1), x)


def fold_batchnorm(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """Return a convolution with bias that computes ``bn(conv(x))`` with ``bn`` in eval mode (running statistics).

    ``bn(y) = (y - mean) / sqrt(var + eps) * gamma + beta`` is an affine map per output channel, so it folds into the
    convolution's weight (scaled per output channel) and bias. The new convolution has the same geometry, device and
    dtype as ``conv``; neither input module is changed.

    Args:
        conv (nn.Conv2d): Convolution with or without bias, ``out_channels == bn.num_features``.
        bn (nn.BatchNorm2d): BatchNorm with running statistics (``track_running_stats=True``).

    Returns:
        (nn.Conv2d): The folded convolution.
    """
    if not isinstance(bn, nn.BatchNorm2d) or bn.running_mean is None or bn.running_var is None:
        raise TypeError(f"fold_batchnorm needs a BatchNorm2d with running statistics, got {bn!r}")
    if conv.out_channels != bn.num_features:
        raise ValueError(f"fold_batchnorm: conv has {conv.out_channels} output channels, BatchNorm {bn.num_features}")
    fused = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        conv.dilation,
        conv.groups,
        bias=True,
        padding_mode=conv.padding_mode,
        device=conv.weight.device,
        dtype=conv.weight.dtype,
    )
    with torch.no_grad():
        scale = (bn.running_var + bn.eps).rsqrt()
        if bn.weight is not None:
            scale = scale * bn.weight
        shift = -bn.running_mean * scale
        if bn.bias is not None:
            shift = shift + bn.bias
        if conv.bias is not None:
            shift = shift + conv.bias * scale
        fused.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
        fused.bias.copy_(shift)
    fused.requires_grad_(conv.weight.requires_grad)
    return fused


def fuse_blocks(module: nn.Module) -> int:
    """Call ``fuse()`` on every yolo_attn or registered block under ``module`` (itself included) that has one.

    Idempotent.

    Ultralytics' ``BaseModel.fuse`` folds the BatchNorms of its own layers only; the integration calls this first, so
    ``model.fuse()`` (run by ``predict``, ``val`` and ``export``) also folds ours.

    Args:
        module (nn.Module): A model or block; should be in eval mode, since folding uses the running statistics.

    Returns:
        (int): How many blocks were fused.
    """
    from yolo_attn.registry import table  # the block table; imported here because the blocks import this module

    registered = table.classes()
    ours = (m for m in module.modules() if type(m).__module__.startswith("yolo_attn.") or isinstance(m, registered))
    found = [m for m in ours if callable(getattr(m, "fuse", None))]
    for block in found:
        block.fuse()
    return len(found)
