"""TripletAttention against a re-statement of landskape-ai/triplet-attention's module; fuse; YAML builds."""

from __future__ import annotations

import copy

import pytest
import torch
from support.models import build, small_yaml
from support.zoo_builds import BUILD_CASES, blocks_at_p3_and_p5
from torch import nn

import yolo_attn
from yolo_attn.modules import BlockArgumentError, TripletAttention
from yolo_attn.modules.random_weights import randomize_

ATOL = 1e-5


class BasicConv(nn.Module):
    """landskape-ai/triplet-attention ``triplet_attention.py`` ``BasicConv``, re-stated."""

    def __init__(self, in_planes, out_planes, kernel_size, stride=1, padding=0, relu=True, bn=True, bias=False):
        super().__init__()
        self.conv = nn.Conv2d(in_planes, out_planes, kernel_size, stride=stride, padding=padding, bias=bias)
        self.bn = nn.BatchNorm2d(out_planes, eps=1e-5, momentum=0.01, affine=True) if bn else None
        self.relu = nn.ReLU() if relu else None

    def forward(self, x):
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        if self.relu is not None:
            x = self.relu(x)
        return x


class ZPool(nn.Module):
    def forward(self, x):
        return torch.cat((torch.max(x, 1)[0].unsqueeze(1), torch.mean(x, 1).unsqueeze(1)), dim=1)


class AttentionGate(nn.Module):
    def __init__(self):
        super().__init__()
        kernel_size = 7
        self.compress = ZPool()
        self.conv = BasicConv(2, 1, kernel_size, stride=1, padding=(kernel_size - 1) // 2, relu=False)

    def forward(self, x):
        return x * torch.sigmoid(self.conv(self.compress(x)))


class ReferenceTripletAttention(nn.Module):
    """The reference ``TripletAttention``: rotate, gate, rotate back, average."""

    def __init__(self, no_spatial=False):
        super().__init__()
        self.cw = AttentionGate()
        self.hc = AttentionGate()
        self.no_spatial = no_spatial
        if not no_spatial:
            self.hw = AttentionGate()

    def forward(self, x):
        x_out11 = self.cw(x.permute(0, 2, 1, 3).contiguous()).permute(0, 2, 1, 3).contiguous()
        x_out21 = self.hc(x.permute(0, 3, 2, 1).contiguous()).permute(0, 3, 2, 1).contiguous()
        if not self.no_spatial:
            return 1 / 3 * (self.hw(x) + x_out11 + x_out21)
        return 1 / 2 * (x_out11 + x_out21)


@pytest.mark.parametrize("no_spatial", [False, True])
@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("shape", [(2, 64, 9, 7), (1, 5, 12, 3)])
def test_matches_the_reference_with_its_state_dict_both_ways(no_spatial, training, shape):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    ours = randomize_(TripletAttention(shape[1], no_spatial), 1).train(training)
    reference = ReferenceTripletAttention(no_spatial).train(training)
    reference.load_state_dict(ours.state_dict(), strict=True)
    with torch.no_grad():  # copies: in training mode each forward updates the running statistics
        torch.testing.assert_close(copy.deepcopy(ours)(x), copy.deepcopy(reference)(x), atol=ATOL, rtol=0)
    randomize_(reference, 2)
    ours.load_state_dict(reference.state_dict(), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), atol=ATOL, rtol=0)


def test_fused_block_matches_the_reference_in_eval():
    x = torch.randn(2, 32, 8, 6)
    ours = randomize_(TripletAttention(32)).eval()
    reference = ReferenceTripletAttention().eval()
    reference.load_state_dict(ours.state_dict(), strict=True)
    ours.fuse()
    assert not any(isinstance(m, nn.BatchNorm2d) for m in ours.modules())
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), atol=ATOL, rtol=0)


def test_parameter_count_is_independent_of_the_channels():
    for c in (16, 256, 640):
        assert sum(p.numel() for p in TripletAttention(c).parameters()) == 300
        assert sum(p.numel() for p in TripletAttention(c, True).parameters()) == 200


def test_fresh_block_halves_its_input_and_the_map_is_the_hw_gate():
    x = torch.randn(2, 16, 6, 5)
    block = TripletAttention(16).train()
    with torch.no_grad():
        torch.testing.assert_close(block(x), 0.5 * x)
        randomize_(block).eval()
        derived, source = block.attention_map(x, block(x))
        reference = ReferenceTripletAttention().eval()
        reference.load_state_dict(block.state_dict())
        expected = torch.sigmoid(reference.hw.conv(reference.hw.compress(x)))[:, 0]
    torch.testing.assert_close(derived, expected)
    assert source.startswith("spatial gate")
    plain = TripletAttention(16, True)
    assert plain.attention_map(x, plain(x))[1].startswith("activation after TripletAttention")


@pytest.mark.parametrize("bad", ["yes", 1, None])
def test_argument_errors(bad):
    with pytest.raises(BlockArgumentError, match=r"TripletAttention: no_spatial must be true or false"):
        TripletAttention(64, bad)


@pytest.mark.seam
def test_rows_and_row_errors():
    assert build(small_yaml([[-1, 1, "TripletAttention", [True]]])).model[5].no_spatial
    with pytest.raises(yolo_attn.YAMLRowError, match=r"layer 5 .*TripletAttention.*no_spatial"):
        build(small_yaml([[-1, 1, "TripletAttention", [7]]]))


@pytest.mark.parametrize(("base", "scale"), BUILD_CASES)
def test_builds_from_yaml_rows_at_p3_and_p5(base, scale):
    built = blocks_at_p3_and_p5(base, scale, ("TripletAttention", [True]), ("TripletAttention", []), TripletAttention)
    assert [m.no_spatial for m, _ in built] == [True, False]
