"""ParNetAttention: NonDeepNetworks' ParNet block (RepVGGBlock with se_block, SE1, ConvSig), re-stated."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from zoo_builds import BUILD_CASES, assert_builds, build_small

import yolo_attn
from yolo_attn.modules import ParNetAttention
from yolo_attn.modules.random_weights import randomize_


def conv_bn(c: int, k: int, padding: int) -> nn.Sequential:
    result = nn.Sequential()
    result.add_module("conv", nn.Conv2d(c, c, kernel_size=k, stride=1, padding=padding, bias=False))
    result.add_module("bn", nn.BatchNorm2d(num_features=c))
    return result


class ReferenceConvSig(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c, c, 1, 1, 0, bias=False)
        self.act = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(x))


class ReferenceSE1(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.cvsig = ReferenceConvSig(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cvsig(self.avg_pool(x))  # ver=1: equal channels, stride 1


class ReferenceParNetBlock(nn.Module):
    """``RepVGGBlock(c, c, 3, stride=1, padding=1, se_block=True, activation=nn.SiLU())`` (repvgg.py), unfused."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.nonlinearity = nn.SiLU()
        self.rbr_identity = nn.BatchNorm2d(num_features=c)
        self.rbr_dense = conv_bn(c, 3, 1)
        self.rbr_1x1 = conv_bn(c, 1, 0)
        self.se = ReferenceSE1(c)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        id_out = self.rbr_identity(inputs)
        id_out = id_out * self.se(id_out)
        return self.nonlinearity(self.rbr_dense(inputs) + self.rbr_1x1(inputs) + id_out)


def test_matches_the_reference_and_loads_its_state_dict_both_ways():
    block = randomize_(ParNetAttention(24), fan_in=True).eval()
    reference = ReferenceParNetBlock(24).eval()
    reference.load_state_dict(block.state_dict(), strict=True)
    with torch.no_grad():
        for h, w in [(11, 7), (1, 1), (16, 16)]:
            x = torch.randn(2, 24, h, w)
            torch.testing.assert_close(block(x), reference(x), atol=1e-5, rtol=0)
        randomize_(reference, seed=4, fan_in=True)
        block.load_state_dict(reference.state_dict(), strict=True)
        torch.testing.assert_close(block(x), reference(x), atol=1e-5, rtol=0)
        torch.testing.assert_close(block.fuse()(x), reference(x), atol=1e-5, rtol=1e-5)  # RepVGG re-parameterisation
    assert block.rbr_1x1 is None and not any(isinstance(m, nn.BatchNorm2d) for m in block.modules())


def test_no_args():
    assert yolo_attn.registry.get("ParNetAttention").expected().startswith("ParNetAttention []")


@pytest.mark.seam
def test_a_channel_count_in_the_row_is_a_row_error():
    with pytest.raises(yolo_attn.YAMLRowError, match=r"layer 5 .*ParNetAttention"):
        build_small([[-1, 1, "ParNetAttention", [256]]])


@pytest.mark.parametrize(("fam", "scale"), BUILD_CASES)
def test_builds_from_a_yaml_row(fam, scale):
    assert_builds(fam, scale, "ParNetAttention", ParNetAttention)
