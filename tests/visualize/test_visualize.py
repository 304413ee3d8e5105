"""Tests for yolo_attn.visualize: block discovery, map extraction per block family, letterbox and the PNG grid."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from yolo_attn.modules import (
    CBAM,
    ECA,
    MHSA,
    SAM,
    SE,
    ChannelAttention,
    CoordAtt,
    SeparableSelfAttention,
    SpatialAttention,
)

# The submodule, not the function of the same name that yolo_attn.visualize exports.
from yolo_attn.modules.random_weights import randomize_
from yolo_attn.utils.models import load_model
from yolo_attn.visualize import (
    attention_maps,
    block_attention_map,
    capture_attention_maps,
    find_attention_blocks,
    letterbox_image,
    overlay,
)

# A tiny detector with every block family; scale n keeps the written widths (one repeat of CA_C2f is 2 bottlenecks).
VIS_YAML = """
nc: 2
scales:
  n: [1.0, 1.0, 1024]
backbone:
  - [-1, 1, Conv, [16, 3, 2]] # 0 P1/2
  - [-1, 1, SpatialAttention, [3]] # 1
  - [-1, 1, Conv, [16, 3, 2]] # 2 P2/4
  - [-1, 2, CA_C2f, [16, True]] # 3
  - [-1, 1, Conv, [32, 3, 2]] # 4 P3/8
  - [-1, 1, CBAM, [4, 3]] # 5
  - [-1, 1, SAM, []] # 6
  - [-1, 1, Conv, [32, 3, 2]] # 7 P4/16
  - [-1, 1, SE, [4]] # 8
  - [-1, 1, ECA, []] # 9
  - [-1, 1, Conv, [32, 3, 2]] # 10 P5/32
  - [-1, 1, MHSA, [4]] # 11
  - [-1, 1, SeparableSelfAttention, []] # 12
  - [-1, 1, CoordAtt, []] # 13
  - [-1, 1, ChannelAttention, [4]] # 14
head:
  - [[6, 9, 14], 1, Detect, [nc]] # 15
"""
IMGSZ = 64
# (layer index, display name, map side at IMGSZ) of every block in VIS_YAML, written from the YAML by hand.
EXPECTED_BLOCKS = [
    (1, "SpatialAttention", 32),
    (3, "C2f_CoordAtt > CoordAtt (m.0.attn)", 16),
    (3, "C2f_CoordAtt > CoordAtt (m.1.attn)", 16),
    (5, "CBAM", 8),
    (6, "SAM", 8),
    (8, "SE", 4),
    (9, "ECA", 4),
    (11, "MHSA", 2),
    (12, "SeparableSelfAttention", 2),
    (13, "CoordAtt", 2),
    (14, "ChannelAttention", 2),
]


@pytest.fixture(scope="module")
def vis_yaml(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny multi-block model YAML, named so Ultralytics reads scale n from the file name."""
    path = tmp_path_factory.mktemp("vis_model") / "yolov8n-vis.yaml"
    path.write_text(VIS_YAML)
    return path


def write_image(path: Path, height: int = 96, width: int = 128, seed: int = 0) -> Path:
    """Write a noisy BGR image with a red square and return its path."""
    image = np.random.default_rng(seed).integers(0, 60, (height, width, 3), dtype=np.uint8)
    cv2.rectangle(image, (width // 4, height // 4), (width // 2, height // 2), (0, 0, 255), -1)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), image)
    return path


def bn_eval(x: torch.Tensor, bn: nn.BatchNorm2d) -> torch.Tensor:
    """BatchNorm in eval mode, written out."""
    shape = (1, -1, 1, 1)
    return (x - bn.running_mean.view(shape)) / (bn.running_var.view(shape) + bn.eps).sqrt() * bn.weight.view(
        shape
    ) + bn.bias.view(shape)


def spatial_gate_reference(x: torch.Tensor, conv: nn.Conv2d, bn: nn.Module) -> torch.Tensor:
    """CBAM spatial gate sigmoid(BN?(conv([max_c, mean_c]))) with the block's weights, shape (B, H, W)."""
    pooled = torch.cat((x.max(1, keepdim=True).values, x.mean(1, keepdim=True)), 1)
    logits = F.conv2d(pooled, conv.weight, conv.bias, padding=(conv.weight.shape[2] // 2, conv.weight.shape[3] // 2))
    if isinstance(bn, nn.BatchNorm2d):
        logits = bn_eval(logits, bn)
    return torch.sigmoid(logits)[:, 0]


def test_spatial_attention_map_is_its_gate() -> None:
    """The SpatialAttention map is sigmoid(conv([max, mean])) at the feature map's H, W."""
    block = randomize_(SpatialAttention(8, k=3)).eval()
    x = torch.randn(2, 8, 6, 10)
    derived, source = block_attention_map(block, x, block(x))
    assert derived.shape == (2, 6, 10)
    assert source == "spatial gate"
    torch.testing.assert_close(derived, spatial_gate_reference(x, block.conv, block.bn))
    assert derived.std() > 1e-3  # the randomised gate is not flat, so the comparison means something


def test_cbam_map_is_spatial_gate_on_channel_refined_features() -> None:
    """The CBAM map is its spatial gate computed on x times the channel gate, not on x."""
    block = randomize_(CBAM(16, r=4, k=3)).eval()
    x = torch.randn(2, 16, 6, 10)
    mlp = block.channel_attention.mlp

    def shared_mlp(v: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.relu(F.conv2d(v, mlp[0].weight, mlp[0].bias)), mlp[2].weight, mlp[2].bias)

    channel_gate = torch.sigmoid(shared_mlp(x.mean((2, 3), keepdim=True)) + shared_mlp(x.amax((2, 3), keepdim=True)))
    spatial = block.spatial_attention
    expected = spatial_gate_reference(x * channel_gate, spatial.conv, spatial.bn)
    derived, source = block_attention_map(block, x, block(x))
    torch.testing.assert_close(derived, expected)
    assert source == "spatial gate"
    assert not torch.allclose(derived, spatial_gate_reference(x, spatial.conv, spatial.bn), atol=1e-4)


def test_coordatt_map_is_channel_mean_of_directional_gates() -> None:
    """The CoordAtt map is mean_c(a_h * a_w), with the gates recomputed from the paper's steps."""
    block = randomize_(CoordAtt(16, r=4)).eval()
    x = torch.randn(2, 16, 6, 10)
    pooled = torch.cat((x.mean(3, keepdim=True), x.mean(2, keepdim=True).transpose(2, 3)), 2)  # (B, C, H+W, 1)
    y = F.hardswish(bn_eval(F.conv2d(pooled, block.conv1.weight, block.conv1.bias), block.bn1))
    a_h = torch.sigmoid(F.conv2d(y[:, :, :6], block.conv_h.weight, block.conv_h.bias))  # (B, C, H, 1)
    a_w = torch.sigmoid(F.conv2d(y[:, :, 6:], block.conv_w.weight, block.conv_w.bias)).transpose(2, 3)  # (B, C, 1, W)
    derived, _ = block_attention_map(block, x, block(x))
    assert derived.shape == (2, 6, 10)
    torch.testing.assert_close(derived, (a_h * a_w).mean(1))


def test_mhsa_map_is_attention_received() -> None:
    """The MHSA map is the softmax attention each key position receives, averaged over heads and queries."""
    block = randomize_(MHSA(16, heads=4)).eval()
    x = torch.randn(2, 16, 3, 5)
    q, k, _ = F.conv2d(x, block.qkv.weight, block.qkv.bias).view(2, 3, 4, 4, 15).unbind(1)  # (B, heads, d, N)
    weights = torch.softmax(torch.einsum("bhdq,bhdk->bhqk", q, k) / math.sqrt(4), dim=-1)
    derived, _ = block_attention_map(block, x, block(x))
    assert derived.shape == (2, 3, 5)
    torch.testing.assert_close(derived, weights.mean((1, 2)).view(2, 3, 5))
    torch.testing.assert_close(derived.sum((1, 2)), torch.ones(2))  # mean of rows that each sum to 1


def test_sam_and_separable_maps() -> None:
    """SAM: channel mean of sigmoid(BN(conv1x1(x))); separable attention: softmax of its score row over positions."""
    x = torch.randn(2, 8, 4, 6)
    sam = randomize_(SAM(8)).eval()
    derived, _ = block_attention_map(sam, x, sam(x))
    torch.testing.assert_close(derived, torch.sigmoid(bn_eval(F.conv2d(x, sam.conv.weight), sam.bn)).mean(1))

    ssa = randomize_(SeparableSelfAttention(8)).eval()
    normed = F.group_norm(x, 1, ssa.norm.weight, ssa.norm.bias, ssa.norm.eps)
    scores = F.conv2d(normed, ssa.qkv.weight[:1], ssa.qkv.bias[:1])  # (B, 1, H, W)
    derived, source = block_attention_map(ssa, x, ssa(x))
    torch.testing.assert_close(derived, torch.softmax(scores.flatten(1), 1).view(2, 4, 6))
    assert source == "context scores"


@pytest.mark.parametrize("block_class", [SE, ChannelAttention, ECA])
def test_channel_gates_show_their_activation(block_class: type[nn.Module]) -> None:
    """Channel-only gates are shown by the channel mean of |output|, and say so."""
    block = randomize_(block_class(16)).eval()
    x = torch.randn(2, 16, 4, 6)
    output = block(x)
    derived, source = block_attention_map(block, x, output)
    torch.testing.assert_close(derived, output.abs().mean(1))
    assert source.startswith(f"activation after {block_class.__name__}")


def test_block_attention_map_rejects_other_modules() -> None:
    """A module that is not an attention block is an error, not a silent empty map."""
    with pytest.raises(TypeError, match="not a yolo_attn attention block"):
        block_attention_map(nn.Conv2d(4, 4, 1), torch.zeros(1, 4, 2, 2), torch.zeros(1, 4, 2, 2))


def test_find_attention_blocks_with_layer_indices(vis_yaml: Path) -> None:
    """Every block is found once, CBAM's inner gates are not listed, CoordAtts inside CA_C2f carry the C2f's index."""
    model = load_model(vis_yaml)
    found = [(block.layer, block.name) for block in find_attention_blocks(model)]
    assert found == [(layer, name) for layer, name, _ in EXPECTED_BLOCKS]


def test_letterbox_image_keeps_aspect_and_colour(tmp_path: Path) -> None:
    """A 96x128 image becomes a 64x64 RGB letterbox: 48 rows of picture between grey bands, red stays red."""
    path = tmp_path / "red.png"
    cv2.imwrite(str(path), np.full((96, 128, 3), (0, 0, 255), dtype=np.uint8))  # BGR red
    image, tensor = letterbox_image(path, 64)
    assert image.shape == (64, 64, 3)
    assert tensor.shape == (1, 3, 64, 64)
    assert (image[0] == 114).all() and (image[-1] == 114).all()  # Ultralytics' padding value
    assert tuple(image[32, 32]) == (255, 0, 0)  # RGB red
    torch.testing.assert_close(tensor[0, :, 32, 32], torch.tensor([1.0, 0.0, 0.0]))


def test_attention_maps_writes_one_grid_per_image(
    vis_yaml: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One valid PNG per image of a folder, with one panel per block, each map from the model's own forward pass."""
    images = tmp_path / "images"
    write_image(images / "a.jpg", seed=1)
    write_image(images / "b.png", height=80, width=60, seed=2)
    (images / "notes.txt").write_text("not an image")
    model = load_model(vis_yaml)
    spatial = randomize_(model.model[1], seed=3).eval()  # layer 1 SpatialAttention, so its map is not flat

    plotted = []
    real_plot = overlay.plot_attention_grid

    def spy(image: np.ndarray, maps: list, path: Path, title: str = "") -> Path:
        plotted.append((image, maps))
        return real_plot(image, maps, path, title)

    monkeypatch.setattr(overlay, "plot_attention_grid", spy)
    pngs = attention_maps(model, images, imgsz=IMGSZ, out=tmp_path / "out")

    assert [p.name for p in pngs] == ["a_attention.png", "b_attention.png"]
    rows = math.ceil((len(EXPECTED_BLOCKS) + 1) / overlay.PANEL_COLUMNS)
    for png in pngs:
        picture = cv2.imread(str(png))
        assert picture is not None
        assert picture.shape[:2] == (400 * rows, 400 * overlay.PANEL_COLUMNS)  # 4-inch panels, 100 dpi
    for image, maps in plotted:
        assert image.shape == (IMGSZ, IMGSZ, 3)
        assert [(m.layer, m.name, tuple(m.map.shape)) for m in maps] == [
            (layer, name, (1, side, side)) for layer, name, side in EXPECTED_BLOCKS
        ]
        assert all(m.title.startswith(f"layer {m.layer}: {m.name}\n") for m in maps)

    assert model.training  # the mode it came in with (a model built from a YAML starts in train mode)
    _, tensor = letterbox_image(images / "a.jpg", IMGSZ)
    model.eval()  # the maps were computed in eval mode
    with torch.no_grad():
        expected = spatial_gate_reference(model.model[0](tensor), spatial.conv, spatial.bn)
    torch.testing.assert_close(plotted[0][1][0].map, expected)


def test_capture_leaves_no_hooks(vis_yaml: Path) -> None:
    """Hooks are removed after the pass, so later forwards are untouched."""
    model = load_model(vis_yaml).eval()
    maps = capture_attention_maps(model, torch.rand(2, 3, IMGSZ, IMGSZ))
    assert len(maps) == len(EXPECTED_BLOCKS)
    assert all(m.map.shape[0] == 2 for m in maps)
    assert not any(module._forward_hooks for module in model.modules())


def test_attention_maps_errors(tmp_path: Path, vis_yaml: Path) -> None:
    """A model without attention blocks and a folder without images are clear errors."""
    write_image(tmp_path / "img.jpg")
    with pytest.raises(ValueError, match="no yolo_attn attention block"):
        attention_maps(nn.Sequential(nn.Conv2d(3, 8, 3)), tmp_path / "img.jpg", out=tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no image files"):
        attention_maps(vis_yaml, tmp_path / "empty", imgsz=IMGSZ, out=tmp_path / "out")
