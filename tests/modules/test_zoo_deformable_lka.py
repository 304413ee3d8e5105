"""D-LKA (xmindflow/deformableLKA ``deformable_LKA``): math against the authors' module restated in plain PyTorch.

The authors' wrapper calls ``torchvision.ops.DeformConv2d``; here that deformable convolution (DCN v1, torchvision's
bilinear sampling rule: a point at or beyond one pixel outside the map reads 0, corners outside read 0) is written out
with gathers, so the block's torchvision call is checked against the formula, not against itself.
"""

from __future__ import annotations

import io
import subprocess
import sys
import warnings

import pytest
import torch
from torch import nn

from yolo_attn.modules import BlockArgumentError, DeformableLKA
from yolo_attn.modules.random_weights import randomize_
from yolo_attn.testing import export_onnx


def bilinear(x: torch.Tensor, py: torch.Tensor, px: torch.Tensor) -> torch.Tensor:
    """torchvision's ``bilinear_interpolate`` of deform_conv2d: x (B, C, H, W) at points (B, N) -> (B, C, N)."""
    b, c, h, w = x.shape
    inside = (py > -1) & (py < h) & (px > -1) & (px < w)
    y0, x0 = py.floor(), px.floor()
    ly, lx = py - y0, px - x0
    out = torch.zeros(b, c, py.shape[1], dtype=x.dtype)
    flat = x.flatten(2)
    for dy, wy in ((0, 1 - ly), (1, ly)):
        for dx, wx in ((0, 1 - lx), (1, lx)):
            yy, xx = y0 + dy, x0 + dx
            valid = inside & (yy >= 0) & (yy <= h - 1) & (xx >= 0) & (xx <= w - 1)
            index = (yy.clamp(0, h - 1) * w + xx.clamp(0, w - 1)).long()
            value = flat.gather(2, index[:, None].expand(b, c, -1))
            out += value * (wy * wx * valid)[:, None]
    return out


class DeformConv2d(nn.Module):
    """``torchvision.ops.DeformConv2d`` (no bias, no mask, one offset group), restated with gathers."""

    def __init__(self, channels: int, kernel_size: tuple[int, int], padding: int, groups: int, dilation: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(channels, channels // groups, *kernel_size))
        self.register_parameter("bias", None)
        self.padding, self.groups, self.dilation = padding, groups, dilation

    def forward(self, x: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        c_out, cg, kh, kw = self.weight.shape
        p, d = self.padding, self.dilation
        ho, wo = h + 2 * p - d * (kh - 1), w + 2 * p - d * (kw - 1)
        base_y = (torch.arange(ho, dtype=x.dtype) - p)[:, None].expand(ho, wo)
        base_x = (torch.arange(wo, dtype=x.dtype) - p)[None, :].expand(ho, wo)
        taps = []
        for i in range(kh):
            for j in range(kw):
                t = i * kw + j
                py = (base_y + i * d + offset[:, 2 * t]).flatten(1)  # (dy, dx) per tap, taps row-major
                px = (base_x + j * d + offset[:, 2 * t + 1]).flatten(1)
                taps.append(bilinear(x, py, px))
        columns = torch.stack(taps, 2).reshape(b, self.groups, cg * kh * kw, ho * wo)
        weight = self.weight.reshape(self.groups, c_out // self.groups, cg * kh * kw)
        return torch.einsum("gok,bgkn->bgon", weight, columns).reshape(b, c_out, ho, wo)


class DeformConv(nn.Module):
    """The authors' ``DeformConv`` wrapper (``2D/deformable_LKA/deformable_LKA.py``), restated."""

    def __init__(self, in_channels, groups, kernel_size=(3, 3), padding=1, stride=1, dilation=1, bias=True) -> None:
        super().__init__()
        self.offset_net = nn.Conv2d(
            in_channels=in_channels,
            out_channels=2 * kernel_size[0] * kernel_size[1],
            kernel_size=kernel_size,
            padding=padding,
            stride=stride,
            dilation=dilation,
            bias=True,
        )
        self.deform_conv = DeformConv2d(in_channels, kernel_size, padding, groups, dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        offsets = self.offset_net(x)
        return self.deform_conv(x, offsets)


class deformable_LKA(nn.Module):
    """The authors' ``deformable_LKA``, restated."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv0 = DeformConv(dim, kernel_size=(5, 5), padding=2, groups=dim)
        self.conv_spatial = DeformConv(dim, kernel_size=(7, 7), stride=1, padding=9, groups=dim, dilation=3)
        self.conv1 = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = x.clone()
        attn = self.conv0(x)
        attn = self.conv_spatial(attn)
        attn = self.conv1(attn)
        return u * attn


def _pair(c: int, seed: int = 1) -> tuple[deformable_LKA, DeformableLKA]:
    reference = randomize_(deformable_LKA(c), seed, fan_in=True).eval()  # offsets of a few pixels, not hundreds
    ours = DeformableLKA(c).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    return reference, ours


def _close(got: torch.Tensor, expected: torch.Tensor, msg: str) -> None:
    torch.testing.assert_close(got, expected, atol=1e-5 * max(1.0, float(expected.abs().max())), rtol=0, msg=msg)


@pytest.mark.parametrize("c", [16, 32])
def test_matches_the_authors_module_and_loads_its_state_dict_both_ways(c):
    reference, ours = _pair(c)
    with torch.no_grad():
        for shape in [(2, 12, 12), (1, 9, 14)]:
            x = torch.randn(shape[0], c, *shape[1:], generator=torch.Generator().manual_seed(0))
            _close(ours(x), reference(x), f"at {shape}")
    deformable_LKA(c).load_state_dict(randomize_(DeformableLKA(c), 2).state_dict(), strict=True)


def test_every_feature_map_size_runs_and_matches():
    reference, ours = _pair(16, 3)
    with torch.no_grad():
        for hw in [(1, 1), (1, 7), (7, 1), (2, 2), (3, 5), (4, 4), (15, 20), (20, 15)]:
            x = torch.randn(1, 16, *hw, generator=torch.Generator().manual_seed(1))
            _close(ours(x), reference(x), f"at {hw}")


def test_onnx_maps_to_deform_conv_at_opset_19_and_follows_the_input_size():
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    block = randomize_(DeformableLKA(16), 4, fan_in=True).eval()
    buffer = io.BytesIO()
    buffer.write(export_onnx(block, torch.randn(1, 16, 8, 10), 19))
    graph = onnx.load_from_string(buffer.getvalue()).graph
    assert sum(node.op_type == "DeformConv" for node in graph.node) == 2
    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    for hw in [(1, 1), (3, 5), (12, 7), (15, 20)]:
        x = torch.randn(2, 16, *hw, generator=torch.Generator().manual_seed(5))
        (y,) = session.run(None, {"x": x.numpy()})
        with torch.no_grad():
            expected = block(x)
        torch.testing.assert_close(
            torch.from_numpy(y), expected, atol=1e-4 * max(1.0, float(expected.abs().max())), rtol=0, msg=f"at {hw}"
        )


def test_onnx_below_opset_19_says_which_opset_it_needs():
    block = DeformableLKA(16).eval()
    with warnings.catch_warnings(), pytest.raises(Exception, match=r"DeformConv, which needs opset 19 or later"):
        warnings.simplefilter("ignore")
        torch.onnx.export(block, torch.randn(1, 16, 8, 10), io.BytesIO(), opset_version=17, dynamo=False)


def test_bf16_autocast_samples_in_float32():
    block = randomize_(DeformableLKA(16), 5, fan_in=True).eval()
    x = torch.randn(1, 16, 9, 11, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = block(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = block(x)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got.float(), expected, atol=0.1 * float(expected.abs().max()), rtol=0)


@pytest.mark.parametrize("c", [0, -4, 2.5, "64"])
def test_bad_channels_are_refused(c):
    with pytest.raises(BlockArgumentError, match=r"DeformableLKA: input channels must be a positive integer"):
        DeformableLKA(c)


@pytest.mark.parametrize("bad", ["nan", "inf"])
def test_a_non_finite_input_gives_nan_not_a_crash(bad):
    """A NaN or inf pixel (a diverging run) once made NaN offsets, which crash torchvision's CPU kernel (SIGSEGV).

    Run in a child process, so that a crash fails this test instead of killing the test session.
    """
    code = (
        "import torch\n"
        "from yolo_attn.modules import DeformableLKA\n"
        "x = torch.rand(1, 16, 20, 20)\n"
        f"x[0, :, 3, 3] = float('{bad}')\n"
        "with torch.no_grad():\n"
        "    y = DeformableLKA(16).eval()(x)\n"
        "print(int(y.isnan().any()), int(y.isfinite().any()))\n"
    )
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert child.returncode == 0, f"the child died with {child.returncode}: {child.stderr[-500:]}"
    assert child.stdout.split() == ["1", "1"]  # the bad pixel still shows as NaN; the rest of the map is computed
