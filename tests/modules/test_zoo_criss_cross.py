"""CrissCrossAttention against a re-statement of speedinghzl/CCNet's module, applied R times; YAML builds."""

from __future__ import annotations

import pytest
import torch
from support.models import build, small_yaml
from support.zoo_builds import BUILD_CASES, blocks_at_p3_and_p5
from torch import nn

import yolo_attn
from yolo_attn.modules import BlockArgumentError, CrissCrossAttention
from yolo_attn.modules.random_weights import randomize_

ATOL = 1e-5


def INF(B, H, W):
    # the reference's INF, on the CPU (it calls .cuda())
    return -torch.diag(torch.tensor(float("inf")).repeat(H), 0).unsqueeze(0).repeat(B * W, 1, 1)


class ReferenceCrissCrossAttention(nn.Module):
    """speedinghzl/CCNet ``cc_attention/functions.py`` ``CrissCrossAttention`` (pure PyTorch), re-stated."""

    def __init__(self, in_dim):
        super().__init__()
        self.query_conv = nn.Conv2d(in_channels=in_dim, out_channels=in_dim // 8, kernel_size=1)
        self.key_conv = nn.Conv2d(in_channels=in_dim, out_channels=in_dim // 8, kernel_size=1)
        self.value_conv = nn.Conv2d(in_channels=in_dim, out_channels=in_dim, kernel_size=1)
        self.softmax = nn.Softmax(dim=3)
        self.INF = INF
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        m, _, height, width = x.size()
        proj_query = self.query_conv(x)
        proj_query_H = proj_query.permute(0, 3, 1, 2).contiguous().view(m * width, -1, height).permute(0, 2, 1)
        proj_query_W = proj_query.permute(0, 2, 1, 3).contiguous().view(m * height, -1, width).permute(0, 2, 1)
        proj_key = self.key_conv(x)
        proj_key_H = proj_key.permute(0, 3, 1, 2).contiguous().view(m * width, -1, height)
        proj_key_W = proj_key.permute(0, 2, 1, 3).contiguous().view(m * height, -1, width)
        proj_value = self.value_conv(x)
        proj_value_H = proj_value.permute(0, 3, 1, 2).contiguous().view(m * width, -1, height)
        proj_value_W = proj_value.permute(0, 2, 1, 3).contiguous().view(m * height, -1, width)
        energy_H = (
            (torch.bmm(proj_query_H, proj_key_H) + self.INF(m, height, width))
            .view(m, width, height, height)
            .permute(0, 2, 1, 3)
        )
        energy_W = torch.bmm(proj_query_W, proj_key_W).view(m, height, width, width)
        concate = self.softmax(torch.cat([energy_H, energy_W], 3))
        att_H = concate[:, :, :, 0:height].permute(0, 2, 1, 3).contiguous().view(m * width, height, height)
        att_W = concate[:, :, :, height : height + width].contiguous().view(m * height, width, width)
        out_H = torch.bmm(proj_value_H, att_H.permute(0, 2, 1)).view(m, width, -1, height).permute(0, 2, 3, 1)
        out_W = torch.bmm(proj_value_W, att_W.permute(0, 2, 1)).view(m, height, -1, width).permute(0, 2, 1, 3)
        return self.gamma * (out_H + out_W) + x


@pytest.mark.parametrize("recurrence", [1, 2, 3])
@pytest.mark.parametrize("shape", [(2, 64, 9, 7), (1, 16, 5, 12)])
def test_matches_the_reference_applied_r_times_with_its_state_dict_both_ways(recurrence, shape):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    ours = randomize_(CrissCrossAttention(shape[1], recurrence), 1, fan_in=True).eval()
    reference = ReferenceCrissCrossAttention(shape[1]).eval()

    def rcca(y):  # RCCAModule: the same module `recurrence` times
        for _ in range(recurrence):
            y = reference(y)
        return y

    reference.load_state_dict(ours.state_dict(), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), rcca(x), atol=ATOL, rtol=0)
    randomize_(reference, 2, fan_in=True)
    ours.load_state_dict(reference.state_dict(), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), rcca(x), atol=ATOL, rtol=0)


def test_fresh_block_is_the_identity_and_the_identity_start_zeroes_gamma():
    x = torch.randn(2, 32, 6, 5)
    with torch.no_grad():
        assert torch.equal(CrissCrossAttention(32, 2)(x), x)
        block = randomize_(CrissCrossAttention(32, 2)).start_as_identity()
        assert block.identity_mix is None and float(block.gamma) == 0.0
        assert torch.equal(block(x), x)


def test_attention_map_counts_each_query_once():
    block = randomize_(CrissCrossAttention(32, 2), fan_in=True).eval()
    x = torch.randn(2, 32, 6, 5)
    with torch.no_grad():
        derived, source = block.attention_map(x, block(x))
        a_h, a_w = block.attention_weights(block.step(x))
    assert derived.shape == (2, 6, 5) and source.startswith("attention received")
    torch.testing.assert_close(derived.sum((1, 2)), torch.full((2,), 30.0))  # every query's weights sum to 1
    torch.testing.assert_close(a_h.sum(-1) + a_w.sum(-1), torch.ones(2, 6, 5))
    assert (a_h.diagonal(dim1=1, dim2=3) == 0).all()  # a position does not attend to itself along its column


def test_parameter_count_at_yolov8n_p5():
    assert sum(p.numel() for p in CrissCrossAttention(256).parameters()) == 2 * (256 * 32 + 32) + 256 * 256 + 256 + 1


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda: CrissCrossAttention(4),
            r"CrissCrossAttention: the query/key width is C // 8, so C must be at least 8; got 4",
        ),
        (lambda: CrissCrossAttention(64, 0), r"CrissCrossAttention: recurrence \(the paper's R\) must be a positive"),
        (lambda: CrissCrossAttention(64, 1.5), r"recurrence .* got 1.5 \(float\)"),
    ],
)
def test_argument_errors(make, message):
    with pytest.raises(BlockArgumentError, match=message):
        make()


@pytest.mark.seam
def test_row_errors_name_the_layer():
    with pytest.raises(yolo_attn.YAMLRowError, match=r"layer 5 .*CrissCrossAttention.*recurrence"):
        build(small_yaml([[-1, 1, "CrissCrossAttention", [0]]]))
    assert build(small_yaml([[-1, 1, "CrissCrossAttention", [2]]])).model[5].recurrence == 2


@pytest.mark.parametrize(("base", "scale"), BUILD_CASES)
def test_builds_from_yaml_rows_at_p3_and_p5(base, scale):
    rows = ("CrissCrossAttention", []), ("CrissCrossAttention", [2])
    built = blocks_at_p3_and_p5(base, scale, *rows, CrissCrossAttention)
    assert [m.query_conv.out_channels for m, _ in built] == [c // 8 for _, c in built]
    assert [m.recurrence for m, _ in built] == [1, 2]
