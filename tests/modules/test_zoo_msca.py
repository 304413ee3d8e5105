"""MSCA (Visual-Attention-Network/SegNeXt ``AttentionModule``): math against the restated authors' module, sizes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from yolo_attn import registry
from yolo_attn.modules import MSCA, BlockArgumentError
from yolo_attn.modules.random_weights import randomize_

ATOL = 1e-4  # the unbounded multiplier makes outputs of order 10-100 with random weights
SIZES = [(1, 1), (1, 7), (7, 1), (2, 2), (3, 5), (4, 4), (15, 20), (20, 15)]


class AttentionModule(nn.Module):
    """SegNeXt ``mmseg/models/backbones/mscan.py`` ``AttentionModule``, restated without mmcv's BaseModule."""

    def __init__(self, dim):
        super().__init__()
        self.conv0 = nn.Conv2d(dim, dim, 5, padding=2, groups=dim)
        self.conv0_1 = nn.Conv2d(dim, dim, (1, 7), padding=(0, 3), groups=dim)
        self.conv0_2 = nn.Conv2d(dim, dim, (7, 1), padding=(3, 0), groups=dim)
        self.conv1_1 = nn.Conv2d(dim, dim, (1, 11), padding=(0, 5), groups=dim)
        self.conv1_2 = nn.Conv2d(dim, dim, (11, 1), padding=(5, 0), groups=dim)
        self.conv2_1 = nn.Conv2d(dim, dim, (1, 21), padding=(0, 10), groups=dim)
        self.conv2_2 = nn.Conv2d(dim, dim, (21, 1), padding=(10, 0), groups=dim)
        self.conv3 = nn.Conv2d(dim, dim, 1)

    def forward(self, x):
        u = x.clone()
        attn = self.conv0(x)
        attn_0 = self.conv0_1(attn)
        attn_0 = self.conv0_2(attn_0)
        attn_1 = self.conv1_1(attn)
        attn_1 = self.conv1_2(attn_1)
        attn_2 = self.conv2_1(attn)
        attn_2 = self.conv2_2(attn_2)
        attn = attn + attn_0 + attn_1 + attn_2
        attn = self.conv3(attn)
        return attn * u


def _close(ours: torch.Tensor, theirs: torch.Tensor) -> None:
    torch.testing.assert_close(ours, theirs, atol=ATOL * max(1.0, float(theirs.abs().max())), rtol=0)


@pytest.mark.parametrize("c", [16, 48])
@pytest.mark.parametrize("shape", [(2, 12, 12), (1, 13, 7)])
def test_matches_the_reference_and_loads_its_state_dict_both_ways(c, shape):
    reference = randomize_(AttentionModule(c), 1, fan_in=True).eval()
    ours = MSCA(c).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(shape[0], c, *shape[1:], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        _close(ours(x), reference(x))
    AttentionModule(c).load_state_dict(randomize_(MSCA(c), 2).state_dict(), strict=True)


def test_runs_at_every_feature_map_size():
    reference = randomize_(AttentionModule(16), 3, fan_in=True).eval()
    ours = MSCA(16).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    for size in SIZES:
        x = torch.randn(2, 16, *size, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            _close(ours(x), reference(x))


def test_the_forks_name_is_an_alias():
    assert registry.get("SegNext_Attention").cls is MSCA


@pytest.mark.parametrize("bad", [0, -16, 16.0, "16"])
def test_bad_channels_are_refused(bad):
    with pytest.raises(BlockArgumentError, match=r"MSCA: input channels must be a positive integer"):
        MSCA(bad)
