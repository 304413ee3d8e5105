"""GlobalContext against a re-statement of xvjiarui/GCNet's ``ContextBlock`` and against timm's ``GlobalContext``."""

from __future__ import annotations

import pytest
import torch
from support.models import build, small_yaml
from support.zoo_builds import BUILD_CASES, blocks_at_p3_and_p5
from timm.layers import GlobalContext as TimmGlobalContext
from torch import nn

import yolo_attn
from yolo_attn.modules import BlockArgumentError, GlobalContext
from yolo_attn.modules.random_weights import randomize_

ATOL = 1e-5


class ReferenceContextBlock(nn.Module):
    """xvjiarui/GCNet ``mmdet/ops/gcb/context_block.py`` ``ContextBlock``, re-stated (its mmcv init left out)."""

    def __init__(self, inplanes, ratio, pooling_type="att", fusion_types=("channel_add",)):
        super().__init__()
        self.inplanes, self.ratio, self.planes = inplanes, ratio, int(inplanes * ratio)
        self.pooling_type, self.fusion_types = pooling_type, fusion_types
        if pooling_type == "att":
            self.conv_mask = nn.Conv2d(inplanes, 1, kernel_size=1)
            self.softmax = nn.Softmax(dim=2)
        else:
            self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.channel_add_conv = self._transform() if "channel_add" in fusion_types else None
        self.channel_mul_conv = self._transform() if "channel_mul" in fusion_types else None

    def _transform(self):
        return nn.Sequential(
            nn.Conv2d(self.inplanes, self.planes, kernel_size=1),
            nn.LayerNorm([self.planes, 1, 1]),
            nn.ReLU(inplace=True),
            nn.Conv2d(self.planes, self.inplanes, kernel_size=1),
        )

    def spatial_pool(self, x):
        batch, channel, height, width = x.size()
        if self.pooling_type == "att":
            input_x = x.view(batch, channel, height * width).unsqueeze(1)  # [N, 1, C, H * W]
            context_mask = self.conv_mask(x).view(batch, 1, height * width)
            context_mask = self.softmax(context_mask).unsqueeze(-1)  # [N, 1, H * W, 1]
            context = torch.matmul(input_x, context_mask)  # [N, 1, C, 1]
            return context.view(batch, channel, 1, 1)
        return self.avg_pool(x)

    def forward(self, x):
        context = self.spatial_pool(x)
        out = x
        if self.channel_mul_conv is not None:
            out = out * torch.sigmoid(self.channel_mul_conv(context))
        if self.channel_add_conv is not None:
            out = out + self.channel_add_conv(context)
        return out


# (ratio, use_attn, fuse_add, fuse_scale): the paper's default, average pooling, scale only, both fusions
CONFIGS = [
    (1 / 16, True, True, False),
    (1 / 4, False, True, False),
    (1 / 16, True, False, True),
    (1 / 8, True, True, True),
]


def reference_for(c: int, ratio: float, use_attn: bool, fuse_add: bool, fuse_scale: bool) -> ReferenceContextBlock:
    fusion = tuple(f for f, on in (("channel_add", fuse_add), ("channel_mul", fuse_scale)) if on)
    return ReferenceContextBlock(c, ratio, "att" if use_attn else "avg", fusion)


@pytest.mark.parametrize("config", CONFIGS)
def test_matches_the_reference_with_its_state_dict_both_ways(config):
    x = torch.randn(2, 64, 9, 7, generator=torch.Generator().manual_seed(0))
    ours = randomize_(GlobalContext(64, *config), 1).eval()
    reference = reference_for(64, *config).eval()
    reference.load_state_dict(ours.state_dict(), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), atol=ATOL, rtol=0)
    randomize_(reference, 2)
    ours.load_state_dict(reference.state_dict(), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), atol=ATOL, rtol=0)


def to_timm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename GCNet keys to timm's: conv_mask -> conv_attn, channel_{add,mul}_conv.{0,1,3} -> mlp_{add,scale}.*."""
    names = {"conv_mask": "conv_attn", "channel_add_conv": "mlp_add", "channel_mul_conv": "mlp_scale"}
    layers = {"0": "fc1", "1": "norm", "3": "fc2"}
    out = {}
    for key, value in state.items():
        head, *rest = key.split(".")
        if rest and rest[0] in layers:
            rest[0] = layers[rest[0]]
        if rest[0] == "norm":
            value = value.flatten()  # LayerNorm([planes, 1, 1]) -> LayerNorm2d(planes)
        out[".".join([names[head], *rest])] = value
    return out


@pytest.mark.parametrize("config", CONFIGS)
def test_matches_timm(config):
    ratio, use_attn, fuse_add, fuse_scale = config
    x = torch.randn(2, 64, 8, 11, generator=torch.Generator().manual_seed(3))
    ours = randomize_(GlobalContext(64, *config), 4).eval()
    theirs = TimmGlobalContext(64, use_attn=use_attn, fuse_add=fuse_add, fuse_scale=fuse_scale, rd_ratio=ratio).eval()
    theirs.load_state_dict(to_timm(ours.state_dict()), strict=True)
    for norm in (m for m in theirs.modules() if isinstance(m, nn.LayerNorm)):
        norm.eps = 1e-5  # timm's LayerNorm2d default is 1e-6, GCNet's nn.LayerNorm 1e-5 (documented departure of timm)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), atol=ATOL, rtol=0)


def test_fresh_block_and_identity_start():
    x = torch.randn(2, 64, 6, 5)
    with torch.no_grad():
        assert torch.equal(GlobalContext(64)(x), x)  # GCNet's zero last conv: x + 0
        torch.testing.assert_close(GlobalContext(64, 1 / 16, True, False, True)(x), 0.5 * x)
        add_only = randomize_(GlobalContext(64)).start_as_identity()
        assert add_only.identity_mix is None and add_only.zero_output == "channel_add_conv.3"
        assert torch.equal(add_only(x), x)
        both = randomize_(GlobalContext(64, 1 / 8, True, True, True)).start_as_identity()
        assert both.identity_mix is not None and both.zero_output is None
        assert torch.equal(both(x), x)


def test_attention_map_is_the_pooling_softmax():
    block = randomize_(GlobalContext(32)).eval()
    x = torch.randn(2, 32, 6, 5)
    with torch.no_grad():
        derived, source = block.attention_map(x, block(x))
        expected = torch.softmax(nn.functional.conv2d(x, block.conv_mask.weight, block.conv_mask.bias).flatten(1), 1)
    torch.testing.assert_close(derived, expected.view(2, 6, 5))
    assert source.startswith("context pooling weights")
    avg = randomize_(GlobalContext(32, 1 / 4, False)).eval()
    assert avg.attention_map(x, avg(x))[1].startswith("activation after GlobalContext")


def test_parameter_count_at_yolov8n_p5():
    assert sum(p.numel() for p in GlobalContext(256).parameters()) == 257 + (256 * 16 + 16) + 32 + (16 * 256 + 256)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: GlobalContext(64, 16), r"GlobalContext: ratio .* in \(0, 1\] .*got 16 \(int\).*not a channel count"),
        (lambda: GlobalContext(64, 0), r"GlobalContext: ratio .* got 0 \(int\)"),
        (lambda: GlobalContext(64, "1/16"), r"GlobalContext: ratio .* got '1/16' \(str\)"),
        (lambda: GlobalContext(8, 1 / 16), r"ratio=0.0625 leaves no hidden channel for 8 input channels"),
        (lambda: GlobalContext(64, 1 / 16, True, False, False), r"fuse_add and fuse_scale are both false"),
        (lambda: GlobalContext(64, 1 / 16, "att"), r"GlobalContext: use_attn must be true or false"),
    ],
)
def test_argument_errors(make, message):
    with pytest.raises(BlockArgumentError, match=message):
        make()


@pytest.mark.seam
def test_aliases_and_row_errors():
    model = build(
        small_yaml(
            [
                [-1, 1, "GC", []],
                [-1, 1, "GlobalContextBlock", [0.25, False]],
                [-1, 1, "GlobalContext", [{"fuse_scale": True}]],
            ]
        )
    )
    assert all(isinstance(model.model[i], GlobalContext) for i in (5, 6, 7))
    assert model.model[6].planes == 32 and model.model[6].conv_mask is None
    with pytest.raises(yolo_attn.YAMLRowError, match=r"layer 5 .*GC.*ratio"):
        build(small_yaml([[-1, 1, "GC", [1024]]]))


@pytest.mark.parametrize(("base", "scale"), BUILD_CASES)
def test_builds_from_yaml_rows_at_p3_and_p5(base, scale):
    built = blocks_at_p3_and_p5(base, scale, ("GlobalContext", []), ("GC", []), GlobalContext)
    assert [m.planes for m, _ in built] == [c // 16 for _, c in built]
