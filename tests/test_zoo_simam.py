"""SimAM (ZjjConan/SimAM): its math against a plain re-statement of the reference, its argument checks, its builds."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from ultralytics.nn.tasks import DetectionModel, yaml_model_load

import yolo_attn
from yolo_attn.cfg.edit import insert_after
from yolo_attn.modules import BlockArgumentError, SimAM

ATOL = 1e-5


class ReferenceSimAM(nn.Module):
    """ZjjConan/SimAM ``simam_module``, restated: n = H*W - 1, energy over each channel's H x W positions."""

    def __init__(self, channels: int | None = None, e_lambda: float = 1e-4) -> None:
        super().__init__()
        self.activaton = nn.Sigmoid()
        self.e_lambda = e_lambda

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, _, h, w = x.size()
        n = w * h - 1
        x_minus_mu_square = (x - x.mean(dim=[2, 3], keepdim=True)).pow(2)
        y = x_minus_mu_square / (4 * (x_minus_mu_square.sum(dim=[2, 3], keepdim=True) / n + self.e_lambda)) + 0.5
        return x * self.activaton(y)


@pytest.mark.parametrize("e_lambda", [1e-4, 0.1])
@pytest.mark.parametrize("shape", [(2, 64, 20, 20), (1, 32, 13, 7), (3, 16, 2, 1)])
def test_matches_the_reference(e_lambda, shape):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0)) * 3
    ours, reference = SimAM(shape[1], e_lambda).eval(), ReferenceSimAM(shape[1], e_lambda).eval()
    torch.testing.assert_close(ours(x), reference(x), atol=ATOL, rtol=0)
    assert ours.load_state_dict(reference.state_dict(), strict=True) is not None  # both empty: parameter-free
    assert reference.load_state_dict(ours.state_dict(), strict=True) is not None
    assert not list(ours.parameters())


def test_a_one_by_one_map_gives_the_limit_not_nan():
    x = torch.randn(2, 8, 1, 1)
    assert torch.isnan(ReferenceSimAM()(x)).all()  # the reference divides 0 by n = 0
    torch.testing.assert_close(SimAM(8)(x), x * torch.sigmoid(torch.tensor(0.5)))


@pytest.mark.parametrize("bad", [0, -1e-4, "1e-4", True, 256, 1024])
def test_bad_lambda_is_refused_with_the_reason(bad):
    with pytest.raises(BlockArgumentError, match=r"SimAM: e_lambda.*(positive number|channel count)"):
        SimAM(64, bad)


def test_a_channel_count_in_a_yaml_row_is_a_row_error():
    d = insert_after(yaml_model_load("yolov8n.yaml"), 9, "SimAM", [1024])
    with pytest.raises(yolo_attn.YAMLRowError, match=r"SimAM.*e_lambda.*no channel argument"):
        DetectionModel(d, verbose=False)


@pytest.mark.parametrize("scale", ["n", "x"])
@pytest.mark.parametrize("family", ["yolov8", "yolo11", "yolo26"])
def test_builds_from_a_yaml_row(family, scale):
    d = insert_after(yaml_model_load(f"{family}{scale}.yaml"), 9, "SimAM", [1e-3])
    model = DetectionModel(d, verbose=False)
    assert isinstance(model.model[10], SimAM) and model.model[10].e_lambda == 1e-3
