"""EMA (YOLOonMe/EMA-attention-module): math against a restated reference module, state dicts, group checks, builds."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from ultralytics.nn.tasks import DetectionModel, yaml_model_load

import yolo_attn
from yolo_attn.cfg.edit import insert_after
from yolo_attn.modules import EMA, BlockArgumentError
from yolo_attn.modules.random_weights import randomize_

ATOL = 1e-5


class ReferenceEMA(nn.Module):
    """YOLOonMe/EMA-attention-module ``EMA``, restated: adaptive pools, cat + shared 1x1 conv + split, two softmaxes."""

    def __init__(self, channels: int, c2: int | None = None, factor: int = 32) -> None:
        super().__init__()
        self.groups = factor
        assert channels // self.groups > 0
        self.softmax = nn.Softmax(-1)
        self.agp = nn.AdaptiveAvgPool2d((1, 1))
        self.pool_h = nn.AdaptiveAvgPool2d((None, 1))
        self.pool_w = nn.AdaptiveAvgPool2d((1, None))
        self.gn = nn.GroupNorm(channels // self.groups, channels // self.groups)
        self.conv1x1 = nn.Conv2d(channels // self.groups, channels // self.groups, kernel_size=1, stride=1, padding=0)
        self.conv3x3 = nn.Conv2d(channels // self.groups, channels // self.groups, kernel_size=3, stride=1, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.size()
        group_x = x.reshape(b * self.groups, -1, h, w)
        x_h = self.pool_h(group_x)
        x_w = self.pool_w(group_x).permute(0, 1, 3, 2)
        hw = self.conv1x1(torch.cat([x_h, x_w], dim=2))
        x_h, x_w = torch.split(hw, [h, w], dim=2)
        x1 = self.gn(group_x * x_h.sigmoid() * x_w.permute(0, 1, 3, 2).sigmoid())
        x2 = self.conv3x3(group_x)
        x11 = self.softmax(self.agp(x1).reshape(b * self.groups, -1, 1).permute(0, 2, 1))
        x12 = x2.reshape(b * self.groups, c // self.groups, -1)
        x21 = self.softmax(self.agp(x2).reshape(b * self.groups, -1, 1).permute(0, 2, 1))
        x22 = x1.reshape(b * self.groups, c // self.groups, -1)
        weights = (torch.matmul(x11, x12) + torch.matmul(x21, x22)).reshape(b * self.groups, 1, h, w)
        return (group_x * weights.sigmoid()).reshape(b, c, h, w)


@pytest.mark.parametrize(("c", "factor"), [(64, 32), (256, 32), (96, 8), (64, 1)])
@pytest.mark.parametrize("shape", [(2, 20, 20), (1, 13, 7)])
def test_matches_the_reference_and_loads_its_state_dict_both_ways(c, factor, shape):
    reference = randomize_(ReferenceEMA(c, factor=factor), 1).eval()
    ours = EMA(c, factor).eval()
    assert ours.load_state_dict(reference.state_dict(), strict=True) is not None
    x = torch.randn(shape[0], c, *shape[1:], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), atol=ATOL, rtol=0)
    fresh = ReferenceEMA(c, factor=factor)
    assert fresh.load_state_dict(randomize_(EMA(c, factor), 2).state_dict(), strict=True) is not None


@pytest.mark.parametrize(("c", "factor"), [(48, 32), (16, 32), (100, 8)])
def test_groups_that_do_not_divide_the_channels_are_refused_at_build_time(c, factor):
    with pytest.raises(BlockArgumentError, match=rf"EMA: factor={factor} groups must divide the input channels.* {c} "):
        EMA(c, factor)


@pytest.mark.parametrize("bad", [0, -2, 2.5, "32", True])
def test_a_bad_factor_is_refused(bad):
    with pytest.raises(BlockArgumentError, match=r"EMA: factor \(number of channel groups\)"):
        EMA(64, bad)


def test_a_row_whose_channels_the_groups_do_not_divide_is_a_row_error():
    d = insert_after(yaml_model_load("yolov8n.yaml"), 9, "EMA", [48])  # 256 channels at P5 of yolov8n
    with pytest.raises(yolo_attn.YAMLRowError, match=r"layer 10.*EMA.*groups must divide.*256"):
        DetectionModel(d, verbose=False)


def test_attention_map_is_the_spatial_gate():
    block = randomize_(EMA(64), 0).eval()
    x = torch.randn(2, 64, 9, 11)
    with torch.no_grad():
        heat, source = block.attention_map(x, block(x))
    assert heat.shape == (2, 9, 11) and "spatial gate" in source
    assert float(heat.min()) > 0 and float(heat.max()) < 1


@pytest.mark.parametrize("scale", ["n", "x"])
@pytest.mark.parametrize("family", ["yolov8", "yolo11", "yolo26"])
def test_builds_from_a_yaml_row(family, scale):
    d = insert_after(yaml_model_load(f"{family}{scale}.yaml"), 9, "EMA", [])
    model = DetectionModel(d, verbose=False)
    assert isinstance(model.model[10], EMA) and model.model[10].groups == 32
