"""Polarized self-attention (DeLightCMU/PSA ``PSA_p``, ``PSA_s``): math against the restated authors' modules."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from yolo_attn.modules import BlockArgumentError, ParallelPolarizedSelfAttention, SequentialPolarizedSelfAttention
from yolo_attn.modules.random_weights import randomize_

ATOL = 1e-5


def kaiming_init(module: nn.Module, a: float = 0, mode: str = "fan_out", nonlinearity: str = "relu") -> None:
    nn.init.kaiming_normal_(module.weight, a=a, mode=mode, nonlinearity=nonlinearity)
    if getattr(module, "bias", None) is not None:
        nn.init.constant_(module.bias, 0)


class PSA_p(nn.Module):
    """DeLightCMU/PSA ``semantic-segmentation/network/PSA.py`` ``PSA_p``, restated."""

    def __init__(self, inplanes: int, planes: int, kernel_size: int = 1, stride: int = 1) -> None:
        super().__init__()
        self.inplanes = inplanes
        self.inter_planes = planes // 2
        self.planes = planes
        self.conv_q_right = nn.Conv2d(self.inplanes, 1, kernel_size=1, stride=stride, padding=0, bias=False)
        self.conv_v_right = nn.Conv2d(self.inplanes, self.inter_planes, kernel_size=1, stride=stride, bias=False)
        self.conv_up = nn.Conv2d(self.inter_planes, self.planes, kernel_size=1, stride=1, padding=0, bias=False)
        self.softmax_right = nn.Softmax(dim=2)
        self.sigmoid = nn.Sigmoid()
        self.conv_q_left = nn.Conv2d(self.inplanes, self.inter_planes, kernel_size=1, stride=stride, bias=False)
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.conv_v_left = nn.Conv2d(self.inplanes, self.inter_planes, kernel_size=1, stride=stride, bias=False)
        self.softmax_left = nn.Softmax(dim=2)
        for conv in (self.conv_q_right, self.conv_v_right, self.conv_q_left, self.conv_v_left):
            kaiming_init(conv, mode="fan_in")

    def spatial_pool(self, x: torch.Tensor) -> torch.Tensor:
        input_x = self.conv_v_right(x)
        batch, channel, height, width = input_x.size()
        input_x = input_x.view(batch, channel, height * width)
        context_mask = self.conv_q_right(x).view(batch, 1, height * width)
        context_mask = self.softmax_right(context_mask)
        context = torch.matmul(input_x, context_mask.transpose(1, 2)).unsqueeze(-1)
        context = self.conv_up(context)
        return x * self.sigmoid(context)

    def channel_pool(self, x: torch.Tensor) -> torch.Tensor:
        g_x = self.conv_q_left(x)
        batch, channel, height, width = g_x.size()
        avg_x = self.avg_pool(g_x)
        batch, channel, avg_x_h, avg_x_w = avg_x.size()
        avg_x = avg_x.view(batch, channel, avg_x_h * avg_x_w).permute(0, 2, 1)
        theta_x = self.conv_v_left(x).view(batch, self.inter_planes, height * width)
        context = self.softmax_left(torch.matmul(avg_x, theta_x))
        context = context.view(batch, 1, height, width)
        return x * self.sigmoid(context)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        context_channel = self.spatial_pool(x)
        context_spatial = self.channel_pool(x)
        return context_spatial + context_channel


class PSA_s(PSA_p):
    """DeLightCMU/PSA ``PSA_s``, restated: the bottleneck ``conv_up``, the per-channel softmax, sequential."""

    def __init__(self, inplanes: int, planes: int, kernel_size: int = 1, stride: int = 1) -> None:
        super().__init__(inplanes, planes, kernel_size, stride)
        ratio = 4
        self.conv_up = nn.Sequential(
            nn.Conv2d(self.inter_planes, self.inter_planes // ratio, kernel_size=1),
            nn.LayerNorm([self.inter_planes // ratio, 1, 1]),
            nn.ReLU(inplace=True),
            nn.Conv2d(self.inter_planes // ratio, self.planes, kernel_size=1),
        )

    def channel_pool(self, x: torch.Tensor) -> torch.Tensor:
        g_x = self.conv_q_left(x)
        batch, channel, height, width = g_x.size()
        avg_x = self.avg_pool(g_x)
        batch, channel, avg_x_h, avg_x_w = avg_x.size()
        avg_x = avg_x.view(batch, channel, avg_x_h * avg_x_w).permute(0, 2, 1)
        theta_x = self.conv_v_left(x).view(batch, self.inter_planes, height * width)
        theta_x = self.softmax_left(theta_x)
        context = torch.matmul(avg_x, theta_x).view(batch, 1, height, width)
        return x * self.sigmoid(context)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.channel_pool(self.spatial_pool(x))


PAIRS = {"parallel": (PSA_p, ParallelPolarizedSelfAttention), "sequential": (PSA_s, SequentialPolarizedSelfAttention)}


@pytest.mark.parametrize("c", [16, 64])
@pytest.mark.parametrize("layout", list(PAIRS))
def test_matches_the_authors_module_and_loads_its_state_dict_both_ways(layout, c):
    reference_cls, block_cls = PAIRS[layout]
    reference = randomize_(reference_cls(c, c), 1).eval()
    ours = block_cls(c).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    with torch.no_grad():
        for shape in [(2, 12, 12), (1, 7, 13)]:
            x = torch.randn(shape[0], c, *shape[1:], generator=torch.Generator().manual_seed(0))
            torch.testing.assert_close(ours(x), reference(x), atol=ATOL, rtol=0)
    reference_cls(c, c).load_state_dict(randomize_(block_cls(c), 2).state_dict(), strict=True)


@pytest.mark.parametrize("layout", list(PAIRS))
def test_every_feature_map_size_runs_and_matches(layout):
    reference_cls, block_cls = PAIRS[layout]
    reference = randomize_(reference_cls(16, 16), 3).eval()
    ours = block_cls(16).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    with torch.no_grad():
        for hw in [(1, 1), (1, 7), (7, 1), (2, 2), (3, 5), (4, 4), (15, 20), (20, 15)]:
            x = torch.randn(2, 16, *hw, generator=torch.Generator().manual_seed(1))
            torch.testing.assert_close(ours(x), reference(x), atol=ATOL, rtol=0, msg=f"{layout} at {hw}")


@pytest.mark.parametrize("layout", list(PAIRS))
def test_bf16_autocast_keeps_the_softmax_in_float32(layout):
    block = randomize_(PAIRS[layout][1](32), 4).eval()
    x = torch.randn(1, 32, 9, 11, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = block(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = block(x)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got.float(), expected, atol=0.1 * float(expected.abs().max()), rtol=0)


@pytest.mark.parametrize(("cls", "c"), [(ParallelPolarizedSelfAttention, 1), (SequentialPolarizedSelfAttention, 7)])
def test_too_few_channels_are_refused(cls, c):
    with pytest.raises(BlockArgumentError, match=rf"{cls.__name__}: needs at least \d+ input channels.*got {c}"):
        cls(c)


def test_the_aliases_resolve_and_ultralytics_psa_is_not_shadowed():
    from ultralytics.nn.modules import PSA

    from yolo_attn import registry

    assert registry.get("PSA_p").cls is ParallelPolarizedSelfAttention
    assert registry.get("PSA_s").cls is SequentialPolarizedSelfAttention
    assert registry.get("PSA") is None and PSA.__module__.startswith("ultralytics")
