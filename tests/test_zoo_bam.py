"""BAM computes what Jongchan/attention-module's ``BAM`` computes, with its state dict."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from ultralytics.nn.tasks import DetectionModel, yaml_model_load

from yolo_attn import registry
from yolo_attn.cfg.edit import insert_after
from yolo_attn.modules import BAM, BlockArgumentError
from yolo_attn.modules.random_weights import randomize_
from yolo_attn.registry.rows import YAMLRowError

ATOL = 1e-5


class Flatten(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.size(0), -1)


class ReferenceChannelGate(nn.Module):
    """MODELS/bam.py ``ChannelGate``, re-stated without its undefined ``gate_activation`` line.

    ``square_pool``: the reference's ``avg_pool2d(x, H, stride=H)`` (True), or the paper's global average (False).
    """

    def __init__(self, gate_channel: int, reduction_ratio: int = 16, num_layers: int = 1, square_pool: bool = True):
        super().__init__()
        self.square_pool = square_pool
        self.gate_c = nn.Sequential()
        self.gate_c.add_module("flatten", Flatten())
        gate_channels = [gate_channel] + [gate_channel // reduction_ratio] * num_layers + [gate_channel]
        for i in range(len(gate_channels) - 2):
            self.gate_c.add_module(f"gate_c_fc_{i}", nn.Linear(gate_channels[i], gate_channels[i + 1]))
            self.gate_c.add_module(f"gate_c_bn_{i + 1}", nn.BatchNorm1d(gate_channels[i + 1]))
            self.gate_c.add_module(f"gate_c_relu_{i + 1}", nn.ReLU())
        self.gate_c.add_module("gate_c_fc_final", nn.Linear(gate_channels[-2], gate_channels[-1]))

    def forward(self, in_tensor: torch.Tensor) -> torch.Tensor:
        if self.square_pool:
            avg_pool = F.avg_pool2d(in_tensor, in_tensor.size(2), stride=in_tensor.size(2))
        else:
            avg_pool = F.avg_pool2d(in_tensor, in_tensor.shape[2:])
        return self.gate_c(avg_pool).unsqueeze(2).unsqueeze(3).expand_as(in_tensor)


class ReferenceSpatialGate(nn.Module):
    """MODELS/bam.py ``SpatialGate``, re-stated."""

    def __init__(self, gate_channel: int, reduction_ratio: int = 16, dilation_conv_num: int = 2, dilation_val: int = 4):
        super().__init__()
        hidden = gate_channel // reduction_ratio
        self.gate_s = nn.Sequential()
        self.gate_s.add_module("gate_s_conv_reduce0", nn.Conv2d(gate_channel, hidden, kernel_size=1))
        self.gate_s.add_module("gate_s_bn_reduce0", nn.BatchNorm2d(hidden))
        self.gate_s.add_module("gate_s_relu_reduce0", nn.ReLU())
        for i in range(dilation_conv_num):
            conv = nn.Conv2d(hidden, hidden, kernel_size=3, padding=dilation_val, dilation=dilation_val)
            self.gate_s.add_module(f"gate_s_conv_di_{i}", conv)
            self.gate_s.add_module(f"gate_s_bn_di_{i}", nn.BatchNorm2d(hidden))
            self.gate_s.add_module(f"gate_s_relu_di_{i}", nn.ReLU())
        self.gate_s.add_module("gate_s_conv_final", nn.Conv2d(hidden, 1, kernel_size=1))

    def forward(self, in_tensor: torch.Tensor) -> torch.Tensor:
        return self.gate_s(in_tensor).expand_as(in_tensor)


class ReferenceBAM(nn.Module):
    """MODELS/bam.py ``BAM(gate_channel)``; the gates' ``reduction_ratio`` and ``dilation_val`` passed through."""

    def __init__(self, gate_channel: int, reduction_ratio: int = 16, dilation_val: int = 4, square_pool: bool = True):
        super().__init__()
        self.channel_att = ReferenceChannelGate(gate_channel, reduction_ratio, square_pool=square_pool)
        self.spatial_att = ReferenceSpatialGate(gate_channel, reduction_ratio, dilation_val=dilation_val)

    def forward(self, in_tensor: torch.Tensor) -> torch.Tensor:
        att = 1 + torch.sigmoid(self.channel_att(in_tensor) * self.spatial_att(in_tensor))
        return att * in_tensor


def pair(reduction: int = 16, dia_val: int = 4, square_pool: bool = True, c: int = 64) -> tuple[BAM, ReferenceBAM]:
    ours = randomize_(BAM(c, reduction, dia_val), 0, fan_in=True)
    reference = ReferenceBAM(c, reduction, dia_val, square_pool)
    reference.load_state_dict(ours.state_dict(), strict=True)
    return ours, reference


def test_the_alias_and_the_reference_defaults():
    assert registry.get("BAMBlock").cls is BAM
    block = BAM(64)
    assert block.spatial_att.gate_s.gate_s_conv_di_0.dilation == (4, 4)  # the reference's dilation_val=4
    assert block.channel_att.gate_c.gate_c_fc_0.out_features == 4  # 64 // 16


@pytest.mark.parametrize(("reduction", "dia_val"), [(16, 4), (16, 2), (8, 1), (1, 3)])
def test_state_dict_loads_strictly_both_ways(reduction, dia_val):
    ours, reference = BAM(64, reduction, dia_val), ReferenceBAM(64, reduction, dia_val)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in reference.state_dict().items()}
    ours.load_state_dict(reference.state_dict(), strict=True)
    reference.load_state_dict(ours.state_dict(), strict=True)


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize(("reduction", "dia_val"), [(16, 4), (16, 2), (8, 1)])
@pytest.mark.parametrize("side", [5, 12])
def test_matches_the_reference_forward_on_square_maps(reduction, dia_val, side, training):
    x = torch.randn(3, 64, side, side, generator=torch.Generator().manual_seed(1))
    ours, reference = pair(reduction, dia_val)
    with torch.no_grad():
        torch.testing.assert_close(ours.train(training)(x), reference.train(training)(x), atol=ATOL, rtol=0)


@pytest.mark.parametrize("shape", [(2, 64, 9, 13), (2, 64, 20, 7), (1, 64, 3, 40)])
def test_pools_globally_on_non_square_maps_where_the_reference_pools_h_x_h_or_fails(shape):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(2))
    ours, reference = pair(square_pool=False)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), reference.eval()(x), atol=ATOL, rtol=0)
        literal = ReferenceBAM(64)
        literal.load_state_dict(ours.state_dict())
        if shape[2] <= shape[3] < 2 * shape[2]:  # the reference runs, on the first H columns only, and differs
            assert (literal.eval()(x) - ours(x)).abs().max() > 1e-3
        else:  # W < H: an H x H pool does not fit; W >= 2H: more than C pooled values reach the Linear
            with pytest.raises(RuntimeError):
                literal.eval()(x)


def test_trains_on_a_batch_of_one_without_touching_the_running_statistics():
    ours, reference = pair()
    x = torch.randn(1, 64, 8, 8, generator=torch.Generator().manual_seed(3))
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        reference.train()(x)
    bn = ours.channel_att.gate_c.gate_c_bn_1
    before = bn.running_mean.clone(), bn.running_var.clone()
    ours.train()(x).sum().backward()
    assert torch.equal(bn.running_mean, before[0]) and torch.equal(bn.running_var, before[1])


def test_fuse_folds_every_batchnorm_and_keeps_the_output():
    ours, _ = pair()
    x = torch.randn(2, 64, 9, 13, generator=torch.Generator().manual_seed(4))
    fused = copy.deepcopy(ours).eval().fuse()
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in fused.modules())
    with torch.no_grad():
        torch.testing.assert_close(fused(x), ours.eval()(x), atol=ATOL, rtol=0)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((8, 16), r"reduction ratio r=16 leaves no hidden channel for 8 input channels"),
        ((64, 0), r"r \(reduction ratio\) must be a positive integer"),
        ((64, 16, 0), r"dia_val .* must be a positive integer, got 0"),
        ((64, 16, 2.5), r"dia_val .* must be a positive integer"),
    ],
)
def test_bad_arguments_are_refused(args, message):
    with pytest.raises(BlockArgumentError, match=message):
        BAM(*args)


@pytest.mark.seam
def test_a_yaml_row_with_a_channel_count_names_the_constraint_and_the_channels():
    d = insert_after(yaml_model_load("yolov8n.yaml"), 9, "BAMBlock", [1024])
    with pytest.raises(YAMLRowError, match=r"layer 10 .*r=1024 leaves no hidden channel for 256.*input channels here"):
        DetectionModel(d, verbose=False)


@pytest.mark.seam
@pytest.mark.parametrize("scale", ["n", pytest.param("x", marks=pytest.mark.slow)])
@pytest.mark.parametrize("family", ["yolov8", "yolo11", "yolo26"])
def test_builds_from_a_yaml_row(family, scale):
    model = DetectionModel(insert_after(yaml_model_load(f"{family}{scale}.yaml"), 9, "BAM", [16, 2]), verbose=False)
    block = model.model[10]
    assert isinstance(block, BAM) and block.spatial_att.gate_s.gate_s_conv_di_1.dilation == (2, 2)
    assert block.channel_att.gate_c.gate_c_fc_0.in_features == model.model[9].cv2.conv.out_channels
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, 64, 64))
