"""Random weights for blocks and whole models, so that a check or a benchmark does not run on the identity.

A fresh attention block starts as the identity or close to it (zeroed last layers, flat 0.5 gates), which makes most
comparisons trivially true and some kernels trivially cheap. ``randomize_`` gives every parameter and every BatchNorm
statistic a random value, reproducibly, for the tests, the block benchmark and the scripts alike.
"""

from __future__ import annotations

import torch
from torch import nn

_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def randomize_(module: nn.Module, seed: int | torch.Generator = 0, fan_in: bool = False) -> nn.Module:
    """Give every parameter and BatchNorm statistic of ``module`` a random value, in place.

    Parameters are drawn from a normal distribution with standard deviation 0.5, or ``1 / sqrt(fan_in)`` with
    ``fan_in=True``, which keeps activations finite through a whole detector; BatchNorm scales are then drawn from
    ``U(0.5, 1.5)``, so that no channel is flipped or silenced. Running means are drawn from ``N(0, 0.2^2)`` and running
    variances from ``U(0.5, 1.5)``. Train/eval mode is left as it is.

    Args:
        module (nn.Module): A block or a whole model.
        seed (int | torch.Generator): Seed of a private generator, or a generator to draw from (to give several modules
            different values from one stream).
        fan_in (bool): Scale each weight by its fan-in (the numel of one output slice) instead of a fixed 0.5.

    Returns:
        (nn.Module): ``module``, for chaining.

    Examples:
        >>> from yolo_attn.modules import CBAM
        >>> block = randomize_(CBAM(16)).eval()
    """
    generator = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(seed)
    norm_weights = {id(m.weight) for m in module.modules() if isinstance(m, _NORMS) and m.weight is not None}
    with torch.no_grad():
        for p in module.parameters():
            noise = torch.randn(p.shape, generator=generator)
            if not fan_in:
                p.copy_(noise * 0.5)
            elif id(p) in norm_weights:
                p.copy_(torch.rand(p.shape, generator=generator) + 0.5)
            else:
                p.copy_(noise / (p[0].numel() if p.ndim > 1 else 1) ** 0.5)
        for m in module.modules():
            if isinstance(m, _NORMS) and m.running_mean is not None:
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=generator) * 0.2)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=generator) + 0.5)
    return module
