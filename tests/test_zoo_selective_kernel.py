"""SKAttention (implus/SKNet, External-Attention's SKAttention; timm SelectiveKernel): math, state dicts, checks."""

from __future__ import annotations

import copy
from collections import OrderedDict

import pytest
import torch
from timm.layers import SelectiveKernel
from torch import nn
from ultralytics.nn.tasks import DetectionModel, yaml_model_load

import yolo_attn
from yolo_attn.cfg.edit import insert_after
from yolo_attn.modules import BlockArgumentError, SKAttention
from yolo_attn.modules.random_weights import randomize_

ATOL = 1e-5


class ReferenceSK(nn.Module):
    """xmu-xiaoma666/External-Attention-pytorch ``SKAttention`` (as the forks copy it), restated."""

    def __init__(self, channel: int = 512, kernels=(1, 3, 5, 7), reduction: int = 16, group: int = 1, L: int = 32):
        super().__init__()
        self.d = max(L, channel // reduction)
        self.convs = nn.ModuleList([])
        for k in kernels:
            self.convs.append(
                nn.Sequential(
                    OrderedDict(
                        [
                            ("conv", nn.Conv2d(channel, channel, kernel_size=k, padding=k // 2, groups=group)),
                            ("bn", nn.BatchNorm2d(channel)),
                            ("relu", nn.ReLU()),
                        ]
                    )
                )
            )
        self.fc = nn.Linear(channel, self.d)
        self.fcs = nn.ModuleList([nn.Linear(self.d, channel) for _ in kernels])
        self.softmax = nn.Softmax(dim=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bs, c, _, _ = x.size()
        conv_outs = [conv(x) for conv in self.convs]
        feats = torch.stack(conv_outs, 0)
        u = sum(conv_outs)
        s = u.mean(-1).mean(-1)
        z = self.fc(s)
        weights = torch.stack([fc(z).view(bs, c, 1, 1) for fc in self.fcs], 0)
        return (self.softmax(weights) * feats).sum(0)


@pytest.mark.parametrize(
    "args", [((1, 3, 5, 7), 16, 1, 32), ((3, 5), 4, 4, 8), ((1, 3), 16, 8, 32)], ids=["default", "grouped", "g8"]
)
@pytest.mark.parametrize("shape", [(2, 12, 12), (1, 13, 7)])
def test_matches_the_reference_and_loads_its_state_dict_both_ways(args, shape):
    c = 64
    reference = randomize_(ReferenceSK(c, *args), 1, fan_in=True).eval()
    ours = SKAttention(c, *args).eval()
    assert ours.load_state_dict(reference.state_dict(), strict=True) is not None
    x = torch.randn(shape[0], c, *shape[1:], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = reference(x)
        torch.testing.assert_close(ours(x), expected, atol=ATOL, rtol=0)
        # folding BatchNorms moves float32 rounding by ~1e-5 of the output scale: a relative tolerance too
        torch.testing.assert_close(copy.deepcopy(ours).fuse()(x), expected, atol=ATOL, rtol=1e-5)
    assert ReferenceSK(c, *args).load_state_dict(randomize_(SKAttention(c, *args), 2).state_dict(), strict=True)


def test_matches_timm_selective_kernel_where_its_relu_passes_everything():
    # timm: bias-free branch convs, then fc_reduce (1x1 conv, no bias) -> BN -> ReLU -> fc_select; ours (as the
    # reference codes): convs with bias, then a Linear fc alone. With zero conv biases and timm's BN shifted far into
    # the positive range (ReLU = identity), folding timm's BN into our fc gives the same function.
    c, kernels, d = 64, [3, 5, 7], 32
    theirs = randomize_(
        SelectiveKernel(c, c, kernel_size=kernels, keep_3x3=False, split_input=False, rd_channels=d), 3, fan_in=True
    ).eval()
    with torch.no_grad():
        theirs.attn.bn.bias.add_(8.0)
    seen = []
    theirs.attn.bn.register_forward_hook(lambda m, a, out: seen.append(float(out.min())))
    ours = SKAttention(c, kernels, 2, 1, d).eval()
    sd, mapped = theirs.state_dict(), {}
    for i in range(len(kernels)):
        mapped[f"convs.{i}.conv.weight"] = sd[f"paths.{i}.conv.weight"]
        mapped[f"convs.{i}.conv.bias"] = torch.zeros(c)
        for key in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
            mapped[f"convs.{i}.bn.{key}"] = sd[f"paths.{i}.bn.{key}"]
        mapped[f"fcs.{i}.weight"] = sd["attn.fc_select.weight"].flatten(1)[i * c : (i + 1) * c]
        mapped[f"fcs.{i}.bias"] = torch.zeros(c)
    bn = theirs.attn.bn
    scale = bn.weight / (bn.running_var + bn.eps).sqrt()
    mapped["fc.weight"] = sd["attn.fc_reduce.weight"].flatten(1) * scale[:, None]
    mapped["fc.bias"] = bn.bias - bn.running_mean * scale
    ours.load_state_dict(mapped, strict=True)
    x = torch.randn(2, c, 11, 9, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), atol=ATOL, rtol=0)
    assert seen and min(seen) > 0  # timm's ReLU passed everything: the comparison covers its whole forward


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kernels": [1, 4]}, r"kernels must be a non-empty list of odd"),
        ({"kernels": []}, r"kernels must be a non-empty list of odd"),
        ({"kernels": 3}, r"kernels must be a non-empty list of odd"),
        ({"group": 3}, r"group=3 must divide the input channels, but 64 % 3 = 1"),
        ({"reduction": 0}, r"reduction \(squeeze ratio\)"),
        ({"L": 0}, r"L \(minimum squeeze width\)"),
    ],
)
def test_bad_args_are_refused_at_build_time(kwargs, message):
    with pytest.raises(BlockArgumentError, match=rf"SKAttention: {message}"):
        SKAttention(64, **kwargs)


def test_a_group_that_does_not_divide_the_layer_is_a_row_error():
    d = insert_after(yaml_model_load("yolov8n.yaml"), 9, "SK", [[1, 3], 16, 3])
    with pytest.raises(yolo_attn.YAMLRowError, match=r"layer 10.*group=3 must divide the input channels, but 256"):
        DetectionModel(d, verbose=False)


@pytest.mark.parametrize("scale", ["n", "x"])
@pytest.mark.parametrize("family", ["yolov8", "yolo11", "yolo26"])
def test_builds_from_a_yaml_row(family, scale):
    d = insert_after(yaml_model_load(f"{family}{scale}.yaml"), 9, "SK", [[1, 3]])
    model = DetectionModel(d, verbose=False)
    assert isinstance(model.model[10], SKAttention) and len(model.model[10].convs) == 2
