"""GAM (no official code; the forks' GAM_Attention): math against a restated reference, state dicts, checks, builds."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from ultralytics.nn.tasks import DetectionModel, yaml_model_load

import yolo_attn
from yolo_attn.cfg.edit import insert_after
from yolo_attn.modules import GAM, BlockArgumentError
from yolo_attn.modules.random_weights import randomize_

ATOL = 1e-5


class ReferenceGAM(nn.Module):
    """z1069614715/objectdetection_script ``cv-attention/GAM.py`` ``GAM_Attention``, restated."""

    def __init__(self, in_channels: int, rate: int = 4) -> None:
        super().__init__()
        self.channel_attention = nn.Sequential(
            nn.Linear(in_channels, int(in_channels / rate)),
            nn.ReLU(inplace=True),
            nn.Linear(int(in_channels / rate), in_channels),
        )
        self.spatial_attention = nn.Sequential(
            nn.Conv2d(in_channels, int(in_channels / rate), kernel_size=7, padding=3),
            nn.BatchNorm2d(int(in_channels / rate)),
            nn.ReLU(inplace=True),
            nn.Conv2d(int(in_channels / rate), in_channels, kernel_size=7, padding=3),
            nn.BatchNorm2d(in_channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        x_permute = x.permute(0, 2, 3, 1).view(b, -1, c)
        x_att_permute = self.channel_attention(x_permute).view(b, h, w, c)
        x_channel_att = x_att_permute.permute(0, 3, 1, 2).sigmoid()
        x = x * x_channel_att
        x_spatial_att = self.spatial_attention(x).sigmoid()
        return x * x_spatial_att


@pytest.mark.parametrize(("c", "rate"), [(64, 4), (32, 2), (48, 16)])
@pytest.mark.parametrize("shape", [(2, 20, 20), (1, 13, 7)])
def test_matches_the_reference_and_loads_its_state_dict_both_ways(c, rate, shape):
    reference = randomize_(ReferenceGAM(c, rate), 1, fan_in=True).eval()
    ours = GAM(c, rate).eval()
    assert ours.load_state_dict(reference.state_dict(), strict=True) is not None
    x = torch.randn(shape[0], c, *shape[1:], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = reference(x)
        torch.testing.assert_close(ours(x), expected, atol=ATOL, rtol=0)
        fused = copy.deepcopy(ours).fuse()
        torch.testing.assert_close(fused(x), expected, atol=ATOL, rtol=0)
    assert ReferenceGAM(c, rate).load_state_dict(randomize_(GAM(c, rate), 2).state_dict(), strict=True) is not None


@pytest.mark.parametrize("bad", [0, -4, "4", True, 128])
def test_a_bad_rate_is_refused(bad):
    with pytest.raises(BlockArgumentError, match=r"GAM: rate"):
        GAM(64, bad)


def test_a_channel_count_in_a_yaml_row_is_a_row_error_under_every_alias():
    for name in ("GAM", "GAM_Attention", "GAMAttention"):
        d = insert_after(yaml_model_load("yolov8n.yaml"), 9, name, [1024])
        with pytest.raises(yolo_attn.YAMLRowError, match=r"layer 10.*rate=1024 leaves no hidden channel for 256"):
            DetectionModel(d, verbose=False)


def test_attention_map_is_the_spatial_gate():
    block = randomize_(GAM(32), 0, fan_in=True).eval()
    x = torch.randn(2, 32, 9, 11)
    with torch.no_grad():
        heat, source = block.attention_map(x, block(x))
    assert heat.shape == (2, 9, 11) and "spatial gate" in source


@pytest.mark.parametrize("scale", ["n", "x"])
@pytest.mark.parametrize("family", ["yolov8", "yolo11", "yolo26"])
def test_builds_from_a_yaml_row(family, scale):
    d = insert_after(yaml_model_load(f"{family}{scale}.yaml"), 9, "GAM_Attention", [])
    model = DetectionModel(d, verbose=False)
    assert isinstance(model.model[10], GAM)
