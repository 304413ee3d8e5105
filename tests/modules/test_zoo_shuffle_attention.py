"""ShuffleAttention against a re-statement of wofmanaf/SA-Net's ``sa_layer``; its size constraint; YAML builds."""

from __future__ import annotations

import pytest
import torch
from support.models import build, small_yaml
from support.zoo_builds import BUILD_CASES, blocks_at_p3_and_p5
from torch import nn

import yolo_attn
from yolo_attn.modules import BlockArgumentError, ShuffleAttention
from yolo_attn.modules.random_weights import randomize_

ATOL = 1e-5


class ReferenceSALayer(nn.Module):
    """wofmanaf/SA-Net ``models/sa_resnet.py`` ``sa_layer``, re-stated in its own operators and names."""

    def __init__(self, channel: int, groups: int = 64) -> None:
        super().__init__()
        self.groups = groups
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.cweight = nn.Parameter(torch.zeros(1, channel // (2 * groups), 1, 1))
        self.cbias = nn.Parameter(torch.ones(1, channel // (2 * groups), 1, 1))
        self.sweight = nn.Parameter(torch.zeros(1, channel // (2 * groups), 1, 1))
        self.sbias = nn.Parameter(torch.ones(1, channel // (2 * groups), 1, 1))
        self.sigmoid = nn.Sigmoid()
        self.gn = nn.GroupNorm(channel // (2 * groups), channel // (2 * groups))

    @staticmethod
    def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
        b, _, h, w = x.shape
        x = x.reshape(b, groups, -1, h, w)
        x = x.permute(0, 2, 1, 3, 4)
        return x.reshape(b, -1, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        x = x.reshape(b * self.groups, -1, h, w)
        x_0, x_1 = x.chunk(2, dim=1)
        xn = self.avg_pool(x_0)
        xn = self.cweight * xn + self.cbias
        xn = x_0 * self.sigmoid(xn)
        xs = self.gn(x_1)
        xs = self.sweight * xs + self.sbias
        xs = x_1 * self.sigmoid(xs)
        out = torch.cat([xn, xs], dim=1)
        out = out.reshape(b, -1, h, w)
        return self.channel_shuffle(out, 2)


CONFIGS = [(64, 8), (32, 4), (128, 64), (48, 3)]  # (C, G), the reference's own default G=64 included


@pytest.mark.parametrize(("c", "g"), CONFIGS)
@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
def test_matches_the_reference_with_its_state_dict_both_ways(c, g, training):
    x = torch.randn(2, c, 9, 7, generator=torch.Generator().manual_seed(0))
    ours = randomize_(ShuffleAttention(c, g), 1).train(training)
    reference = ReferenceSALayer(c, g).train(training)
    reference.load_state_dict(ours.state_dict(), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), atol=ATOL, rtol=0)
    randomize_(reference, 2)
    ours.load_state_dict(reference.state_dict(), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), atol=ATOL, rtol=0)


def test_fresh_block_is_the_reference_init_a_uniform_gate_then_the_shuffle():
    x = torch.randn(2, 64, 6, 5)
    block = ShuffleAttention(64)
    with torch.no_grad():
        expected = ReferenceSALayer.channel_shuffle(x * torch.sigmoid(torch.tensor(1.0)), 2)
        torch.testing.assert_close(block(x), expected)


def test_parameter_count_and_shapes():
    block = ShuffleAttention(256)
    assert {k: tuple(v.shape) for k, v in block.state_dict().items()} == {
        "cweight": (1, 16, 1, 1),
        "cbias": (1, 16, 1, 1),
        "sweight": (1, 16, 1, 1),
        "sbias": (1, 16, 1, 1),
        "gn.weight": (16,),
        "gn.bias": (16,),
    }
    assert sum(p.numel() for p in block.parameters()) == 3 * 256 // 8


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: ShuffleAttention(24), r"ShuffleAttention: the 24 input channels must be divisible by 2G = 16 .*G in "),
        (lambda: ShuffleAttention(64, 64), r"divisible by 2G = 128 \(G=64 .*G in \[1, 2, 4, 8, 16, 32\]"),
        (lambda: ShuffleAttention(7, 1), r"the 7 input channels must be divisible by 2G = 2 .*none: 7 is odd"),
        (
            lambda: ShuffleAttention(64, 0),
            r"ShuffleAttention: G \(number of channel groups\) must be a positive",
        ),
        (lambda: ShuffleAttention(64, 2.0), r"ShuffleAttention: G .* got 2.0 \(float\)"),
        (lambda: ShuffleAttention(64, True), r"ShuffleAttention: G .* got True \(bool\)"),
    ],
)
def test_constraint_errors(make, message):
    with pytest.raises(BlockArgumentError, match=message):
        make()


@pytest.mark.seam
def test_a_row_whose_channels_2g_does_not_divide_fails_at_build_time_naming_the_layer():
    # layer 5 reads layer 4: 128 channels at scale n; G=5 needs a multiple of 10
    with pytest.raises(yolo_attn.YAMLRowError, match=r"layer 5 .*ShuffleAttention.*128 input channels .*2G = 10"):
        build(small_yaml([[-1, 1, "ShuffleAttention", [5]]]))
    assert isinstance(build(small_yaml([[-1, 1, "ShuffleAttention", [{"G": 4}]]])).model[5], ShuffleAttention)


def test_attention_map_is_the_spatial_half_gate():
    block = randomize_(ShuffleAttention(32, 4)).eval()
    x = torch.randn(2, 32, 6, 5)
    with torch.no_grad():
        derived, source = block.attention_map(x, block(x))
        x1 = x.reshape(8, 8, 6, 5)[:, 4:]
        gate = torch.sigmoid(block.sweight * block.gn(x1) + block.sbias)  # (B*G, C/2G, H, W)
    assert source.startswith("spatial-half gate")
    torch.testing.assert_close(derived, gate.reshape(2, 16, 6, 5).mean(1))


@pytest.mark.parametrize(("base", "scale"), BUILD_CASES)
def test_builds_from_yaml_rows_at_p3_and_p5(base, scale):
    built = blocks_at_p3_and_p5(base, scale, ("ShuffleAttention", []), ("ShuffleAttention", []), ShuffleAttention)
    assert [m.cweight.shape[1] for m, _ in built] == [c // 16 for _, c in built]
