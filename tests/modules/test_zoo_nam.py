"""NAMAttention against a re-statement of Christian-lyc/NAM's ``Att`` / ``Channel_Att``; gradients; YAML builds."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from support.models import build, small_yaml
from support.zoo_builds import BUILD_CASES, blocks_at_p3_and_p5
from torch import nn

import yolo_attn
from yolo_attn.modules import BlockArgumentError, NAMAttention
from yolo_attn.modules.random_weights import randomize_

ATOL = 1e-5


class Channel_Att(nn.Module):
    """Christian-lyc/NAM ``MODELS/attention.py`` ``Channel_Att``, re-stated."""

    def __init__(self, channels, t=16):
        super().__init__()
        self.channels = channels
        self.bn2 = nn.BatchNorm2d(self.channels, affine=True)

    def forward(self, x):
        residual = x
        x = self.bn2(x)
        weight_bn = self.bn2.weight.data.abs() / torch.sum(self.bn2.weight.data.abs())
        x = x.permute(0, 2, 3, 1).contiguous()
        x = torch.mul(weight_bn, x)
        x = x.permute(0, 3, 1, 2).contiguous()
        return torch.sigmoid(x) * residual


class Att(nn.Module):
    """The reference ``Att``: the channel module only (``shape``, ``out_channels`` and ``no_spatial`` are unused)."""

    def __init__(self, channels, shape, out_channels=None, no_spatial=True):
        super().__init__()
        self.Channel_Att = Channel_Att(channels)

    def forward(self, x):
        return self.Channel_Att(x)


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("shape", [(2, 64, 9, 7), (3, 5, 4, 6)])
def test_matches_the_reference_with_its_state_dict_both_ways(training, shape):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    ours = randomize_(NAMAttention(shape[1]), 1).train(training)
    reference = Att(shape[1], shape[2]).train(training)
    reference.load_state_dict(ours.state_dict(), strict=True)
    with torch.no_grad():  # copies: in training mode each forward updates the running statistics
        torch.testing.assert_close(copy.deepcopy(ours)(x), copy.deepcopy(reference)(x), atol=ATOL, rtol=0)
    randomize_(reference, 2)
    ours.load_state_dict(reference.state_dict(), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), atol=ATOL, rtol=0)


def test_gradients_match_the_reference_no_gradient_through_the_channel_weights():
    x = torch.randn(4, 16, 5, 6, generator=torch.Generator().manual_seed(3))
    ours = randomize_(NAMAttention(16), 4).train()
    reference = Att(16, 5).train()
    reference.load_state_dict(ours.state_dict(), strict=True)
    ours(x).square().mean().backward()
    reference(x).square().mean().backward()
    for (name, mine), (_, theirs) in zip(ours.named_parameters(), reference.named_parameters(), strict=True):
        torch.testing.assert_close(mine.grad, theirs.grad, atol=ATOL, rtol=1e-5, msg=name)


def test_fresh_block_is_the_reference_init():
    x = torch.randn(4, 64, 10, 12)
    block = NAMAttention(64).train()
    with torch.no_grad():
        expected = x * torch.sigmoid(F.batch_norm(x, None, None, training=True) / 64)
        torch.testing.assert_close(block(x), expected)
        assert (block.gate(x) - 0.5).abs().max() < 8 / (4 * 64)  # within |x_hat| / (4C) of 0.5, |x_hat| < 8 here


def test_state_dict_keys_and_cost():
    block = NAMAttention(256)
    assert list(block.state_dict()) == [f"Channel_Att.bn2.{k}" for k in Att(256, 20).Channel_Att.bn2.state_dict()]
    assert sum(p.numel() for p in block.parameters()) == 512


def test_alias_and_no_args():
    with pytest.raises(BlockArgumentError, match=r"NAMAttention: input channels must be a positive integer"):
        NAMAttention(0)


@pytest.mark.seam
def test_rows_and_row_errors():
    assert isinstance(build(small_yaml([[-1, 1, "NAM", []]])).model[5], NAMAttention)
    with pytest.raises(yolo_attn.YAMLRowError, match=r"layer 5 .*NAM"):
        build(small_yaml([[-1, 1, "NAM", [16]]]))  # a channel count or a fork's t=16: NAM takes no args


@pytest.mark.parametrize(("base", "scale"), BUILD_CASES)
def test_builds_from_yaml_rows_at_p3_and_p5(base, scale):
    built = blocks_at_p3_and_p5(base, scale, ("NAMAttention", []), ("NAM", []), NAMAttention)
    assert [m.Channel_Att.bn2.num_features for m, _ in built] == [c for _, c in built]
