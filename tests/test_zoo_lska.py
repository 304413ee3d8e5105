"""LSKA computes what StevenLauHKHK/Large-Separable-Kernel-Attention's ``LSKA`` computes, with its state dict."""

from __future__ import annotations

from typing import ClassVar

import pytest
import torch
from torch import nn
from ultralytics.nn.tasks import DetectionModel, yaml_model_load

from yolo_attn.cfg.edit import insert_after
from yolo_attn.modules import LSKA, BlockArgumentError
from yolo_attn.modules.random_weights import randomize_
from yolo_attn.registry.rows import YAMLRowError

ATOL = 1e-5
K_SIZES = (7, 11, 23, 35, 41, 53)


class ReferenceLSKA(nn.Module):
    """models/van.py ``LSKA(dim, k_size)``, re-stated: the reference's kernel, padding and dilation per k_size."""

    # k_size: ((1, k0) padding, (1, kd) kernel, (1, kd) padding, dilation), copied from the reference's if/elif chain
    SETTINGS: ClassVar[dict[int, tuple[int, int, int, int]]] = {
        7: (3, 3, 2, 2),
        11: (3, 5, 4, 2),
        23: (5, 7, 9, 3),
        35: (5, 11, 15, 3),
        41: (5, 13, 18, 3),
        53: (5, 17, 24, 3),
    }

    def __init__(self, dim: int, k_size: int) -> None:
        super().__init__()
        k0, kd, pad, d = self.SETTINGS[k_size]
        self.conv0h = nn.Conv2d(dim, dim, kernel_size=(1, k0), stride=(1, 1), padding=(0, (k0 - 1) // 2), groups=dim)
        self.conv0v = nn.Conv2d(dim, dim, kernel_size=(k0, 1), stride=(1, 1), padding=((k0 - 1) // 2, 0), groups=dim)
        self.conv_spatial_h = nn.Conv2d(dim, dim, (1, kd), stride=(1, 1), padding=(0, pad), groups=dim, dilation=d)
        self.conv_spatial_v = nn.Conv2d(dim, dim, (kd, 1), stride=(1, 1), padding=(pad, 0), groups=dim, dilation=d)
        self.conv1 = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = x.clone()
        attn = self.conv0h(x)
        attn = self.conv0v(attn)
        attn = self.conv_spatial_h(attn)
        attn = self.conv_spatial_v(attn)
        attn = self.conv1(attn)
        return u * attn


@pytest.mark.parametrize("k_size", K_SIZES)
def test_state_dict_loads_strictly_both_ways(k_size):
    ours, reference = LSKA(32, k_size), ReferenceLSKA(32, k_size)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in reference.state_dict().items()}
    ours.load_state_dict(reference.state_dict(), strict=True)
    reference.load_state_dict(ours.state_dict(), strict=True)


@pytest.mark.parametrize("k_size", K_SIZES)
@pytest.mark.parametrize("shape", [(3, 32, 9, 13), (2, 32, 20, 20), (1, 32, 3, 2)])
def test_matches_the_reference_forward(k_size, shape):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    ours = randomize_(LSKA(32, k_size), 0, fan_in=True).eval()
    reference = ReferenceLSKA(32, k_size).eval()
    reference.load_state_dict(ours.state_dict(), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), atol=ATOL, rtol=0)


@pytest.mark.parametrize("k_size", [3, 5, 9, 13, 21, 0, -7, 7.0, True, "7"])
def test_other_kernel_sizes_are_refused(k_size):
    with pytest.raises(BlockArgumentError, match=r"k_size must be one of \[7, 11, 23, 35, 41, 53\]"):
        LSKA(32, k_size)


@pytest.mark.seam
def test_a_yaml_row_with_another_kernel_size_names_the_constraint_and_the_channels():
    d = insert_after(yaml_model_load("yolov8n.yaml"), 9, "LSKA", [9])
    with pytest.raises(YAMLRowError, match=r"layer 10 .*LSKA.*k_size must be one of.*got 9.*input channels here: 256"):
        DetectionModel(d, verbose=False)


@pytest.mark.seam
@pytest.mark.parametrize("scale", ["n", pytest.param("x", marks=pytest.mark.slow)])
@pytest.mark.parametrize("family", ["yolov8", "yolo11", "yolo26"])
def test_builds_from_a_yaml_row(family, scale):
    model = DetectionModel(insert_after(yaml_model_load(f"{family}{scale}.yaml"), 9, "LSKA", [23]), verbose=False)
    block = model.model[10]
    assert isinstance(block, LSKA) and block.k_size == 23
    assert block.conv1.in_channels == model.model[9].cv2.conv.out_channels
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, 64, 64))
