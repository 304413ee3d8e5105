"""EffectiveSE: the CenterMask eSE module and timm's EffectiveSEModule, re-stated, against the block."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from timm.layers import EffectiveSEModule
from torch import nn
from zoo_builds import BUILD_CASES, assert_builds, build_small

import yolo_attn
from yolo_attn.modules import EffectiveSE
from yolo_attn.modules.random_weights import randomize_


class ReferenceESE(nn.Module):
    """youngwanLEE/CenterMask ``eSEModule``: x * hsigmoid(fc(avgpool(x))), hsigmoid = relu6(z + 3) / 6."""

    def __init__(self, channel: int) -> None:
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Conv2d(channel, channel, kernel_size=1, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * (F.relu6(self.fc(self.avg_pool(x)) + 3.0) / 6.0)


def test_matches_the_reference_and_loads_its_state_dict_both_ways():
    block = randomize_(EffectiveSE(48)).eval()
    reference = ReferenceESE(48).eval()
    reference.load_state_dict(block.state_dict(), strict=True)
    x = torch.randn(2, 48, 11, 7)
    with torch.no_grad():
        torch.testing.assert_close(block(x), reference(x), atol=1e-5, rtol=0)
        torch.testing.assert_close(block.forward_plain(x), reference(x), atol=1e-5, rtol=0)
        randomize_(reference, seed=3)
        block.load_state_dict(reference.state_dict(), strict=True)
        torch.testing.assert_close(block(x), reference(x), atol=1e-5, rtol=0)


@pytest.mark.parametrize("add_maxpool", [False, True])
def test_matches_timm(add_maxpool):
    theirs = randomize_(EffectiveSEModule(32, add_maxpool=add_maxpool), seed=1).eval()
    ours = EffectiveSE(32, add_maxpool).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    theirs.load_state_dict(ours.state_dict(), strict=True)
    x = torch.randn(2, 32, 9, 13) * 3
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), atol=1e-5, rtol=0)


def test_a_fresh_gate_is_one_half():
    x = torch.randn(1, 16, 5, 5)
    torch.testing.assert_close(EffectiveSE(16)(x), 0.5 * x)


def test_aliases_resolve():
    for name in ("EffectiveSE", "ESE", "EffectiveSEModule"):
        assert yolo_attn.registry.get(name).cls is EffectiveSE


@pytest.mark.seam
def test_a_channel_count_in_the_row_is_a_row_error():
    with pytest.raises(yolo_attn.YAMLRowError, match=r"layer 5 .*ESE.*add_maxpool"):
        build_small([[-1, 1, "ESE", [256]]])


@pytest.mark.parametrize(("fam", "scale"), BUILD_CASES)
def test_builds_from_a_yaml_row(fam, scale):
    assert_builds(fam, scale, "ESE", EffectiveSE)
