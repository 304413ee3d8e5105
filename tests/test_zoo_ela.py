"""ELA computes what the PyTorch listing of Xu & Wan (arXiv 2403.01123) computes, with its state dict."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from ultralytics.nn.tasks import DetectionModel, yaml_model_load

from yolo_attn.cfg.edit import insert_after
from yolo_attn.modules import ELA, BlockArgumentError
from yolo_attn.modules.random_weights import randomize_
from yolo_attn.registry.rows import YAMLRowError

ATOL = 1e-5


class ReferenceELA(nn.Module):
    """The paper's listing, ``ELA(in_channels, phi)``, re-stated."""

    def __init__(self, in_channels: int, phi: str) -> None:
        super().__init__()
        kernel_size = {"T": 5, "B": 7, "S": 5, "L": 7}[phi]
        groups = {"T": in_channels, "B": in_channels, "S": in_channels // 8, "L": in_channels // 8}[phi]
        num_groups = {"T": 32, "B": 16, "S": 16, "L": 16}[phi]
        pad = kernel_size // 2
        self.con1 = nn.Conv1d(in_channels, in_channels, kernel_size=kernel_size, padding=pad, groups=groups, bias=False)
        self.GN = nn.GroupNorm(num_groups, in_channels)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.size()
        x_h = torch.mean(x, dim=3, keepdim=True).view(b, c, h)
        x_w = torch.mean(x, dim=2, keepdim=True).view(b, c, w)
        x_h = self.con1(x_h)
        x_w = self.con1(x_w)
        x_h = self.sigmoid(self.GN(x_h)).view(b, c, h, 1)
        x_w = self.sigmoid(self.GN(x_w)).view(b, c, 1, w)
        return x_h * x_w * x


@pytest.mark.parametrize("phi", ["T", "B", "S", "L"])
@pytest.mark.parametrize("channels", [64, 96])
def test_state_dict_loads_strictly_both_ways(phi, channels):
    ours, reference = ELA(channels, phi), ReferenceELA(channels, phi)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in reference.state_dict().items()}
    ours.load_state_dict(reference.state_dict(), strict=True)
    reference.load_state_dict(ours.state_dict(), strict=True)


def test_the_default_is_variant_b_the_forks_setting():
    block = ELA(64)
    assert block.phi == "B" and block.con1.kernel_size == (7,) and block.con1.groups == 64 and block.GN.num_groups == 16


@pytest.mark.parametrize("phi", ["T", "B", "S", "L"])
@pytest.mark.parametrize("shape", [(3, 64, 9, 13), (2, 64, 20, 20), (1, 64, 1, 6)])
def test_matches_the_reference_forward(phi, shape):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    ours = randomize_(ELA(64, phi), 0).eval()
    reference = ReferenceELA(64, phi).eval()
    reference.load_state_dict(ours.state_dict(), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), atol=ATOL, rtol=0)


@pytest.mark.parametrize(
    ("channels", "phi", "message"),
    [
        (48, "T", r"GroupNorm\(32\).*multiple of 32.*C=48"),
        (24, "B", r"GroupNorm\(16\).*multiple of 16.*C=24"),
        (8, "L", r"GroupNorm\(16\).*C=8"),
        (64, "X", r"phi .* must be one of \['T', 'B', 'S', 'L'\], got 'X'"),
        (64, 7, r"phi .* must be one of .*got 7 \(int\)"),
    ],
)
def test_size_and_variant_constraints_are_refused(channels, phi, message):
    with pytest.raises(BlockArgumentError, match=message):
        ELA(channels, phi)


@pytest.mark.seam
def test_a_yaml_row_at_a_layer_whose_channels_do_not_fit_names_the_constraint_and_the_channels():
    d = insert_after(yaml_model_load("yolov8n.yaml"), 0, "ELA", ["T"])  # layer 0 has 16 channels at scale n
    with pytest.raises(YAMLRowError, match=r"layer 1 .*ELA.*GroupNorm\(32\).*C=16.*input channels here: 16"):
        DetectionModel(d, verbose=False)


@pytest.mark.seam
@pytest.mark.parametrize("scale", ["n", pytest.param("x", marks=pytest.mark.slow)])
@pytest.mark.parametrize("family", ["yolov8", "yolo11", "yolo26"])
def test_builds_from_a_yaml_row(family, scale):
    model = DetectionModel(insert_after(yaml_model_load(f"{family}{scale}.yaml"), 9, "ELA", ["L"]), verbose=False)
    block = model.model[10]
    assert isinstance(block, ELA) and block.phi == "L"
    assert block.con1.in_channels == model.model[9].cv2.conv.out_channels
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, 64, 64))
