"""EfficientAttention (qhfan/CloFormer): math against the authors' module restated, every map size, arg errors."""

from __future__ import annotations

from typing import List  # noqa: UP035 (the authors' annotations)

import pytest
import torch
from torch import nn

from yolo_attn.modules import BlockArgumentError, EfficientAttention
from yolo_attn.modules.random_weights import randomize_

ATOL = 1e-5


# ---- qhfan/CloFormer classification/models/blocks.py, restated (MemoryEfficientSwish is x * sigmoid(x)) -----------
class MemoryEfficientSwish(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(x)


class AttnMap(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.act_block = nn.Sequential(
            nn.Conv2d(dim, dim, 1, 1, 0), MemoryEfficientSwish(), nn.Conv2d(dim, dim, 1, 1, 0)
        )

    def forward(self, x):
        return self.act_block(x)


class ReferenceEfficientAttention(nn.Module):
    def __init__(self, dim, num_heads, group_split: List[int], kernel_sizes: List[int], window_size=7,  # noqa: UP006
                 attn_drop=0.0, proj_drop=0.0, qkv_bias=True):  # fmt: skip
        super().__init__()
        assert sum(group_split) == num_heads
        assert len(kernel_sizes) + 1 == len(group_split)
        self.dim = dim
        self.num_heads = num_heads
        self.dim_head = dim // num_heads
        self.scalor = self.dim_head**-0.5
        self.kernel_sizes = kernel_sizes
        self.window_size = window_size
        self.group_split = group_split
        convs = []
        act_blocks = []
        qkvs = []
        for i in range(len(kernel_sizes)):
            kernel_size = kernel_sizes[i]
            group_head = group_split[i]
            if group_head == 0:
                continue
            convs.append(nn.Conv2d(3 * self.dim_head * group_head, 3 * self.dim_head * group_head, kernel_size, 1,
                                   kernel_size // 2, groups=3 * self.dim_head * group_head))  # fmt: skip
            act_blocks.append(AttnMap(self.dim_head * group_head))
            qkvs.append(nn.Conv2d(dim, 3 * group_head * self.dim_head, 1, 1, 0, bias=qkv_bias))
        if group_split[-1] != 0:
            self.global_q = nn.Conv2d(dim, group_split[-1] * self.dim_head, 1, 1, 0, bias=qkv_bias)
            self.global_kv = nn.Conv2d(dim, group_split[-1] * self.dim_head * 2, 1, 1, 0, bias=qkv_bias)
            self.avgpool = nn.AvgPool2d(window_size, window_size) if window_size != 1 else nn.Identity()
        self.convs = nn.ModuleList(convs)
        self.act_blocks = nn.ModuleList(act_blocks)
        self.qkvs = nn.ModuleList(qkvs)
        self.proj = nn.Conv2d(dim, dim, 1, 1, 0, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj_drop = nn.Dropout(proj_drop)

    def high_fre_attntion(self, x, to_qkv, mixer, attn_block):
        b, _c, h, w = x.size()
        qkv = to_qkv(x)
        qkv = mixer(qkv).reshape(b, 3, -1, h, w).transpose(0, 1).contiguous()
        q, k, v = qkv
        attn = attn_block(q.mul(k)).mul(self.scalor)
        attn = self.attn_drop(torch.tanh(attn))
        return attn.mul(v)

    def low_fre_attention(self, x, to_q, to_kv, avgpool):
        b, _c, h, w = x.size()
        q = to_q(x).reshape(b, -1, self.dim_head, h * w).transpose(-1, -2).contiguous()
        kv = avgpool(x)
        kv = to_kv(kv).view(b, 2, -1, self.dim_head, (h * w) // (self.window_size**2)).permute(1, 0, 2, 4, 3)
        k, v = kv.contiguous()
        attn = self.scalor * q @ k.transpose(-1, -2)
        attn = self.attn_drop(attn.softmax(dim=-1))
        res = attn @ v
        return res.transpose(2, 3).reshape(b, -1, h, w).contiguous()

    def forward(self, x):
        res = []
        for i in range(len(self.kernel_sizes)):
            if self.group_split[i] == 0:
                continue
            res.append(self.high_fre_attntion(x, self.qkvs[i], self.convs[i], self.act_blocks[i]))
        if self.group_split[-1] != 0:
            res.append(self.low_fre_attention(x, self.global_q, self.global_kv, self.avgpool))
        return self.proj_drop(self.proj(torch.cat(res, dim=1)))


# ---- tests ---------------------------------------------------------------------------------------------------------
CONFIGS = [
    (64, [8, [4, 4], [5], 4]),  # the forks' (and the YAML) defaults
    (32, [4, [1, 2, 1], [3, 5], 2]),
    (48, [3, [1, 1, 1], [7, 5], 4, 0.0, 0.0, False]),  # the authors' __main__ example's split, no bias
    (32, [4, [4, 0], [3], 4]),  # no global heads
    (16, [2, [1, 1], [5], 1]),  # window 1: no pooling
]


@pytest.mark.parametrize(("c", "args"), CONFIGS)
@pytest.mark.parametrize("shape", [(2, 8, 8), (1, 12, 16), (1, 16, 4)])
def test_matches_the_reference_and_loads_its_state_dict_both_ways(c, args, shape):
    reference = randomize_(ReferenceEfficientAttention(c, *args), 1).eval()
    ours = EfficientAttention(c, *args).eval()
    assert ours.load_state_dict(reference.state_dict(), strict=True) is not None
    x = torch.randn(shape[0], c, *shape[1:], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), atol=ATOL, rtol=1e-5)
    fresh = ReferenceEfficientAttention(c, *args)
    assert fresh.load_state_dict(randomize_(EfficientAttention(c, *args), 2).state_dict(), strict=True) is not None


def test_defaults_are_the_forks_arguments():
    block = EfficientAttention(64)
    assert (block.num_heads, block.group_split, block.kernel_sizes, block.window_size) == (8, [4, 4], [5], 4)


@pytest.mark.parametrize("hw", [(1, 1), (1, 7), (7, 1), (2, 2), (3, 5), (4, 4), (15, 20), (20, 15)])
def test_every_map_size_runs_and_pools_only_real_positions(hw):
    block = randomize_(EfficientAttention(32, 4, [2, 2], [5], 4), 0).eval()
    x = torch.randn(2, 32, *hw)
    with torch.no_grad():
        y = block(x)
        assert y.shape == x.shape and bool(torch.isfinite(y).all())
        # on a constant map the mean over each window's real positions (ours: padding does not count) is the
        # constant, as is the reference's mean on the map extended with the constant to multiples of the window
        h, w = hw
        hp, wp = -(-h // 4) * 4, -(-w // 4) * 4
        const = torch.randn(1, 32, 1, 1).expand(2, 32, hp, wp)  # constant map: every window mean is the constant
        reference = ReferenceEfficientAttention(32, 4, [2, 2], [5], 4).eval()
        reference.load_state_dict(block.state_dict())
        ours_low = block.low_fre_attention(const[:, :, :h, :w])
        ref_low = reference.low_fre_attention(const, reference.global_q, reference.global_kv, reference.avgpool)
        torch.testing.assert_close(ours_low, ref_low[:, :, :h, :w], atol=ATOL, rtol=1e-5)
    assert block.train()(x).shape == x.shape


@pytest.mark.parametrize(
    ("c", "args", "match"),
    [
        (60, [8], r"num_heads=8 must divide the input channels, but 60"),
        (64, [8, [4, 2]], r"group_split=\[4, 2\] must be head counts >= 0 that sum to num_heads=8"),
        (64, [8, [2, 2, 4], [5]], r"group_split=\[2, 2, 4\] needs one entry per kernel size"),
        (64, [8, [0, 4, 4], [3, 5]], r"group_split=\[0, 4, 4\] has a local group without heads"),
        (64, [8, [4, 4], [4]], r"kernel_sizes=\[4\] must be odd"),
        (64, [8, [4, 4], [5], 0], r"window_size \(pooling window"),
        (64, [8, "44"], r"group_split must be a non-empty list of integers"),
        (64, [8, [4, 4], [5], 4, 1.0], r"attn_drop must be a number in \[0, 1\)"),
        (64, [256], r"num_heads=256 must divide|heads"),
    ],
)
def test_bad_args_are_refused_at_build_time(c, args, match):
    with pytest.raises(BlockArgumentError, match=rf"EfficientAttention: {match}"):
        EfficientAttention(c, *args)
