"""CAA (NUST-Machine-Intelligence-Laboratory/PKINet): math against the restated authors' module, sizes, arg checks."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from yolo_attn.modules import CAA, BlockArgumentError
from yolo_attn.modules.random_weights import randomize_

ATOL = 1e-5
SIZES = [(1, 1), (1, 7), (7, 1), (2, 2), (3, 5), (4, 4), (15, 20), (20, 15)]


class ConvModule(nn.Module):
    """mmcv ``ConvModule`` as CAA uses it: conv (bias only without norm), then ``bn`` and ``activate`` when given."""

    def __init__(
        self, in_channels, out_channels, kernel_size, stride=1, padding=0, groups=1, norm_cfg=None, act_cfg=None
    ):
        super().__init__()
        self.with_norm = norm_cfg is not None
        self.with_activation = act_cfg is not None
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride, padding, groups=groups, bias=not self.with_norm
        )
        if self.with_norm:
            self.bn = nn.BatchNorm2d(out_channels, momentum=norm_cfg["momentum"], eps=norm_cfg["eps"])
        if self.with_activation:
            self.activate = nn.SiLU()

    def forward(self, x):
        x = self.conv(x)
        if self.with_norm:
            x = self.bn(x)
        if self.with_activation:
            x = self.activate(x)
        return x


class ReferenceCAA(nn.Module):
    """PKINet ``mmrotate/models/backbones/pkinet.py`` ``CAA``, restated without mmcv; returns ``attn_factor``."""

    def __init__(self, channels, h_kernel_size=11, v_kernel_size=11, norm_cfg=None, act_cfg=None):
        super().__init__()
        norm_cfg = norm_cfg or dict(type="BN", momentum=0.03, eps=0.001)
        act_cfg = act_cfg or dict(type="SiLU")
        self.avg_pool = nn.AvgPool2d(7, 1, 3)
        self.conv1 = ConvModule(channels, channels, 1, 1, 0, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.h_conv = ConvModule(channels, channels, (1, h_kernel_size), 1, (0, h_kernel_size // 2), groups=channels)
        self.v_conv = ConvModule(channels, channels, (v_kernel_size, 1), 1, (v_kernel_size // 2, 0), groups=channels)
        self.conv2 = ConvModule(channels, channels, 1, 1, 0, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.act = nn.Sigmoid()

    def forward(self, x):
        attn_factor = self.act(self.conv2(self.v_conv(self.h_conv(self.conv1(self.avg_pool(x))))))
        return attn_factor


@pytest.mark.parametrize(("c", "h", "v"), [(16, 11, 11), (32, 5, 9)])
@pytest.mark.parametrize("shape", [(2, 12, 12), (1, 13, 7)])
def test_matches_the_reference_and_loads_its_state_dict_both_ways(c, h, v, shape):
    reference = randomize_(ReferenceCAA(c, h, v), 1).eval()
    ours = CAA(c, h, v).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(shape[0], c, *shape[1:], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(ours(x), x * reference(x), atol=ATOL, rtol=0)
    ReferenceCAA(c, h, v).load_state_dict(randomize_(CAA(c, h, v), 2).state_dict(), strict=True)


def test_runs_at_every_feature_map_size_and_fuses_to_the_same_numbers():
    reference = randomize_(ReferenceCAA(16), 3).eval()
    ours = CAA(16).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    fused = copy.deepcopy(ours).fuse()
    for size in SIZES:
        x = torch.randn(1, 16, *size, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            y = ours(x)
            torch.testing.assert_close(y, x * reference(x), atol=ATOL, rtol=0)
            torch.testing.assert_close(fused(x), y, atol=ATOL, rtol=0)


@pytest.mark.parametrize(("args", "match"), [((10,), "h_kernel_size=10 is even"), ((11, 4), "v_kernel_size=4 is even")])
def test_even_strips_are_refused(args, match):
    with pytest.raises(BlockArgumentError, match=match):
        CAA(16, *args)


@pytest.mark.parametrize("bad", [0, -3, 2.5, "11", True])
def test_a_bad_kernel_size_is_refused(bad):
    with pytest.raises(BlockArgumentError, match=r"CAA: h_kernel_size \(strip kernel size\)"):
        CAA(16, bad)
