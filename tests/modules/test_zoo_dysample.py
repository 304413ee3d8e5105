"""DySample (tiny-smart/dysample): math against a restated reference module, sizes, arguments, identity start, rows."""

from __future__ import annotations

import copy
import io

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from ultralytics.nn.tasks import DetectionModel, yaml_model_load

import yolo_attn
from yolo_attn import registry
from yolo_attn.finetune import transfer
from yolo_attn.finetune.engagement import measure_engagement
from yolo_attn.modules import BlockArgumentError, DySample
from yolo_attn.modules.random_weights import randomize_
from yolo_attn.testing import export_onnx

ATOL = 1e-5
SIZES = [(1, 1), (1, 7), (7, 1), (2, 2), (3, 5), (15, 20), (20, 15), (4, 4)]
VARIANTS = [("lp", False), ("lp", True), ("pl", False), ("pl", True)]


def normal_init(module: nn.Module, mean: float = 0, std: float = 1, bias: float = 0) -> None:
    if hasattr(module, "weight") and module.weight is not None:
        nn.init.normal_(module.weight, mean, std)
    if hasattr(module, "bias") and module.bias is not None:
        nn.init.constant_(module.bias, bias)


def constant_init(module: nn.Module, val: float, bias: float = 0) -> None:
    if hasattr(module, "weight") and module.weight is not None:
        nn.init.constant_(module.weight, val)
    if hasattr(module, "bias") and module.bias is not None:
        nn.init.constant_(module.bias, bias)


class ReferenceDySample(nn.Module):
    """tiny-smart/dysample ``dysample.py`` ``DySample`` (commit efcf8ae: ``scope`` without bias), restated."""

    def __init__(self, in_channels: int, scale: int = 2, style: str = "lp", groups: int = 4, dyscope: bool = False):
        super().__init__()
        self.scale = scale
        self.style = style
        self.groups = groups
        assert style in ["lp", "pl"]
        if style == "pl":
            assert in_channels >= scale**2 and in_channels % scale**2 == 0
        assert in_channels >= groups and in_channels % groups == 0
        if style == "pl":
            in_channels = in_channels // scale**2
            out_channels = 2 * groups
        else:
            out_channels = 2 * groups * scale**2
        self.offset = nn.Conv2d(in_channels, out_channels, 1)
        normal_init(self.offset, std=0.001)
        if dyscope:
            self.scope = nn.Conv2d(in_channels, out_channels, 1, bias=False)
            constant_init(self.scope, val=0.0)
        self.register_buffer("init_pos", self._init_pos())

    def _init_pos(self) -> torch.Tensor:
        h = torch.arange((-self.scale + 1) / 2, (self.scale - 1) / 2 + 1) / self.scale
        return (
            torch.stack(torch.meshgrid([h, h], indexing="ij"))
            .transpose(1, 2)
            .repeat(1, self.groups, 1)
            .reshape(1, -1, 1, 1)
        )

    def sample(self, x: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
        B, _, H, W = offset.shape
        offset = offset.view(B, 2, -1, H, W)
        coords_h = torch.arange(H) + 0.5
        coords_w = torch.arange(W) + 0.5
        coords = (
            torch.stack(torch.meshgrid([coords_w, coords_h], indexing="ij"))
            .transpose(1, 2)
            .unsqueeze(1)
            .unsqueeze(0)
            .type(x.dtype)
            .to(x.device)
        )
        normalizer = torch.tensor([W, H], dtype=x.dtype, device=x.device).view(1, 2, 1, 1, 1)
        coords = 2 * (coords + offset) / normalizer - 1
        coords = (
            F.pixel_shuffle(coords.view(B, -1, H, W), self.scale)
            .view(B, 2, -1, self.scale * H, self.scale * W)
            .permute(0, 2, 3, 4, 1)
            .contiguous()
            .flatten(0, 1)
        )
        return F.grid_sample(
            x.reshape(B * self.groups, -1, H, W), coords, mode="bilinear", align_corners=False, padding_mode="border"
        ).view(B, -1, self.scale * H, self.scale * W)

    def forward_lp(self, x: torch.Tensor) -> torch.Tensor:
        if hasattr(self, "scope"):
            offset = self.offset(x) * self.scope(x).sigmoid() * 0.5 + self.init_pos
        else:
            offset = self.offset(x) * 0.25 + self.init_pos
        return self.sample(x, offset)

    def forward_pl(self, x: torch.Tensor) -> torch.Tensor:
        x_ = F.pixel_shuffle(x, self.scale)
        if hasattr(self, "scope"):
            offset = F.pixel_unshuffle(self.offset(x_) * self.scope(x_).sigmoid(), self.scale) * 0.5 + self.init_pos
        else:
            offset = F.pixel_unshuffle(self.offset(x_), self.scale) * 0.25 + self.init_pos
        return self.sample(x, offset)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.style == "pl":
            return self.forward_pl(x)
        return self.forward_lp(x)


def pair(c: int, scale: int, style: str, groups: int, dyscope: bool) -> tuple[nn.Module, DySample]:
    """A reference with random weights and a block that loaded its state dict strictly (offsets of a few pixels)."""
    reference = randomize_(ReferenceDySample(c, scale, style, groups, dyscope), 1).eval()
    ours = DySample(c, scale, style, groups, dyscope).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    return reference, ours


@pytest.mark.parametrize(("style", "dyscope"), VARIANTS)
@pytest.mark.parametrize(("c", "scale", "groups"), [(32, 2, 4), (16, 2, 1), (36, 3, 2)])
@pytest.mark.parametrize("shape", [(2, 12, 12), (1, 13, 7)])
def test_matches_the_reference_and_loads_its_state_dict_both_ways(c, scale, groups, style, dyscope, shape):
    reference, ours = pair(c, scale, style, groups, dyscope)
    assert torch.equal(ours.init_pos, reference.init_pos)
    x = torch.randn(shape[0], c, *shape[1:], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y = ours(x)
        assert y.shape == (shape[0], c, scale * shape[1], scale * shape[2])
        torch.testing.assert_close(y, reference(x), atol=ATOL, rtol=0)
    fresh = ReferenceDySample(c, scale, style, groups, dyscope)
    assert fresh.load_state_dict(randomize_(DySample(c, scale, style, groups, dyscope), 2).state_dict(), strict=True)


@pytest.mark.parametrize(("style", "dyscope"), VARIANTS)
def test_every_feature_map_size_down_to_1x1(style, dyscope):
    reference, ours = pair(16, 2, style, 4, dyscope)
    for h, w in SIZES:
        x = torch.randn(1, 16, h, w, generator=torch.Generator().manual_seed(h * 100 + w))
        with torch.no_grad():
            y = ours(x)
            assert y.shape == (1, 16, 2 * h, 2 * w), (h, w)
            torch.testing.assert_close(y, reference(x), atol=ATOL, rtol=0, msg=lambda m, s=(h, w): f"{s}: {m}")


def test_fresh_weights_make_it_bilinear_upsampling():
    block = DySample(16)
    nn.init.zeros_(block.offset.weight)
    x = torch.randn(2, 16, 5, 9)
    with torch.no_grad():
        torch.testing.assert_close(block(x), F.interpolate(x, scale_factor=2, mode="bilinear"), atol=1e-6, rtol=0)


@pytest.mark.parametrize(("style", "dyscope"), VARIANTS)
def test_started_as_identity_it_is_exactly_the_nearest_upsampling_it_replaces(style, dyscope):
    _, block = pair(16, 2, style, 4, dyscope)
    assert block.identity_mix is None and not any("identity_mix" in k for k in block.state_dict())
    block.start_as_identity()
    x = torch.randn(2, 16, 7, 4)
    with torch.no_grad():
        assert torch.equal(block(x), nn.Upsample(None, 2, "nearest")(x))
        block.identity_mix.fill_(1.0)
        plain = copy.deepcopy(block)
        plain.identity_mix = None
        torch.testing.assert_close(block(x), plain(x), atol=ATOL, rtol=0)


def test_sampling_grid_stays_float32_under_autocast():
    reference, block = pair(16, 2, "lp", 4, True)
    x = torch.randn(2, 16, 20, 15)
    seen = []
    original = F.grid_sample
    with torch.no_grad():
        expected = reference(x)
        try:
            F.grid_sample = lambda inp, grid, **kw: seen.append((inp.dtype, grid.dtype)) or original(inp, grid, **kw)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                y = block(x)
        finally:
            F.grid_sample = original
    assert seen == [(torch.float32, torch.float32)]
    assert (y.float() - expected).abs().max() <= 0.05 * expected.abs().max()


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((16, 2, "lp", 3), r"groups=3 must divide the input channels, but 16"),
        ((18, 2, "pl", 2), r"style='pl'.*scale\^2 = 4 must divide the input channels, but 18 % 4 = 2"),
        ((16, 2, "bilinear"), r"style must be one of \['lp', 'pl'\]"),
        ((16, 0), r"scale \(upsampling factor\) must be a positive integer"),
        ((16, 2.5), r"scale \(upsampling factor\) must be a positive integer"),
        ((16, 2, "lp", 0), r"groups \(number of offset groups\) must be a positive integer"),
        ((16, 2, "lp", 4, 1), r"dyscope must be true or false"),
    ],
)
def test_bad_arguments_are_refused_at_build_time(args, match):
    with pytest.raises(BlockArgumentError, match=rf"DySample: {match}"):
        DySample(*args)


def _dysample_yaml(args: list) -> dict:
    d = yaml_model_load("yolov8n.yaml")
    for row in d["head"]:
        if row[2] == "nn.Upsample":
            row[2], row[3] = "DySample", list(args)
    return d


def test_a_row_whose_channels_the_groups_do_not_divide_is_a_row_error():
    with pytest.raises(yolo_attn.YAMLRowError, match=r"layer 10.*DySample.*groups=3 must divide.*256"):
        DetectionModel(_dysample_yaml([2, "lp", 3]), verbose=False)


def test_its_rows_align_with_the_upsample_rows_they_replace():
    # a DySample row stands where nn.Upsample stood: no index shifts, every other row corresponds to itself
    source, target = yaml_model_load("yolov8n.yaml"), _dysample_yaml([2, "pl", 8, True])
    alignment = transfer.align(source, target, registry.channel_names(), registry.canonical_names())
    assert alignment.first_difference is None
    assert alignment.layer_map == {i: i for i in range(len(source["backbone"]) + len(source["head"]))}
    moved = _dysample_yaml([4])  # an x4 upsampler does not stand for an x2 nn.Upsample
    assert "layer 10 DySample" in transfer.align(source, moved, set(), registry.canonical_names()).first_difference


def test_onnx_with_the_identity_mix_follows_the_input_size():
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    _, block = pair(16, 2, "lp", 4, True)
    block.start_as_identity()
    with torch.no_grad():
        block.identity_mix.fill_(0.3)
    buffer = io.BytesIO()
    buffer.write(export_onnx(block, torch.randn(1, 16, 8, 10), block.onnx_min_opset))
    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    x = torch.randn(2, 16, 5, 13)
    (y,) = session.run(None, {"x": x.numpy()})
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(y), block(x), atol=1e-4, rtol=1e-4)


def test_engagement_is_measured_against_the_nearest_upsampling_it_replaces():
    _, block = pair(16, 2, "lp", 4, False)
    model = nn.Sequential(block.start_as_identity())
    x = torch.randn(1, 16, 5, 7)
    assert measure_engagement(model, x) == {"0": 0.0}
    with torch.no_grad():
        block.identity_mix.fill_(0.5)
    assert measure_engagement(model, x)["0"] > 0


def test_attention_map_is_the_offset_length_at_the_input_resolution():
    _, block = pair(16, 2, "pl", 4, True)
    x = torch.randn(2, 16, 6, 9)
    with torch.no_grad():
        heat, source = block.attention_map(x, block(x))
    assert heat.shape == (2, 6, 9) and "offset" in source and bool((heat >= 0).all())
