"""LocalWindowAttention (microsoft/Cream EfficientViT): math against the authors' module restated, any size, errors."""

from __future__ import annotations

import itertools

import pytest
import torch

from yolo_attn.modules import BlockArgumentError, LocalWindowAttention
from yolo_attn.modules.random_weights import randomize_

ATOL = 1e-5


# ---- microsoft/Cream EfficientViT/classification/model/efficientvit.py, restated --------------------------------
class Conv2d_BN(torch.nn.Sequential):
    def __init__(self, a, b, ks=1, stride=1, pad=0, dilation=1, groups=1, bn_weight_init=1, resolution=-10000):
        super().__init__()
        self.add_module("c", torch.nn.Conv2d(a, b, ks, stride, pad, dilation, groups, bias=False))
        self.add_module("bn", torch.nn.BatchNorm2d(b))
        torch.nn.init.constant_(self.bn.weight, bn_weight_init)
        torch.nn.init.constant_(self.bn.bias, 0)


class CascadedGroupAttention(torch.nn.Module):
    def __init__(self, dim, key_dim, num_heads=8, attn_ratio=4, resolution=14, kernels=(5, 5, 5, 5)):
        super().__init__()
        self.num_heads = num_heads
        self.scale = key_dim**-0.5
        self.key_dim = key_dim
        self.d = int(attn_ratio * key_dim)
        self.attn_ratio = attn_ratio
        qkvs = []
        dws = []
        for i in range(num_heads):
            qkvs.append(Conv2d_BN(dim // (num_heads), self.key_dim * 2 + self.d, resolution=resolution))
            dws.append(Conv2d_BN(self.key_dim, self.key_dim, kernels[i], 1, kernels[i] // 2, groups=self.key_dim,
                                 resolution=resolution))  # fmt: skip
        self.qkvs = torch.nn.ModuleList(qkvs)
        self.dws = torch.nn.ModuleList(dws)
        self.proj = torch.nn.Sequential(
            torch.nn.ReLU(), Conv2d_BN(self.d * num_heads, dim, bn_weight_init=0, resolution=resolution)
        )
        points = list(itertools.product(range(resolution), range(resolution)))
        N = len(points)
        attention_offsets = {}
        idxs = []
        for p1 in points:
            for p2 in points:
                offset = (abs(p1[0] - p2[0]), abs(p1[1] - p2[1]))
                if offset not in attention_offsets:
                    attention_offsets[offset] = len(attention_offsets)
                idxs.append(attention_offsets[offset])
        self.attention_biases = torch.nn.Parameter(torch.zeros(num_heads, len(attention_offsets)))
        self.register_buffer("attention_bias_idxs", torch.LongTensor(idxs).view(N, N))

    @torch.no_grad()
    def train(self, mode=True):
        super().train(mode)
        if mode and hasattr(self, "ab"):
            del self.ab
        else:
            self.ab = self.attention_biases[:, self.attention_bias_idxs]

    def forward(self, x):
        B, _C, H, W = x.shape
        trainingab = self.attention_biases[:, self.attention_bias_idxs]
        feats_in = x.chunk(len(self.qkvs), dim=1)
        feats_out = []
        feat = feats_in[0]
        for i, qkv in enumerate(self.qkvs):
            if i > 0:
                feat = feat + feats_in[i]
            feat = qkv(feat)
            q, k, v = feat.view(B, -1, H, W).split([self.key_dim, self.key_dim, self.d], dim=1)
            q = self.dws[i](q)
            q, k, v = q.flatten(2), k.flatten(2), v.flatten(2)
            attn = (q.transpose(-2, -1) @ k) * self.scale + (trainingab[i] if self.training else self.ab[i])
            attn = attn.softmax(dim=-1)
            feat = (v @ attn.transpose(-2, -1)).view(B, self.d, H, W)
            feats_out.append(feat)
        return self.proj(torch.cat(feats_out, 1))


class ReferenceLocalWindowAttention(torch.nn.Module):
    """The authors' class; ``check_resolution=False`` drops only its classification assert (H = W = resolution)."""

    def __init__(self, dim, key_dim, num_heads=8, attn_ratio=4, resolution=14, window_resolution=7,
                 kernels=(5, 5, 5, 5), check_resolution=True):  # fmt: skip
        super().__init__()
        self.dim = dim
        self.num_heads = num_heads
        self.resolution = resolution
        assert window_resolution > 0, "window_size must be greater than 0"
        self.window_resolution = window_resolution
        self.check_resolution = check_resolution
        window_resolution = min(window_resolution, resolution)
        self.attn = CascadedGroupAttention(dim, key_dim, num_heads, attn_ratio=attn_ratio,
                                           resolution=window_resolution, kernels=kernels)  # fmt: skip

    def forward(self, x):
        H = W = self.resolution
        B, C, H_, W_ = x.shape
        if self.check_resolution:
            assert H == H_ and W == W_, f"input feature has wrong size, expect {(H, W)}, got {(H_, W_)}"
        else:
            H, W = H_, W_
        if self.window_resolution >= H and self.window_resolution >= W:
            x = self.attn(x)
        else:
            x = x.permute(0, 2, 3, 1)
            pad_b = (self.window_resolution - H % self.window_resolution) % self.window_resolution
            pad_r = (self.window_resolution - W % self.window_resolution) % self.window_resolution
            padding = pad_b > 0 or pad_r > 0
            if padding:
                x = torch.nn.functional.pad(x, (0, 0, 0, pad_r, 0, pad_b))
            pH, pW = H + pad_b, W + pad_r
            nH = pH // self.window_resolution
            nW = pW // self.window_resolution
            x = (
                x.view(B, nH, self.window_resolution, nW, self.window_resolution, C)
                .transpose(2, 3)
                .reshape(B * nH * nW, self.window_resolution, self.window_resolution, C)
                .permute(0, 3, 1, 2)
            )
            x = self.attn(x)
            x = (
                x.permute(0, 2, 3, 1)
                .view(B, nH, nW, self.window_resolution, self.window_resolution, C)
                .transpose(2, 3)
                .reshape(B, pH, pW, C)
            )
            if padding:
                x = x[:, :H, :W].contiguous()
            x = x.permute(0, 3, 1, 2)
        return x


# ---- tests ---------------------------------------------------------------------------------------------------------
def reference_for(c, key_dim=16, num_heads=4, attn_ratio=None, resolution=14, window_resolution=7,
                  kernels=(5, 5, 5, 5), check_resolution=True):  # fmt: skip
    """The authors' module as EfficientViT builds it (attn_ratio = C / (key_dim num_heads) when null)."""
    ratio = c / (key_dim * num_heads) if attn_ratio is None else attn_ratio
    return ReferenceLocalWindowAttention(c, key_dim, num_heads, ratio, resolution, window_resolution, kernels,
                                         check_resolution)  # fmt: skip


CASES = [  # (C, our args, input H x W, the reference's resolution check kept)
    (64, [], (14, 14), True),  # the defaults: 2 x 2 windows of 7
    (32, [8, 2, None, 5, 7, [3, 5]], (5, 5), True),  # one window smaller than window_resolution: r = 5
    (48, [16, 3, None, 21, 7, [5, 3, 7]], (21, 21), True),  # 3 x 3 windows
    (64, [], (15, 20), False),  # non-square, padded to 21 x 21
    (32, [16, 1, 2.0, 14, 4, [3]], (9, 6), False),  # one head (no cascade): any attn_ratio
]


@pytest.mark.parametrize(("c", "args", "hw", "check"), CASES)
def test_matches_the_reference_and_loads_its_state_dict_both_ways(c, args, hw, check):
    names = ["key_dim", "num_heads", "attn_ratio", "resolution", "window_resolution", "kernels"]
    ref_kwargs = dict(zip(names, args, strict=False))
    if not check:
        ref_kwargs["resolution"] = ref_kwargs.get("resolution", 14)
    reference = randomize_(reference_for(c, **ref_kwargs, check_resolution=check), 1).eval()  # eval: caches ab
    ours = LocalWindowAttention(c, *args).eval()
    assert ours.load_state_dict(reference.state_dict(), strict=True) is not None
    for batch in (2, 1):
        x = torch.randn(batch, c, *hw, generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            torch.testing.assert_close(ours(x), reference(x), atol=ATOL, rtol=1e-5)
    fresh = reference_for(c, **ref_kwargs)
    assert fresh.load_state_dict(randomize_(LocalWindowAttention(c, *args), 2).state_dict(), strict=True) is not None
    assert torch.equal(fresh.attn.attention_bias_idxs, LocalWindowAttention(c, *args).attn.attention_bias_idxs)


def test_the_bias_never_goes_stale_after_load_state_dict_to_or_half():
    x = torch.randn(1, 32, 9, 9)
    ours = LocalWindowAttention(32).eval()
    other = randomize_(LocalWindowAttention(32), 3).eval()
    ours.load_state_dict(other.state_dict())  # after eval(): the authors' cached ab would keep the old biases
    with torch.no_grad():
        torch.testing.assert_close(ours(x), other(x), atol=0, rtol=0)
        expected = ours.double()(x.double())
        assert ours.attn.attention_bias_idxs.dtype == torch.long
        torch.testing.assert_close(ours.float()(x), expected.float(), atol=1e-5, rtol=1e-5)
    assert not hasattr(ours.attn, "ab")


@pytest.mark.parametrize("hw", [(1, 1), (1, 7), (7, 1), (2, 2), (3, 5), (4, 4), (7, 7), (8, 9), (15, 20), (20, 15)])
def test_every_map_size_runs(hw):
    block = randomize_(LocalWindowAttention(32), 0)
    x = torch.randn(2, 32, *hw)
    for mode in (True, False):
        y = block.train(mode)(x)
        assert y.shape == x.shape and bool(torch.isfinite(y).all())


def test_a_small_map_is_one_window_with_the_tables_biases_for_its_offsets():
    # a 3 x 5 map within a 7 x 7 window is one window; its bias for positions n, m is the authors' table entry of the
    # offset (|dy|, |dx|), numbered as the authors number the offsets of the 7 x 7 window
    block = randomize_(LocalWindowAttention(32), 4).eval()
    reference = reference_for(32, resolution=7).eval()
    reference.load_state_dict(block.state_dict())
    points = list(itertools.product(range(7), range(7)))
    offsets = {}
    for p1 in points:
        for p2 in points:
            offsets.setdefault((abs(p1[0] - p2[0]), abs(p1[1] - p2[1])), len(offsets))
    small = list(itertools.product(range(3), range(5)))
    idxs = torch.LongTensor([[offsets[(abs(a[0] - b[0]), abs(a[1] - b[1]))] for b in small] for a in small])
    x = torch.randn(2, 32, 3, 5)
    with torch.no_grad():
        reference.attn.ab = reference.attn.attention_biases[:, idxs]
        torch.testing.assert_close(block(x), reference.attn(x), atol=ATOL, rtol=1e-5)


@pytest.mark.parametrize(
    ("c", "args", "match"),
    [
        (60, [16, 8], r"num_heads=8 must divide the input channels, but 60"),
        (64, [16, 8], r"kernels=\[5, 5, 5, 5\] has 4 sizes for num_heads=8"),
        (64, [16, 4, None, 14, 7, [5, 4, 5, 5]], r"kernels must be a list of odd positive kernel sizes"),
        (64, [16, 4, 4], r"attn_ratio=4 gives value width int\(4 \* 16\) = 64 per head, but .* 16-channel input"),
        (64, [16, 4, None, 0], r"resolution \(bound on the window side\)"),
        (64, [16, 4, None, 14, 0], r"window_resolution \(window side\)"),
        (64, [0], r"key_dim \(query and key channels per head\)"),
    ],
)
def test_bad_args_are_refused_at_build_time(c, args, match):
    with pytest.raises(BlockArgumentError, match=rf"LocalWindowAttention: {match}"):
        LocalWindowAttention(c, *args)
