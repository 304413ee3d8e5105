"""Fold an inference-mode BatchNorm into the convolution before it (what a block's ``fuse()`` does)."""

from __future__ import annotations

import torch
from torch import nn


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
    """Call ``fuse()`` on every yolo_attn block under ``module`` (itself included) that has one. Idempotent.

    Ultralytics' ``BaseModel.fuse`` folds the BatchNorms of its own layers only; the registry calls this first, so that
    ``model.fuse()`` (run by ``predict``, ``val`` and ``export``) also folds ours.

    Args:
        module (nn.Module): A model or block; should be in eval mode, since folding uses the running statistics.

    Returns:
        (int): How many blocks were fused.
    """
    ours = (m for m in module.modules() if type(m).__module__.startswith("yolo_attn."))
    blocks = [m for m in ours if callable(getattr(m, "fuse", None))]
    for block in blocks:
        block.fuse()
    return len(blocks)
