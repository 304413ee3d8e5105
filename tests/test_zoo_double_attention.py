"""DoubleAttention (A^2-Nets; External-Attention's DoubleAttention): math, state dicts, AMP safety, checks, builds."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from ultralytics.nn.tasks import DetectionModel, yaml_model_load

import yolo_attn
from yolo_attn.cfg.edit import insert_after
from yolo_attn.modules import BlockArgumentError, DoubleAttention
from yolo_attn.modules.random_weights import randomize_

ATOL = 1e-5


class ReferenceA2(nn.Module):
    """xmu-xiaoma666/External-Attention-pytorch ``DoubleAttention``, restated with the paper's gathering softmax.

    The file normalises the attention maps over the c_n maps (``dim=1``); the paper (Chen et al. 2018, Eq. 2-3)
    normalises each map over the positions, so that each global descriptor is an attention-weighted pool. That is the
    one change, and the block documents it.
    """

    def __init__(self, in_channels: int, c_m: int = 128, c_n: int = 128, reconstruct: bool = True) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.reconstruct = reconstruct
        self.c_m = c_m
        self.c_n = c_n
        self.convA = nn.Conv2d(in_channels, c_m, 1)
        self.convB = nn.Conv2d(in_channels, c_n, 1)
        self.convV = nn.Conv2d(in_channels, c_n, 1)
        if self.reconstruct:
            self.conv_reconstruct = nn.Conv2d(c_m, in_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        a = self.convA(x)
        bm = self.convB(x)
        v = self.convV(x)
        tmp_a = a.view(b, self.c_m, -1)
        attention_maps = F.softmax(bm.view(b, self.c_n, -1), dim=-1)  # the paper: over positions
        attention_vectors = F.softmax(v.view(b, self.c_n, -1), dim=1)
        global_descriptors = torch.bmm(tmp_a, attention_maps.permute(0, 2, 1))
        tmp_z = global_descriptors.matmul(attention_vectors).view(b, self.c_m, h, w)
        if self.reconstruct:
            tmp_z = self.conv_reconstruct(tmp_z)
        return tmp_z


@pytest.mark.parametrize(("c", "args"), [(64, (128, 128, True)), (32, (16, 8, True)), (48, (48, 12, False))])
@pytest.mark.parametrize("shape", [(2, 12, 12), (1, 13, 7)])
def test_matches_the_reference_and_loads_its_state_dict_both_ways(c, args, shape):
    reference = randomize_(ReferenceA2(c, *args), 1, fan_in=True).eval()
    ours = DoubleAttention(c, *args).eval()
    assert ours.load_state_dict(reference.state_dict(), strict=True) is not None
    x = torch.randn(shape[0], c, *shape[1:], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), atol=ATOL, rtol=0)
    fresh = ReferenceA2(c, *args)
    assert fresh.load_state_dict(randomize_(DoubleAttention(c, *args), 2).state_dict(), strict=True) is not None


def test_each_image_is_its_own_batch():
    # the fork copy's F.softmax without dim normalises over the batch; here an image's output ignores the others
    block = randomize_(DoubleAttention(32, 16, 16), 0, fan_in=True).eval()
    x = torch.randn(3, 32, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(block(x)[1:2], block(x[1:2]), atol=ATOL, rtol=0)


def test_float16_inputs_that_overflow_half_precision_softmax_stay_finite():
    block = randomize_(DoubleAttention(32, 16, 16), 0).eval()
    with torch.no_grad():
        for conv in (block.convB, block.convV):
            conv.weight.mul_(40)  # logits of several hundreds: exp() overflows float16 at 11.1
        x = torch.randn(2, 32, 40, 40) * 4
        half = block.half()(x.half())
        assert half.dtype == torch.float16 and torch.isfinite(half).all()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert torch.isfinite(block.float()(x)).all()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((128, 128, False), r"reconstruct=false returns c_m=128 channels, but the block must keep its 64 input"),
        ((0, 128, True), r"c_m \(channels of the gathered features\)"),
        ((128, -1, True), r"c_n \(number of attention maps\)"),
        ((128, 128, "yes"), r"reconstruct must be true or false"),
    ],
)
def test_bad_args_are_refused_at_build_time(args, message):
    with pytest.raises(BlockArgumentError, match=rf"DoubleAttention: {message}"):
        DoubleAttention(64, *args)


def test_attention_map_is_the_gathering_attention():
    block = randomize_(DoubleAttention(32, 16, 8), 0, fan_in=True).eval()
    x = torch.randn(2, 32, 9, 11)
    with torch.no_grad():
        heat, source = block.attention_map(x, block(x))
    assert heat.shape == (2, 9, 11) and "gathering attention" in source
    torch.testing.assert_close(heat.sum((1, 2)), torch.full((2,), 8.0))  # each of the c_n maps sums to 1


def test_a_row_without_reconstruction_at_another_width_is_a_row_error():
    d = insert_after(yaml_model_load("yolov8n.yaml"), 9, "A2Attention", [128, 128, False])
    with pytest.raises(yolo_attn.YAMLRowError, match=r"layer 10.*c_m=128 channels, but the block must keep its 256"):
        DetectionModel(d, verbose=False)


@pytest.mark.parametrize("scale", ["n", "x"])
@pytest.mark.parametrize("family", ["yolov8", "yolo11", "yolo26"])
def test_builds_from_a_yaml_row(family, scale):
    d = insert_after(yaml_model_load(f"{family}{scale}.yaml"), 9, "A2Attention", [])
    model = DetectionModel(d, verbose=False)
    assert isinstance(model.model[10], DoubleAttention) and model.model[10].c_m == 128
