"""CPCA: Cuthbert-Huang/CPCANet's RepBlock (with its ChannelAttention), re-stated, against the block."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from support.zoo_builds import build_small
from torch import nn

import yolo_attn
from yolo_attn.modules import CPCA, BlockArgumentError
from yolo_attn.modules.random_weights import randomize_


class ReferenceChannelAttention(nn.Module):
    def __init__(self, input_channels: int, internal_neurons: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(input_channels, internal_neurons, kernel_size=1, stride=1, bias=True)
        self.fc2 = nn.Conv2d(internal_neurons, input_channels, kernel_size=1, stride=1, bias=True)
        self.input_channels = input_channels

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        x1 = torch.sigmoid(self.fc2(F.relu(self.fc1(F.adaptive_avg_pool2d(inputs, output_size=(1, 1))))))
        x2 = torch.sigmoid(self.fc2(F.relu(self.fc1(F.adaptive_max_pool2d(inputs, output_size=(1, 1))))))
        return (x1 + x2).view(-1, self.input_channels, 1, 1)


class ReferenceRepBlock(nn.Module):
    """CPCANet ``RepBlock`` (nnunet/network_architecture/CPCANet.py), in_channels == out_channels."""

    def __init__(self, c: int, channelAttention_reduce: int = 4) -> None:
        super().__init__()
        self.ca = ReferenceChannelAttention(c, c // channelAttention_reduce)
        self.dconv5_5 = nn.Conv2d(c, c, kernel_size=5, padding=2, groups=c)
        self.dconv1_7 = nn.Conv2d(c, c, kernel_size=(1, 7), padding=(0, 3), groups=c)
        self.dconv7_1 = nn.Conv2d(c, c, kernel_size=(7, 1), padding=(3, 0), groups=c)
        self.dconv1_11 = nn.Conv2d(c, c, kernel_size=(1, 11), padding=(0, 5), groups=c)
        self.dconv11_1 = nn.Conv2d(c, c, kernel_size=(11, 1), padding=(5, 0), groups=c)
        self.dconv1_21 = nn.Conv2d(c, c, kernel_size=(1, 21), padding=(0, 10), groups=c)
        self.dconv21_1 = nn.Conv2d(c, c, kernel_size=(21, 1), padding=(10, 0), groups=c)
        self.conv = nn.Conv2d(c, c, kernel_size=(1, 1), padding=0)
        self.act = nn.GELU()

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        inputs = self.act(self.conv(inputs))
        inputs = self.ca(inputs) * inputs
        x_init = self.dconv5_5(inputs)
        x_1 = self.dconv7_1(self.dconv1_7(x_init))
        x_2 = self.dconv11_1(self.dconv1_11(x_init))
        x_3 = self.dconv21_1(self.dconv1_21(x_init))
        x = x_1 + x_2 + x_3 + x_init
        return self.conv(self.conv(x) * inputs)


@pytest.mark.parametrize(("c", "reduce"), [(32, 4), (24, 8)])
def test_matches_the_reference_and_loads_its_state_dict_both_ways(c, reduce):
    block = randomize_(CPCA(c, reduce), fan_in=True).eval()
    reference = ReferenceRepBlock(c, reduce).eval()
    reference.load_state_dict(block.state_dict(), strict=True)
    with torch.no_grad():
        for h, w in [(13, 9), (24, 24), (2, 3)]:
            x = torch.randn(2, c, h, w)
            torch.testing.assert_close(block(x), reference(x), atol=1e-5, rtol=0)
            torch.testing.assert_close(block.forward_plain(x), reference(x), atol=1e-5, rtol=0)
        randomize_(reference, seed=9, fan_in=True)
        block.load_state_dict(reference.state_dict(), strict=True)
        torch.testing.assert_close(block(x), reference(x), atol=1e-5, rtol=0)


def test_the_attention_map_is_the_spatial_attention():
    block = randomize_(CPCA(16), fan_in=True).eval()
    x = torch.randn(1, 16, 8, 6)
    with torch.no_grad():
        amap, source = block.attention_map(x, block(x))
    assert amap.shape == (1, 8, 6) and "spatial" in source


def test_a_reduction_that_leaves_no_hidden_channel_is_refused():
    with pytest.raises(BlockArgumentError, match=r"channelAttention_reduce=64 leaves no hidden channel for 32"):
        CPCA(32, 64)


@pytest.mark.seam
def test_a_channel_count_in_the_row_is_a_row_error():
    with pytest.raises(yolo_attn.YAMLRowError, match=r"layer 5 .*CPCA.*channelAttention_reduce=256"):
        build_small([[-1, 1, "CPCA", [256]]])
