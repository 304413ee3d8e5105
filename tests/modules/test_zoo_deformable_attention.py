"""DAttention (LeapLabTHU/DAT DAttentionBaseline): math against the restated reference, sizes, argument checks."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from yolo_attn.modules import BlockArgumentError, DAttention
from yolo_attn.modules.random_weights import randomize_
from yolo_attn.testing import export_onnx

ATOL = 1e-5


class LayerNormProxy(nn.Module):
    """LeapLabTHU/DAT ``models/dat_blocks.py`` ``LayerNormProxy`` (einops rearranges as permutes)."""

    def __init__(self, dim):
        super().__init__()
        self.norm = nn.LayerNorm(dim)

    def forward(self, x):
        x = x.permute(0, 2, 3, 1)
        x = self.norm(x)
        return x.permute(0, 3, 1, 2)


class DAttentionBaseline(nn.Module):
    """LeapLabTHU/DAT ``models/dat_blocks.py`` ``DAttentionBaseline`` (commit 32173fc), restated without einops/timm."""

    def __init__(
        self,
        q_size,
        kv_size,
        n_heads,
        n_head_channels,
        n_groups,
        attn_drop,
        proj_drop,
        stride,
        offset_range_factor,
        use_pe,
        dwc_pe,
        no_off,
        fixed_pe,
        ksize,
        log_cpb,
    ):
        super().__init__()
        self.dwc_pe = dwc_pe
        self.n_head_channels = n_head_channels
        self.scale = self.n_head_channels**-0.5
        self.n_heads = n_heads
        self.q_h, self.q_w = q_size
        self.kv_h, self.kv_w = self.q_h // stride, self.q_w // stride
        self.nc = n_head_channels * n_heads
        self.n_groups = n_groups
        self.n_group_channels = self.nc // self.n_groups
        self.n_group_heads = self.n_heads // self.n_groups
        self.use_pe = use_pe
        self.fixed_pe = fixed_pe
        self.no_off = no_off
        self.offset_range_factor = offset_range_factor
        self.ksize = ksize
        self.log_cpb = log_cpb
        self.stride = stride
        kk = self.ksize
        pad_size = kk // 2 if kk != stride else 0
        self.conv_offset = nn.Sequential(
            nn.Conv2d(self.n_group_channels, self.n_group_channels, kk, stride, pad_size, groups=self.n_group_channels),
            LayerNormProxy(self.n_group_channels),
            nn.GELU(),
            nn.Conv2d(self.n_group_channels, 2, 1, 1, 0, bias=False),
        )
        self.proj_q = nn.Conv2d(self.nc, self.nc, kernel_size=1, stride=1, padding=0)
        self.proj_k = nn.Conv2d(self.nc, self.nc, kernel_size=1, stride=1, padding=0)
        self.proj_v = nn.Conv2d(self.nc, self.nc, kernel_size=1, stride=1, padding=0)
        self.proj_out = nn.Conv2d(self.nc, self.nc, kernel_size=1, stride=1, padding=0)
        self.proj_drop = nn.Dropout(proj_drop, inplace=True)
        self.attn_drop = nn.Dropout(attn_drop, inplace=True)
        if self.use_pe and not self.no_off:
            if self.dwc_pe:
                self.rpe_table = nn.Conv2d(self.nc, self.nc, kernel_size=3, stride=1, padding=1, groups=self.nc)
            elif self.fixed_pe:
                self.rpe_table = nn.Parameter(torch.zeros(self.n_heads, self.q_h * self.q_w, self.kv_h * self.kv_w))
                nn.init.trunc_normal_(self.rpe_table, std=0.01)
            elif self.log_cpb:
                self.rpe_table = nn.Sequential(
                    nn.Linear(2, 32, bias=True), nn.ReLU(inplace=True), nn.Linear(32, self.n_group_heads, bias=False)
                )
            else:
                self.rpe_table = nn.Parameter(torch.zeros(self.n_heads, self.q_h * 2 - 1, self.q_w * 2 - 1))
                nn.init.trunc_normal_(self.rpe_table, std=0.01)
        else:
            self.rpe_table = None

    @torch.no_grad()
    def _get_ref_points(self, H_key, W_key, B, dtype, device):
        ref_y, ref_x = torch.meshgrid(
            torch.linspace(0.5, H_key - 0.5, H_key, dtype=dtype, device=device),
            torch.linspace(0.5, W_key - 0.5, W_key, dtype=dtype, device=device),
            indexing="ij",
        )
        ref = torch.stack((ref_y, ref_x), -1)
        ref[..., 1].div_(W_key - 1.0).mul_(2.0).sub_(1.0)
        ref[..., 0].div_(H_key - 1.0).mul_(2.0).sub_(1.0)
        return ref[None, ...].expand(B * self.n_groups, -1, -1, -1)

    @torch.no_grad()
    def _get_q_grid(self, H, W, B, dtype, device):
        ref_y, ref_x = torch.meshgrid(
            torch.arange(0, H, dtype=dtype, device=device),
            torch.arange(0, W, dtype=dtype, device=device),
            indexing="ij",
        )
        ref = torch.stack((ref_y, ref_x), -1)
        ref[..., 1].div_(W - 1.0).mul_(2.0).sub_(1.0)
        ref[..., 0].div_(H - 1.0).mul_(2.0).sub_(1.0)
        return ref[None, ...].expand(B * self.n_groups, -1, -1, -1)

    def forward(self, x):
        B, C, H, W = x.size()
        dtype, device = x.dtype, x.device
        q = self.proj_q(x)
        q_off = q.reshape(B * self.n_groups, self.n_group_channels, H, W)  # 'b (g c) h w -> (b g) c h w'
        offset = self.conv_offset(q_off).contiguous()
        Hk, Wk = offset.size(2), offset.size(3)
        n_sample = Hk * Wk
        if self.offset_range_factor >= 0 and not self.no_off:
            offset_range = torch.tensor([1.0 / (Hk - 1.0), 1.0 / (Wk - 1.0)], device=device).reshape(1, 2, 1, 1)
            offset = offset.tanh().mul(offset_range).mul(self.offset_range_factor)
        offset = offset.permute(0, 2, 3, 1)  # 'b p h w -> b h w p'
        reference = self._get_ref_points(Hk, Wk, B, dtype, device)
        if self.no_off:
            offset = offset.fill_(0.0)
        pos = offset + reference if self.offset_range_factor >= 0 else (offset + reference).clamp(-1.0, +1.0)
        if self.no_off:
            x_sampled = F.avg_pool2d(x, kernel_size=self.stride, stride=self.stride)
        else:
            x_sampled = F.grid_sample(
                input=x.reshape(B * self.n_groups, self.n_group_channels, H, W),
                grid=pos[..., (1, 0)],
                mode="bilinear",
                align_corners=True,
            )
        x_sampled = x_sampled.reshape(B, C, 1, n_sample)
        q = q.reshape(B * self.n_heads, self.n_head_channels, H * W)
        k = self.proj_k(x_sampled).reshape(B * self.n_heads, self.n_head_channels, n_sample)
        v = self.proj_v(x_sampled).reshape(B * self.n_heads, self.n_head_channels, n_sample)
        attn = torch.einsum("b c m, b c n -> b m n", q, k)
        attn = attn.mul(self.scale)
        if self.use_pe and (not self.no_off):
            if self.dwc_pe:
                residual_lepe = self.rpe_table(q.reshape(B, C, H, W)).reshape(
                    B * self.n_heads, self.n_head_channels, H * W
                )
            elif self.fixed_pe:
                attn_bias = self.rpe_table[None, ...].expand(B, -1, -1, -1)
                attn = attn + attn_bias.reshape(B * self.n_heads, H * W, n_sample)
            elif self.log_cpb:
                q_grid = self._get_q_grid(H, W, B, dtype, device)
                displacement = (
                    q_grid.reshape(B * self.n_groups, H * W, 2).unsqueeze(2)
                    - pos.reshape(B * self.n_groups, n_sample, 2).unsqueeze(1)
                ).mul(4.0)
                displacement = torch.sign(displacement) * torch.log2(torch.abs(displacement) + 1.0) / np.log2(8.0)
                attn_bias = self.rpe_table(displacement)  # B * g, H * W, n_sample, h_g
                attn = attn + attn_bias.permute(0, 3, 1, 2).reshape(B * self.n_heads, H * W, n_sample)
            else:
                rpe_bias = self.rpe_table[None, ...].expand(B, -1, -1, -1)
                q_grid = self._get_q_grid(H, W, B, dtype, device)
                displacement = (
                    q_grid.reshape(B * self.n_groups, H * W, 2).unsqueeze(2)
                    - pos.reshape(B * self.n_groups, n_sample, 2).unsqueeze(1)
                ).mul(0.5)
                attn_bias = F.grid_sample(
                    input=rpe_bias.reshape(B * self.n_groups, self.n_group_heads, *rpe_bias.shape[2:]),
                    grid=displacement[..., (1, 0)],
                    mode="bilinear",
                    align_corners=True,
                )
                attn_bias = attn_bias.reshape(B * self.n_heads, H * W, n_sample)
                attn = attn + attn_bias
        attn = F.softmax(attn, dim=2)
        attn = self.attn_drop(attn)
        out = torch.einsum("b m n, b c n -> b c m", attn, v)
        if self.use_pe and self.dwc_pe:
            out = out + residual_lepe
        out = out.reshape(B, C, H, W)
        y = self.proj_drop(self.proj_out(out))
        return y, pos.reshape(B, self.n_groups, Hk, Wk, 2), reference.reshape(B, self.n_groups, Hk, Wk, 2)


def reference_for(c: int, args: dict) -> DAttentionBaseline:
    """The authors' module as the forks' ``DAttention(channel, q_size, ...)`` builds it: n_head_channels = C / heads."""
    a = {
        "q_size": (20, 20),
        "n_heads": 8,
        "n_groups": 4,
        "attn_drop": 0.0,
        "proj_drop": 0.0,
        "stride": 1,
        "offset_range_factor": 4,
        "use_pe": True,
        "dwc_pe": True,
        "no_off": False,
        "fixed_pe": False,
        "ksize": 3,
        "log_cpb": False,
    } | args
    q_size = (a["q_size"], a["q_size"]) if isinstance(a["q_size"], int) else tuple(a["q_size"])
    return DAttentionBaseline(
        q_size, None, a["n_heads"], c // a["n_heads"], a["n_groups"], a["attn_drop"], a["proj_drop"], a["stride"],
        a["offset_range_factor"], a["use_pe"], a["dwc_pe"], a["no_off"], a["fixed_pe"], a["ksize"], a["log_cpb"],
    )  # fmt: skip


VARIANTS = {  # C, YAML keyword args
    "defaults": (32, {}),
    "stride2-k5-range2": (48, {"n_heads": 6, "n_groups": 3, "stride": 2, "ksize": 5, "offset_range_factor": 2}),
    "log_cpb": (32, {"n_heads": 4, "n_groups": 2, "dwc_pe": False, "log_cpb": True}),
    "table-pe": (32, {"q_size": [6, 9], "n_heads": 4, "n_groups": 2, "dwc_pe": False}),
    "no-pe-clamped": (16, {"n_heads": 2, "n_groups": 2, "use_pe": False, "offset_range_factor": -1}),
    "ksize-equals-stride": (32, {"stride": 2, "ksize": 2}),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("shape", [(2, 12, 12), (1, 9, 14)])
def test_matches_the_reference_and_loads_its_state_dict_both_ways(variant, shape):
    c, args = VARIANTS[variant]
    reference = randomize_(reference_for(c, args), 1).eval()
    ours = DAttention(c, **args).eval()
    assert ours.load_state_dict(reference.state_dict(), strict=True) is not None
    x = torch.randn(shape[0], c, *shape[1:], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x)[0], atol=ATOL, rtol=0)
    fresh = reference_for(c, args)
    assert fresh.load_state_dict(randomize_(DAttention(c, **args), 2).state_dict(), strict=True)


SIZES = [(1, 1), (1, 7), (7, 1), (2, 2), (3, 5), (4, 4), (15, 20), (20, 15)]


@pytest.mark.parametrize(
    ("variant", "size"),
    [("defaults", size) for size in SIZES] + [(v, s) for v in list(VARIANTS)[1:] for s in [(1, 1), (7, 1), (2, 3)]],
)
def test_runs_at_every_size_with_gradients(variant, size):
    c, args = VARIANTS[variant]
    block = randomize_(DAttention(c, **args), 0).train()
    x = torch.randn(1, c, *size, requires_grad=True)
    y = block(x)
    assert y.shape == x.shape and bool(torch.isfinite(y).all())
    y.square().mean().backward()
    assert bool(torch.isfinite(x.grad).all())
    assert all(bool(torch.isfinite(p.grad).all()) for p in block.parameters() if p.grad is not None)


def test_on_a_1x1_map_every_sample_is_the_pixel_itself():
    # The reference divides by Hk - 1 = 0 there; with the divisors clamped, each of the (one) samples reads the
    # only pixel, the softmax over one key is 1, and the block is proj_out(proj_v(x) + rpe_table(proj_q(x))).
    block = randomize_(DAttention(32), 0).eval()
    x = torch.randn(3, 32, 1, 1, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = block.proj_out(block.proj_v(x) + block.rpe_table(block.proj_q(x)))
        torch.testing.assert_close(block(x), expected, atol=ATOL, rtol=0)
    with pytest.raises(ZeroDivisionError):  # the reference's offset range 1 / (Hk - 1)
        reference_for(32, {}).eval()(x)


def test_sampling_and_softmax_stay_fp32_under_autocast():
    block = randomize_(DAttention(32), 0).eval()
    x = torch.randn(1, 32, 15, 20, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = block(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = block(x)
    assert got.dtype == torch.bfloat16
    assert float((got.float() - expected).abs().max()) < 0.05 * float(expected.abs().max())


@pytest.mark.parametrize("size", [(1, 1), (1, 6), (5, 1), (4, 7)])
def test_the_export_sampler_is_grid_sample(size):
    from yolo_attn.modules.deformable_attention import _bilinear

    generator = torch.Generator().manual_seed(4)
    img = torch.randn(3, 5, *size, generator=generator)
    grid = torch.rand(3, 4, 6, 2, generator=generator) * 2.6 - 1.3  # inside and outside the map
    expected = F.grid_sample(img, grid, mode="bilinear", align_corners=True)
    torch.testing.assert_close(_bilinear(img, grid), expected, atol=1e-6, rtol=0)


def test_onnx_export_runs_at_other_sizes_at_opset_12():
    ort = pytest.importorskip("onnxruntime")
    block = randomize_(DAttention(16, n_heads=4, n_groups=2), 0).eval()
    buffer = io.BytesIO()
    buffer.write(export_onnx(block, torch.randn(1, 16, 8, 10), 12))
    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    for size in [(1, 1), (3, 5), (13, 7)]:
        x = torch.randn(2, 16, *size)
        (y,) = session.run(None, {"x": x.numpy()})
        with torch.no_grad():
            expected = block(x)
        torch.testing.assert_close(
            torch.from_numpy(y), expected, atol=1e-4 * max(1.0, float(expected.abs().max())), rtol=0
        )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"c1": 20, "n_heads": 8}, r"n_heads=8 must divide the 20 input channels .* e\.g\. n_heads=5"),
        ({"c1": 24, "n_heads": 8, "n_groups": 16}, r"n_groups=16 must divide the 24 input channels"),
        (
            {"c1": 48, "n_heads": 6, "n_groups": 4, "dwc_pe": False},
            r"with the table position encoding, n_groups=4 must divide n_heads=6",
        ),
        ({"c1": 64, "fixed_pe": True, "dwc_pe": False}, r"fixed_pe=True learns a bias for exactly one map size"),
        ({"c1": 64, "no_off": True}, r"no_off=True .* is not supported"),
        ({"c1": 64, "q_size": [20]}, r"q_size must be a positive integer or a pair"),
        ({"c1": 64, "n_heads": 0}, r"n_heads \(number of attention heads\) must be a positive integer"),
        ({"c1": 64, "stride": 0}, r"stride \(stride of the offset network\) must be a positive integer"),
        ({"c1": 64, "attn_drop": 1.0}, r"attn_drop \(dropout probability\) must be a number in \[0.0, 1.0\)"),
        ({"c1": 64, "use_pe": "yes"}, r"use_pe must be true or false"),
    ],
)
def test_bad_arguments_are_refused_at_build_time(kwargs, match):
    with pytest.raises(BlockArgumentError, match=rf"DAttention: {match}"):
        DAttention(**kwargs)


def test_fixed_pe_is_inert_and_accepted_with_dwc_pe_as_in_the_reference():
    block = DAttention(32, fixed_pe=True)
    assert isinstance(block.rpe_table, nn.Conv2d)
