"""insert_after: `from` renumbering, and ECA after every layer of YOLOv8, YOLO11 and YOLO26 at every scale."""

from __future__ import annotations

import pytest
import torch
from ultralytics.nn.tasks import DetectionModel, yaml_model_load

from yolo_attn import CBAM, ECA, insert_after


def test_insert_after_sppf_renumbers_concat_and_detect():
    cfg = yaml_model_load("yolov8n.yaml")
    new = insert_after(cfg, 9, "CBAM", [8])
    rows = new["backbone"] + new["head"]
    assert rows[10] == [-1, 1, "CBAM", [8]]
    assert len(new["backbone"]) == len(cfg["backbone"]) + 1  # appended to the backbone, after SPPF
    assert rows[11][0] == -1  # Upsample now reads CBAM (relative, in-line)
    assert rows[12][0] == [-1, 6] and rows[15][0] == [-1, 4]  # references before the insertion are unchanged
    assert rows[18][0] == [-1, 13]  # was [-1, 12]: a later layer shifts by one
    assert rows[21][0] == [-1, 10]  # was [-1, 9]: SPPF's consumer now reads CBAM
    assert rows[-1][0] == [16, 19, 22]  # Detect, was [15, 18, 21]
    assert cfg["backbone"][-1][2] == "SPPF"  # the input is not modified


def test_insert_after_rejects_missing_layer():
    with pytest.raises(IndexError, match="layer 99"):
        insert_after(yaml_model_load("yolov8n.yaml"), 99, "SE")


def output_channels(model: DetectionModel, imgsz: int = 64) -> list[int]:
    """Output channels of each layer but the head, from a forward pass of the plain Ultralytics model."""
    channels: list[int] = []
    hooks = [m.register_forward_hook(lambda m, i, o: channels.append(o.shape[1])) for m in model.model[:-1]]
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 3, imgsz, imgsz))
    for h in hooks:
        h.remove()
    return channels


def eca_params(c: int) -> int:
    """ECA has one bias-free 1-D conv of the adaptive kernel size: k parameters."""
    t = int(abs((torch.log2(torch.tensor(float(c))).item() + 1) / 2))
    return t if t % 2 else t + 1


# n and l cover both C3k2 paths (c3k=False / True); width scaling is covered by the model_yamls tests at all 5 scales.
CASES = [("yolov8n.yaml", "n"), ("yolo11n.yaml", "n"), ("yolo26n.yaml", "n"), ("yolo26l.yaml", "l")]


@pytest.mark.parametrize(("name", "scale"), CASES)
def test_eca_after_every_layer(name, scale):
    cfg = yaml_model_load(name)
    baseline = DetectionModel(cfg, verbose=False)
    n_layers = len(cfg["backbone"]) + len(cfg["head"])
    for index in reversed(range(n_layers - 1)):  # every layer but Detect, last first so indices stay valid
        cfg = insert_after(cfg, index, "ECA")
    model = DetectionModel(cfg, verbose=False)
    ecas = [m for m in model.model if isinstance(m, ECA)]
    assert len(ecas) == n_layers - 1
    expected = sum(p.numel() for p in baseline.parameters()) + sum(eca_params(c) for c in output_channels(baseline))
    assert sum(p.numel() for p in model.parameters()) == expected
    assert torch.equal(model.stride, baseline.stride)
    model.eval()
    with torch.no_grad():
        for shape in ((1, 3, 64, 64), (1, 3, 96, 64)):
            out = model(torch.zeros(shape))
            assert out[0].shape[0] == 1


@pytest.mark.parametrize(
    ("name", "model_class"),
    [
        ("yolo26n-seg.yaml", "SegmentationModel"),
        ("yolo11n-pose.yaml", "PoseModel"),
        ("yolov8n-cls.yaml", "ClassificationModel"),
    ],
)
def test_blocks_in_other_task_yamls(name, model_class):
    from ultralytics.nn import tasks

    cfg = yaml_model_load(name)
    for index in (4, 2):  # after a backbone stage, then earlier: two blocks of different widths
        cfg = insert_after(cfg, index, "CBAM", [8])
    model = getattr(tasks, model_class)(cfg, verbose=False).eval()
    assert sum(isinstance(m, CBAM) for m in model.model) == 2
    with torch.no_grad():
        model(torch.zeros(1, 3, 64, 64))
