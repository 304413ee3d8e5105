"""LSKBlock computes what zcablii/LSKNet's ``LSKblock`` computes, with its state dict."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from ultralytics.nn.tasks import DetectionModel, yaml_model_load

from yolo_attn import registry
from yolo_attn.cfg.edit import insert_after
from yolo_attn.modules import BlockArgumentError, LSKBlock
from yolo_attn.modules.random_weights import randomize_
from yolo_attn.registry.rows import YAMLRowError

ATOL = 1e-5


class ReferenceLSKblock(nn.Module):
    """mmrotate/models/backbones/lsknet.py ``LSKblock(dim)``, re-stated."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(dim, dim, 5, padding=2, groups=dim)
        self.conv_spatial = nn.Conv2d(dim, dim, 7, stride=1, padding=9, groups=dim, dilation=3)
        self.conv1 = nn.Conv2d(dim, dim // 2, 1)
        self.conv2 = nn.Conv2d(dim, dim // 2, 1)
        self.conv_squeeze = nn.Conv2d(2, 2, 7, padding=3)
        self.conv = nn.Conv2d(dim // 2, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        attn1 = self.conv0(x)
        attn2 = self.conv_spatial(attn1)
        attn1 = self.conv1(attn1)
        attn2 = self.conv2(attn2)
        attn = torch.cat([attn1, attn2], dim=1)
        avg_attn = torch.mean(attn, dim=1, keepdim=True)
        max_attn, _ = torch.max(attn, dim=1, keepdim=True)
        agg = torch.cat([avg_attn, max_attn], dim=1)
        sig = self.conv_squeeze(agg).sigmoid()
        attn = attn1 * sig[:, 0, :, :].unsqueeze(1) + attn2 * sig[:, 1, :, :].unsqueeze(1)
        attn = self.conv(attn)
        return x * attn


def test_the_alias_is_the_reference_class_name():
    assert registry.get("LSKblock").cls is LSKBlock is registry.get("LSKBlock").cls


@pytest.mark.parametrize("channels", [2, 32, 33])
def test_state_dict_loads_strictly_both_ways(channels):
    ours, reference = LSKBlock(channels), ReferenceLSKblock(channels)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in reference.state_dict().items()}
    ours.load_state_dict(reference.state_dict(), strict=True)
    reference.load_state_dict(ours.state_dict(), strict=True)


@pytest.mark.parametrize("channels", [32, 33])
@pytest.mark.parametrize("shape", [(3, 9, 13), (2, 20, 20), (1, 1, 4)])
def test_matches_the_reference_forward(channels, shape):
    x = torch.randn(shape[0], channels, *shape[1:], generator=torch.Generator().manual_seed(1))
    ours = randomize_(LSKBlock(channels), 0, fan_in=True).eval()
    reference = ReferenceLSKblock(channels).eval()
    reference.load_state_dict(ours.state_dict(), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), atol=ATOL, rtol=0)


def test_one_channel_is_refused_and_arguments_are_not_taken():
    with pytest.raises(BlockArgumentError, match=r"at least 2 input channels.*C=1"):
        LSKBlock(1)
    with pytest.raises(TypeError):
        LSKBlock(32, 7)


@pytest.mark.seam
def test_a_yaml_row_with_an_argument_is_refused():
    d = insert_after(yaml_model_load("yolov8n.yaml"), 9, "LSKblock", [256])
    with pytest.raises(YAMLRowError, match=r"layer 10 .*LSKblock"):
        DetectionModel(d, verbose=False)


@pytest.mark.seam
@pytest.mark.parametrize("scale", ["n", pytest.param("x", marks=pytest.mark.slow)])
@pytest.mark.parametrize("family", ["yolov8", "yolo11", "yolo26"])
def test_builds_from_a_yaml_row(family, scale):
    model = DetectionModel(insert_after(yaml_model_load(f"{family}{scale}.yaml"), 9, "LSKBlock", []), verbose=False)
    block = model.model[10]
    assert isinstance(block, LSKBlock)
    assert block.conv0.in_channels == model.model[9].cv2.conv.out_channels
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, 64, 64))
