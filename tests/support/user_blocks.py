"""Blocks written as a user would, for the registration, contract and plugin tests (not registered on import)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SimAM(nn.Module):
    """SimAM (Yang et al., ICML 2021), parameter-free: a user's block that does not subclass AttentionBlock."""

    def __init__(self, c1: int, e_lambda: float = 1e-4) -> None:
        super().__init__()
        self.e_lambda = e_lambda

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[2] * x.shape[3] - 1
        d = (x - x.mean((2, 3), keepdim=True)).pow(2)
        y = d / (4 * (d.sum((2, 3), keepdim=True) / n + self.e_lambda)) + 0.5
        return x * y.sigmoid()


class PointGate(nn.Module):
    """A user's gate with parameters and a BatchNorm: ``x * sigmoid(BN(conv1x1(x)))``, no fuse of its own."""

    def __init__(self, c1: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c1, c1, 1, bias=False)
        self.bn = nn.BatchNorm2d(c1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.bn(self.conv(x)).sigmoid()


class ShapeChanger(nn.Module):
    """Halves the channels: not channel-preserving."""

    def __init__(self, c1: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c1, max(1, c1 // 2), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class BadFuse(nn.Module):
    """Its fuse() changes what it computes."""

    def __init__(self, c1: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c1, c1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.conv(x).sigmoid()

    def fuse(self) -> BadFuse:
        with torch.no_grad():
            self.conv.weight.mul_(2)
        return self


class NoOnnx(nn.Module):
    """Adaptive pooling to a fixed 3 x 3: the TorchScript-based ONNX exporter cannot export it for dynamic sizes."""

    def __init__(self, c1: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c1, c1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = F.adaptive_avg_pool2d(x, 3)
        return x * F.interpolate(self.conv(pooled), size=x.shape[-2:], mode="nearest").sigmoid()


class NoChannels(nn.Module):
    """Takes no input-channel argument."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale
