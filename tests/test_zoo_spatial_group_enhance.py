"""SpatialGroupEnhance: implus/PytorchInsight's SGE module, re-stated, against the block; the groups constraint."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from zoo_builds import BUILD_CASES, assert_builds, build_small

import yolo_attn
from yolo_attn.modules import BlockArgumentError, SpatialGroupEnhance
from yolo_attn.modules.random_weights import randomize_


class ReferenceSGE(nn.Module):
    """PytorchInsight ``SpatialGroupEnhance`` (classification/models/imagenet/resnet_sge.py), view-based."""

    def __init__(self, groups: int = 64) -> None:
        super().__init__()
        self.groups = groups
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.weight = nn.Parameter(torch.zeros(1, groups, 1, 1))
        self.bias = nn.Parameter(torch.ones(1, groups, 1, 1))
        self.sig = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.size()
        x = x.view(b * self.groups, -1, h, w)
        xn = (x * self.avg_pool(x)).sum(dim=1, keepdim=True)
        t = xn.view(b * self.groups, -1)
        t = t - t.mean(dim=1, keepdim=True)
        t = t / (t.std(dim=1, keepdim=True) + 1e-5)
        t = t.view(b, self.groups, h, w) * self.weight + self.bias
        x = x * self.sig(t.view(b * self.groups, 1, h, w))
        return x.view(b, c, h, w)


@pytest.mark.parametrize(("c", "groups"), [(64, 8), (48, 4), (32, 32)])
def test_matches_the_reference_and_loads_its_state_dict_both_ways(c, groups):
    block = randomize_(SpatialGroupEnhance(c, groups)).eval()
    reference = ReferenceSGE(groups).eval()
    reference.load_state_dict(block.state_dict(), strict=True)
    x = torch.randn(2, c, 9, 7)
    with torch.no_grad():
        torch.testing.assert_close(block(x), reference(x), atol=1e-5, rtol=0)
        torch.testing.assert_close(block.forward_plain(x), reference(x), atol=1e-5, rtol=0)
        randomize_(reference, seed=5)
        block.load_state_dict(reference.state_dict(), strict=True)
        torch.testing.assert_close(block(x), reference(x), atol=1e-5, rtol=0)


def test_a_single_position_gives_a_finite_gate_where_the_reference_gives_nan():
    block = randomize_(SpatialGroupEnhance(16, 4)).eval()
    x = torch.randn(2, 16, 1, 1)
    with torch.no_grad():
        expected = (x.unflatten(1, (4, -1)) * block.bias.sigmoid().unsqueeze(2)).flatten(1, 2)
        torch.testing.assert_close(block(x), expected)


def test_default_groups_and_alias():
    assert SpatialGroupEnhance(64).groups == 8
    assert yolo_attn.registry.get("SGE").cls is SpatialGroupEnhance


@pytest.mark.parametrize(
    ("c", "groups", "message"), [(60, 8, r"groups=8 must divide .* 60 input channels"), (64, 0, "groups")]
)
def test_groups_that_do_not_divide_the_channels_are_refused(c, groups, message):
    with pytest.raises(BlockArgumentError, match=message):
        SpatialGroupEnhance(c, groups)


@pytest.mark.seam
def test_the_constraint_is_a_row_error_at_build_time():
    # layer 5 reads 128 channels at scale n: 48 groups do not divide them
    with pytest.raises(yolo_attn.YAMLRowError, match=r"layer 5 .*SGE.*groups=48 must divide .*128 input channels"):
        build_small([[-1, 1, "SGE", [48]]])


@pytest.mark.parametrize(("fam", "scale"), BUILD_CASES)
def test_builds_from_a_yaml_row(fam, scale):
    assert_builds(fam, scale, "SGE", SpatialGroupEnhance)
