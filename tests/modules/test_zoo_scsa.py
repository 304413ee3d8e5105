"""SCSA (HZAI-ZJNU/SCSA ``mmpretrain/models/attentions/SCSA.py``): math against the restated authors' module."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from yolo_attn.modules import SCSA, BlockArgumentError
from yolo_attn.modules.random_weights import randomize_
from yolo_attn.testing import export_onnx

ATOL = 1e-5


class ReferenceSCSA(nn.Module):
    """The authors' ``SCSA``, restated in plain PyTorch (BaseModule -> nn.Module, einops rearrange -> reshape).

    Only the ``avg_pool`` down-sampling and the sigmoid gates, the authors' defaults and the block's configuration.
    """

    def __init__(
        self,
        dim: int,
        head_num: int,
        window_size: int = 7,
        group_kernel_sizes: list[int] = [3, 5, 7, 9],  # noqa: B006 - the authors' signature
        qkv_bias: bool = False,
        attn_drop_ratio: float = 0.0,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.head_num = head_num
        self.head_dim = dim // head_num
        self.scaler = self.head_dim**-0.5
        self.group_kernel_sizes = group_kernel_sizes
        self.window_size = window_size
        assert self.dim // 4, "The dimension of input feature should be divisible by 4."
        self.group_chans = group_chans = self.dim // 4
        k = group_kernel_sizes
        self.local_dwc = nn.Conv1d(group_chans, group_chans, kernel_size=k[0], padding=k[0] // 2, groups=group_chans)
        self.global_dwc_s = nn.Conv1d(group_chans, group_chans, kernel_size=k[1], padding=k[1] // 2, groups=group_chans)
        self.global_dwc_m = nn.Conv1d(group_chans, group_chans, kernel_size=k[2], padding=k[2] // 2, groups=group_chans)
        self.global_dwc_l = nn.Conv1d(group_chans, group_chans, kernel_size=k[3], padding=k[3] // 2, groups=group_chans)
        self.sa_gate = nn.Sigmoid()
        self.norm_h = nn.GroupNorm(4, dim)
        self.norm_w = nn.GroupNorm(4, dim)
        self.conv_d = nn.Identity()
        self.norm = nn.GroupNorm(1, dim)
        self.q = nn.Conv2d(in_channels=dim, out_channels=dim, kernel_size=1, bias=qkv_bias, groups=dim)
        self.k = nn.Conv2d(in_channels=dim, out_channels=dim, kernel_size=1, bias=qkv_bias, groups=dim)
        self.v = nn.Conv2d(in_channels=dim, out_channels=dim, kernel_size=1, bias=qkv_bias, groups=dim)
        self.attn_drop = nn.Dropout(attn_drop_ratio)
        self.ca_gate = nn.Sigmoid()
        if window_size == -1:
            self.down_func = nn.AdaptiveAvgPool2d((1, 1))
        else:
            self.down_func = nn.AvgPool2d(kernel_size=(window_size, window_size), stride=window_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h_, w_ = x.size()
        x_h = x.mean(dim=3)
        l_x_h, g_x_h_s, g_x_h_m, g_x_h_l = torch.split(x_h, self.group_chans, dim=1)
        x_w = x.mean(dim=2)
        l_x_w, g_x_w_s, g_x_w_m, g_x_w_l = torch.split(x_w, self.group_chans, dim=1)
        x_h_attn = self.sa_gate(
            self.norm_h(
                torch.cat(
                    (
                        self.local_dwc(l_x_h),
                        self.global_dwc_s(g_x_h_s),
                        self.global_dwc_m(g_x_h_m),
                        self.global_dwc_l(g_x_h_l),
                    ),
                    dim=1,
                )
            )
        )
        x_h_attn = x_h_attn.view(b, c, h_, 1)
        x_w_attn = self.sa_gate(
            self.norm_w(
                torch.cat(
                    (
                        self.local_dwc(l_x_w),
                        self.global_dwc_s(g_x_w_s),
                        self.global_dwc_m(g_x_w_m),
                        self.global_dwc_l(g_x_w_l),
                    ),
                    dim=1,
                )
            )
        )
        x_w_attn = x_w_attn.view(b, c, 1, w_)
        x = x * x_h_attn * x_w_attn
        y = self.down_func(x)
        y = self.conv_d(y)
        _, _, h_, w_ = y.size()
        y = self.norm(y)
        q = self.q(y).reshape(b, self.head_num, self.head_dim, h_ * w_)
        k = self.k(y).reshape(b, self.head_num, self.head_dim, h_ * w_)
        v = self.v(y).reshape(b, self.head_num, self.head_dim, h_ * w_)
        attn = q @ k.transpose(-2, -1) * self.scaler
        attn = self.attn_drop(attn.softmax(dim=-1))
        attn = attn @ v
        attn = attn.reshape(b, self.head_num * self.head_dim, h_, w_)
        attn = attn.mean((2, 3), keepdim=True)
        attn = self.ca_gate(attn)
        return attn * x


def _pair(c: int, *args, seed: int = 1) -> tuple[ReferenceSCSA, SCSA]:
    reference = randomize_(ReferenceSCSA(c, *args), seed).eval()
    ours = SCSA(c, *args).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    return reference, ours


@pytest.mark.parametrize(
    ("c", "args"), [(32, (1,)), (64, (1, 7, [3, 5, 7, 9])), (64, (8, 4, [1, 3, 5, 7])), (16, (2, -1))]
)
def test_matches_the_authors_module_and_loads_its_state_dict_both_ways(c, args):
    reference, ours = _pair(c, *args)
    with torch.no_grad():
        for shape in [(2, 16, 16), (1, 20, 15)]:
            x = torch.randn(shape[0], c, *shape[1:], generator=torch.Generator().manual_seed(0))
            torch.testing.assert_close(ours(x), reference(x), atol=ATOL, rtol=0)
    ReferenceSCSA(c, *args).load_state_dict(randomize_(SCSA(c, *args), 2).state_dict(), strict=True)


def test_every_feature_map_size_runs_and_shrinks_the_window_only_under_it():
    reference, ours = _pair(16, 1, 7)
    with torch.no_grad():
        for hw in [(1, 1), (1, 7), (7, 1), (2, 2), (3, 5), (4, 4), (6, 9), (7, 7), (15, 20), (20, 15)]:
            x = torch.randn(2, 16, *hw, generator=torch.Generator().manual_seed(1))
            kernel = (min(7, hw[0]), min(7, hw[1]))  # the documented departure: the window shrinks to the map
            reference.down_func = nn.AvgPool2d(kernel, stride=kernel)
            torch.testing.assert_close(ours(x), reference(x), atol=ATOL, rtol=0, msg=f"at {hw}")
            if min(hw) >= 7:  # the authors' own pooling, unchanged, at and above the window
                reference.down_func = nn.AvgPool2d((7, 7), stride=7)
                torch.testing.assert_close(ours(x), reference(x), atol=ATOL, rtol=0, msg=f"authors' pool at {hw}")


def test_onnx_follows_the_input_size_below_the_window():
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    block = randomize_(SCSA(16), 3).eval()
    buffer = io.BytesIO()
    buffer.write(export_onnx(block, torch.randn(1, 16, 8, 10), 17))
    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    for hw in [(1, 1), (4, 4), (3, 5), (15, 20)]:
        x = torch.randn(2, 16, *hw)
        (y,) = session.run(None, {"x": x.numpy()})
        with torch.no_grad():
            torch.testing.assert_close(torch.from_numpy(y), block(x), atol=1e-4, rtol=1e-4, msg=f"at {hw}")


def test_bf16_autocast_keeps_the_attention_in_float32():
    block = randomize_(SCSA(32), 4).eval()
    x = torch.randn(1, 32, 9, 11, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = block(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = block(x)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got.float(), expected, atol=0.1 * float(expected.abs().max()), rtol=0)


@pytest.mark.parametrize(
    ("c", "kwargs", "match"),
    [
        (18, {}, r"SCSA: the input channels must be a multiple of 4.*got 18"),
        (32, {"head_num": 3}, r"SCSA: head_num=3 heads must divide the input channels, but 32 % 3 = 2"),
        (32, {"head_num": 0}, r"SCSA: head_num \(number of attention heads\) must be a positive integer"),
        (32, {"window_size": 0}, r"SCSA: window_size must be a positive integer or -1"),
        (32, {"window_size": 2.5}, r"SCSA: window_size must be a positive integer or -1"),
        (32, {"group_kernel_sizes": [3, 5, 7]}, r"SCSA: group_kernel_sizes must be a list of 4 odd positive"),
        (32, {"group_kernel_sizes": [3, 4, 7, 9]}, r"SCSA: group_kernel_sizes must be a list of 4 odd positive"),
    ],
)
def test_bad_arguments_are_refused(c, kwargs, match):
    with pytest.raises(BlockArgumentError, match=match):
        SCSA(c, **kwargs)
