"""visualize --features: strongest channels of chosen layers beside the attention maps, Grad-CAM for classifiers."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from yolo_attn.cli import main
from yolo_attn.modules import CBAM
from yolo_attn.modules.random_weights import randomize_
from yolo_attn.utils.models import load_model
from yolo_attn.visualize import (
    capture_layer_outputs,
    feature_maps,
    grad_cam,
    head_input_layer,
    parse_layers,
    strongest_channels,
)
from yolo_attn.visualize import features as features_module

REPO = Path(__file__).resolve().parents[1]
CLS_YAML = REPO / "yolo_attn" / "cfg" / "model_yamls" / "yolov8n-cls-cbam.yaml"
DET_YAML = REPO / "model_yamls" / "yolov8n-se.yaml"
IMGSZ = 64


def write_image(path: Path, seed: int = 0) -> Path:
    """Write a noisy 80x96 BGR image with a bright square."""
    image = np.random.default_rng(seed).integers(0, 80, (80, 96, 3), dtype=np.uint8)
    cv2.rectangle(image, (20, 20), (50, 50), (40, 200, 250), -1)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), image)
    return path


def randomise_gates(model: nn.Module) -> None:
    """Random weights for every attention block of the model, so their maps are not flat."""
    for index, layer in enumerate(model.model):
        if isinstance(layer, CBAM):
            randomize_(layer, seed=index)


def calibrate(model: nn.Module) -> nn.Module:
    """Set every BatchNorm's running statistics from random images, so that deep activations are O(1) in eval mode
    (a fresh model's default statistics shrink them to ~1e-10, where any Grad-CAM looks the same to assert_close)."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average
    model.train()
    with torch.no_grad():
        model(torch.rand(8, 3, IMGSZ, IMGSZ, generator=torch.Generator().manual_seed(1)))
    return model.eval()


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """Record the arguments of every plot_feature_grid call (and still draw)."""
    calls: list[dict] = []
    real = features_module.plot_feature_grid

    def record(image, features, layer_names, maps, cam, path, title="", top_k=8):
        calls.append({"image": image, "features": features, "names": layer_names, "maps": maps, "cam": cam})
        return real(image, features, layer_names, maps, cam, path, title, top_k)

    monkeypatch.setattr(features_module, "plot_feature_grid", record)
    return calls


def test_parse_layers() -> None:
    assert parse_layers("2,4,6", 10) == [2, 4, 6]
    assert parse_layers("6, 2,6,-2", 10) == [6, 2, 8]
    for bad, match in (("2,x", "'x' is not a layer index"), ("9", "out of range; expected 0..8"), ("", "at least")):
        with pytest.raises(ValueError, match=match):
            parse_layers(bad, 10)


def test_strongest_channels() -> None:
    fmap = torch.zeros(5, 3, 3)
    fmap[3] = -2.0  # |activation| counts
    fmap[1] = 1.0
    fmap[4, 0, 0] = 4.0
    assert strongest_channels(fmap, 3) == [3, 1, 4]
    assert len(strongest_channels(fmap, 99)) == 5


def test_classifier_features_attention_and_grad_cam(tmp_path: Path, spy: list[dict]) -> None:
    model = load_model(CLS_YAML)
    randomise_gates(model)
    images = tmp_path / "images"
    write_image(images / "a.jpg")
    write_image(images / "b.png", seed=1)
    pngs = feature_maps(model, images, "2,4,6", imgsz=IMGSZ, out=tmp_path / "out", top_k=4)

    assert [p.name for p in pngs] == ["a_features.png", "b_features.png"]
    assert all(cv2.imread(str(p)) is not None for p in pngs)
    call = spy[0]
    assert list(call["features"]) == [2, 4, 6]
    assert call["names"] == {2: "C2f", 4: "Conv", 6: "CBAM"}  # yolov8-cls-cbam: layer 6 is the P3 stage's CBAM
    assert [tuple(f.shape) for f in call["features"].values()] == [(1, 32, 16, 16), (1, 64, 8, 8), (1, 64, 8, 8)]
    assert [m.layer for m in call["maps"]] == [3, 6, 9, 12]
    assert call["cam"] is not None and call["cam"][1].startswith("Grad-CAM, layer 12 (input of Classify)")

    # The features are the layers' own outputs for the letterboxed image.
    _, tensor = features_module.letterbox_image(images / "a.jpg", IMGSZ)
    model.eval()
    expected = capture_layer_outputs(model, tensor, [4])[4]
    torch.testing.assert_close(call["features"][4], expected)


def test_grad_cam_matches_its_definition() -> None:
    """ReLU(sum_c mean_hw(d logit_k / dA_c) * A_c) at the layer feeding Classify, k the predicted class."""
    model = load_model(CLS_YAML)
    randomise_gates(model)
    calibrate(model)
    x = torch.rand(1, 3, IMGSZ, IMGSZ, generator=torch.Generator().manual_seed(2))
    cam, k, p = grad_cam(model, x)
    assert cam.max() > 1e-3 and cam.shape == (2, 2)  # the map at the 2x2 P5/32 stage of a 64 px input
    layer = head_input_layer(model)
    assert layer == len(model.model) - 2

    activation = model.model[: layer + 1](x)  # a plain chain (every `from` is -1) up to the head's input
    activation = activation.detach().requires_grad_(True)
    logits = model.model[-1].linear(model.model[-1].pool(model.model[-1].conv(activation)).flatten(1))
    assert k == int(logits.argmax())
    (gradient,) = torch.autograd.grad(logits[0, k], activation)
    expected = torch.relu((gradient[0].mean((1, 2), keepdim=True) * activation[0]).sum(0)).detach()
    torch.testing.assert_close(cam, expected, rtol=1e-4, atol=1e-6)
    assert p == pytest.approx(float(logits.softmax(1)[0, k].detach()), abs=1e-6)
    assert not any(m._forward_hooks for m in model.modules())


def test_detection_model_via_cli(tmp_path: Path, spy: list[dict], capsys: pytest.CaptureFixture) -> None:
    """`yolo-attn visualize --features` on a detector: feature rows and attention maps, no Grad-CAM."""
    image = write_image(tmp_path / "img.jpg")
    args = ["--weights", str(DET_YAML), "--source", str(image), "--imgsz", str(IMGSZ), "--out", str(tmp_path / "o")]
    main(["visualize", *args, "--features", "2,10"])
    assert (tmp_path / "o" / "img_features.png").is_file()
    assert str(tmp_path / "o" / "img_features.png") in capsys.readouterr().out
    call = spy[0]
    assert list(call["features"]) == [2, 10] and call["names"] == {2: "C2f", 10: "SE"}
    assert [m.layer for m in call["maps"]] == [10, 17, 21, 25]  # yolov8-se: the four SE blocks
    assert call["cam"] is None


def test_baseline_without_attention_gets_feature_rows_only(tmp_path: Path, spy: list[dict]) -> None:
    image = write_image(tmp_path / "img.jpg")
    feature_maps("yolov8n-cls.yaml", image, [1, 3], imgsz=IMGSZ, out=tmp_path / "o")
    assert spy[0]["maps"] == [] and spy[0]["cam"] is not None
    with pytest.raises(ValueError, match="out of range"):
        feature_maps("yolov8n-cls.yaml", image, "9", imgsz=IMGSZ, out=tmp_path / "o")  # 9 = Classify, the head
