"""iRMB (zhangzjn/EMO): math against the authors' module restated, state dicts both ways, every map size, arg errors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from yolo_attn.modules import BlockArgumentError, iRMB
from yolo_attn.modules.random_weights import randomize_

ATOL = 1e-5


# ---- zhangzjn/EMO model/basic_modules.py and model/emo.py, restated without einops and timm ----------------------
class LayerNorm2d(nn.Module):
    def __init__(self, normalized_shape, eps=1e-6, elementwise_affine=True):
        super().__init__()
        self.norm = nn.LayerNorm(normalized_shape, eps, elementwise_affine)

    def forward(self, x):
        return self.norm(x.permute(0, 2, 3, 1).contiguous()).permute(0, 3, 1, 2).contiguous()


def get_norm(norm_layer):
    eps = 1e-6
    return {"none": nn.Identity, "bn_2d": lambda c: nn.BatchNorm2d(c, eps=eps), "ln_2d": lambda c: LayerNorm2d(c, eps)}[
        norm_layer
    ]


def get_act(act_layer):
    return {"none": nn.Identity, "relu": nn.ReLU, "silu": nn.SiLU, "gelu": nn.GELU}[act_layer]


class ConvNormAct(nn.Module):
    def __init__(self, dim_in, dim_out, kernel_size, stride=1, dilation=1, groups=1, bias=False, skip=False,
                 norm_layer="bn_2d", act_layer="relu", inplace=True, drop_path_rate=0.0):  # fmt: skip
        super().__init__()
        self.has_skip = skip and dim_in == dim_out
        padding = math.ceil((kernel_size - stride) / 2)
        self.conv = nn.Conv2d(dim_in, dim_out, kernel_size, stride, padding, dilation, groups, bias)
        self.norm = get_norm(norm_layer)(dim_out)
        self.act = get_act(act_layer)()
        self.drop_path = nn.Identity()

    def forward(self, x):
        shortcut = x
        x = self.act(self.norm(self.conv(x)))
        if self.has_skip:
            x = self.drop_path(x) + shortcut
        return x


class SE(nn.Module):  # timm.models.efficientnet_blocks.SqueezeExcite
    def __init__(self, in_chs, rd_ratio=0.25, act_layer=nn.ReLU):
        super().__init__()
        rd_channels = round(in_chs * rd_ratio)
        self.conv_reduce = nn.Conv2d(in_chs, rd_channels, 1, bias=True)
        self.act1 = act_layer()
        self.conv_expand = nn.Conv2d(rd_channels, in_chs, 1, bias=True)
        self.gate = nn.Sigmoid()

    def forward(self, x):
        x_se = self.conv_expand(self.act1(self.conv_reduce(x.mean((2, 3), keepdim=True))))
        return x * self.gate(x_se)


def to_windows(x, n1, n2):
    """'b c (h1 n1) (w1 n2) -> (b n1 n2) c h1 w1', by strided slicing."""
    return torch.stack([torch.stack([x[:, :, i::n1, j::n2] for j in range(n2)], 1) for i in range(n1)], 1).flatten(0, 2)


def from_windows(x, n1, n2):
    """'(b n1 n2) c h1 w1 -> b c (h1 n1) (w1 n2)', by strided assignment."""
    bnn, c, h1, w1 = x.shape
    x = x.reshape(bnn // (n1 * n2), n1, n2, c, h1, w1)
    out = x.new_zeros(x.shape[0], c, h1 * n1, w1 * n2)
    for i in range(n1):
        for j in range(n2):
            out[:, :, i::n1, j::n2] = x[:, i, j]
    return out


class ReferenceIRMB(nn.Module):
    def __init__(self, dim_in, dim_out, norm_in=True, has_skip=True, exp_ratio=1.0, norm_layer="bn_2d",
                 act_layer="relu", v_proj=True, dw_ks=3, stride=1, dilation=1, se_ratio=0.0, dim_head=64, window_size=7,
                 attn_s=True, qkv_bias=False, attn_drop=0.0, drop=0.0, drop_path=0.0, v_group=False,
                 attn_pre=False):  # fmt: skip
        super().__init__()
        self.norm = get_norm(norm_layer)(dim_in) if norm_in else nn.Identity()
        dim_mid = int(dim_in * exp_ratio)
        self.has_skip = (dim_in == dim_out and stride == 1) and has_skip
        self.attn_s = attn_s
        if self.attn_s:
            assert dim_in % dim_head == 0, "dim should be divisible by num_heads"
            self.dim_head = dim_head
            self.window_size = window_size
            self.num_head = dim_in // dim_head
            self.scale = self.dim_head**-0.5
            self.attn_pre = attn_pre
            self.qk = ConvNormAct(dim_in, int(dim_in * 2), kernel_size=1, bias=qkv_bias, norm_layer="none",
                                  act_layer="none")  # fmt: skip
            self.v = ConvNormAct(dim_in, dim_mid, kernel_size=1, groups=self.num_head if v_group else 1, bias=qkv_bias,
                                 norm_layer="none", act_layer=act_layer)  # fmt: skip
            self.attn_drop = nn.Dropout(attn_drop)
        elif v_proj:
            self.v = ConvNormAct(dim_in, dim_mid, kernel_size=1, bias=qkv_bias, norm_layer="none", act_layer=act_layer)
        else:
            self.v = nn.Identity()
        self.conv_local = ConvNormAct(dim_mid, dim_mid, kernel_size=dw_ks, stride=stride, dilation=dilation,
                                      groups=dim_mid, norm_layer="bn_2d", act_layer="silu")  # fmt: skip
        self.se = SE(dim_mid, rd_ratio=se_ratio, act_layer=get_act(act_layer)) if se_ratio > 0.0 else nn.Identity()
        self.proj_drop = nn.Dropout(drop)
        self.proj = ConvNormAct(dim_mid, dim_out, kernel_size=1, norm_layer="none", act_layer="none")
        self.drop_path = nn.Identity()

    def forward(self, x):
        shortcut = x
        x = self.norm(x)
        _B, _C, H, W = x.shape
        if self.attn_s:
            if self.window_size <= 0:
                window_size_W, window_size_H = W, H
            else:
                window_size_W, window_size_H = self.window_size, self.window_size
            pad_l, pad_t = 0, 0
            pad_r = (window_size_W - W % window_size_W) % window_size_W
            pad_b = (window_size_H - H % window_size_H) % window_size_H
            x = F.pad(x, (pad_l, pad_r, pad_t, pad_b, 0, 0))
            n1, n2 = (H + pad_b) // window_size_H, (W + pad_r) // window_size_W
            x = to_windows(x, n1, n2).contiguous()
            b, _c, h, w = x.shape
            qk = self.qk(x)
            # 'b (qk heads dim_head) h w -> qk b heads (h w) dim_head'
            qk = qk.reshape(b, 2, self.num_head, self.dim_head, h * w).permute(1, 0, 2, 4, 3).contiguous()
            q, k = qk[0], qk[1]
            attn_spa = (q @ k.transpose(-2, -1)) * self.scale
            attn_spa = attn_spa.softmax(dim=-1)
            attn_spa = self.attn_drop(attn_spa)
            if self.attn_pre:
                x = x.reshape(b, self.num_head, -1, h * w).permute(0, 1, 3, 2).contiguous()
                x_spa = attn_spa @ x
                x_spa = x_spa.permute(0, 1, 3, 2).reshape(b, -1, h, w).contiguous()
                x_spa = self.v(x_spa)
            else:
                v = self.v(x)
                v = v.reshape(b, self.num_head, -1, h * w).permute(0, 1, 3, 2).contiguous()
                x_spa = attn_spa @ v
                x_spa = x_spa.permute(0, 1, 3, 2).reshape(b, -1, h, w).contiguous()
            x = from_windows(x_spa, n1, n2).contiguous()
            if pad_r > 0 or pad_b > 0:
                x = x[:, :, :H, :W].contiguous()
        else:
            x = self.v(x)
        x = x + self.se(self.conv_local(x)) if self.has_skip else self.se(self.conv_local(x))
        x = self.proj_drop(x)
        x = self.proj(x)
        x = (shortcut + self.drop_path(x)) if self.has_skip else x
        return x


# ---- tests ---------------------------------------------------------------------------------------------------------
KEYS = ["norm_in", "has_skip", "exp_ratio", "norm_layer", "act_layer", "v_proj", "dw_ks", "stride", "dilation",
        "se_ratio", "dim_head", "window_size", "attn_s", "qkv_bias", "attn_drop", "drop", "drop_path", "v_group",
        "attn_pre"]  # fmt: skip
CONFIGS = [
    (32, {}),
    (
        48,
        {"exp_ratio": 2.0, "norm_layer": "ln_2d", "act_layer": "gelu", "dw_ks": 5, "qkv_bias": True, "attn_pre": True},
    ),
    (64, {"exp_ratio": 2.0, "act_layer": "silu", "se_ratio": 0.25, "window_size": 4, "v_group": True}),
    (32, {"has_skip": False, "window_size": 0, "dim_head": 8}),
    (16, {"attn_s": False, "exp_ratio": 3.0}),
    (16, {"attn_s": False, "v_proj": False, "norm_in": False}),
]


@pytest.mark.parametrize(("c", "kwargs"), CONFIGS)
@pytest.mark.parametrize("shape", [(2, 14, 14), (1, 15, 20), (1, 3, 5)])
def test_matches_the_reference_and_loads_its_state_dict_both_ways(c, kwargs, shape):
    ref_kwargs = {"dim_head": 16, **kwargs}
    reference = randomize_(ReferenceIRMB(c, c, **ref_kwargs), 1).eval()
    ours = iRMB(c, **kwargs).eval()
    assert ours.load_state_dict(reference.state_dict(), strict=True) is not None
    x = torch.randn(shape[0], c, *shape[1:], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), atol=ATOL, rtol=1e-5)
    fresh = ReferenceIRMB(c, c, **ref_kwargs)
    assert fresh.load_state_dict(randomize_(iRMB(c, **kwargs), 2).state_dict(), strict=True) is not None


def test_the_yaml_args_are_the_authors_keywords_in_order():
    import inspect

    assert list(inspect.signature(iRMB).parameters)[1:] == KEYS
    assert inspect.signature(iRMB).parameters["dim_head"].default == 16


@pytest.mark.parametrize("hw", [(1, 1), (1, 7), (7, 1), (2, 2), (3, 5), (4, 4), (7, 7), (8, 9), (15, 20), (20, 15)])
def test_every_map_size_runs_and_matches_the_reference(hw):
    reference = randomize_(ReferenceIRMB(32, 32, dim_head=16), 3).eval()
    ours = iRMB(32).eval()
    ours.load_state_dict(reference.state_dict())
    x = torch.randn(1, 32, *hw)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), atol=ATOL, rtol=1e-5)
    x2 = torch.randn(2, 32, *hw)  # batch 2: BatchNorm trains on more than one value per channel
    assert ours.train()(x2).shape == x2.shape


def test_starts_as_the_identity_by_zeroing_proj_or_with_the_mix_without_skip():
    x = torch.randn(2, 32, 9, 11)
    for kwargs in ({}, {"has_skip": False}):
        block = randomize_(iRMB(32, **kwargs), 0).start_as_identity().eval()
        with torch.no_grad():
            assert torch.equal(block(x), x)
    assert iRMB(32).identity_mix is None and iRMB(32, has_skip=False).zero_output is None


@pytest.mark.parametrize(
    ("c", "kwargs", "match"),
    [
        (48, {"dim_head": 32}, r"dim_head=32 must divide the input channels, but 48"),
        (32, {"dim_head": 64}, r"dim_head=64 must divide"),
        (32, {"exp_ratio": 1.1, "dim_head": 8}, r"exp_ratio=1.1 gives 35 value channels, which the 4 heads"),
        (32, {"stride": 2}, r"stride must be 1"),
        (32, {"dilation": 2}, r"dilation must be 1"),
        (32, {"dw_ks": 4}, r"dw_ks=4 is even"),
        (32, {"norm_layer": "gn"}, r"norm_layer must be one of"),
        (32, {"act_layer": "swishy"}, r"act_layer must be one of"),
        (32, {"se_ratio": 0.001}, r"se_ratio=0.001 leaves the squeeze-excite gate no channel"),
        (
            32,
            {"attn_s": False, "v_proj": False, "exp_ratio": 2.0},
            r"without attn_s and v_proj.* expand 32 to 64",
        ),
        (32, {"drop_path": 1.0}, r"drop_path must be a number in \[0, 1\)"),
        (32, {"window_size": 7.5}, r"window_size must be an integer"),
        (32, {"norm_in": 256}, r"norm_in must be true or false.*channel count is not a YAML arg"),
        (32, {"exp_ratio": 0}, r"exp_ratio must be a positive number"),
    ],
)
def test_bad_args_are_refused_at_build_time(c, kwargs, match):
    with pytest.raises(BlockArgumentError, match=rf"iRMB: {match}"):
        iRMB(c, **kwargs)
