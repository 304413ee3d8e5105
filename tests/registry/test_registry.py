"""Registration: YAML names, channel inference at every scale, the layer table, errors, register/unregister."""

from __future__ import annotations

import logging
import shutil

import pytest
import torch
from support.blocks import shipped
from support.models import SCALES, build, small_yaml
from torch import nn
from ultralytics import YOLO
from ultralytics.engine import model as engine_model
from ultralytics.nn import tasks
from ultralytics.nn.modules import C2f, C3k2
from ultralytics.nn.tasks import DetectionModel
from ultralytics.utils import LOGGER
from ultralytics.utils.callbacks import base as callbacks_base

import yolo_attn
from yolo_attn.integration import lookup, parse, patches, workers
from yolo_attn.modules import CA_C2f, CA_C3k2, CoordAtt

pytestmark = pytest.mark.seam  # every test here drives Ultralytics' parse_model, YAML lookup or callbacks


def width(c: int, scale: str) -> int:
    """Channels of a YOLOv8 layer written as ``c`` in the YAML, at a scale (independent of the registry)."""
    _, w, max_c = SCALES[scale]
    return max(8, int(-(-min(c, max_c) * w // 8) * 8))


def test_yaml_names_resolve_to_our_blocks_not_ultralytics():
    from ultralytics.nn.modules import CBAM as ULTRALYTICS_CBAM

    model = build(small_yaml([[-1, 1, "CBAM", []]]))
    block = model.model[5]
    assert isinstance(block, yolo_attn.CBAM)
    assert not isinstance(block, ULTRALYTICS_CBAM)
    assert block.type == "yolo_attn.modules.cbam.CBAM"


@pytest.mark.parametrize("scale", list(SCALES))
@pytest.mark.parametrize("name", [s.name for s in shipped("channel")])
def test_input_channels_inferred_at_every_scale(name, scale):
    # Layer 5 reads layer 4 (P4, 512 in the YAML); layer 6 reads layer 3 (P3, 256) through a positive `from`;
    # layer 7 reads layer 5 through a negative `from` other than -1.
    rows = [[-1, 1, name, []], [3, 1, name, []], [-2, 1, name, []]]
    model = build(small_yaml([*rows, [-1, 1, "Conv", [512, 1, 1]]], scale))
    expected = {5: width(512, scale), 6: width(256, scale), 7: width(512, scale)}
    for i, c in expected.items():
        reference = getattr(yolo_attn, name)(c)
        assert sum(p.numel() for p in model.model[i].parameters()) == sum(p.numel() for p in reference.parameters())
        x = torch.randn(1, c, 6, 5)
        assert model.model[i](x).shape == x.shape
    model.eval()
    assert model(torch.zeros(1, 3, 64, 96))[0].shape[0] == 1


@pytest.mark.parametrize("scale", ["n", "l"])
@pytest.mark.parametrize("name", [s.name for s in shipped("replaces")])
def test_blocks_that_replace_rows_stand_where_those_rows_stood(name, scale):
    # an upsampler in place of nn.Upsample: same place, same output shape (the Concat after it checks), channels
    # inferred, no later index shifted
    spec = yolo_attn.registry.get(name)
    rows = [[-1, 1, name, []], [[-1, 3], 1, "Concat", [1]], [-1, 1, "Conv", [512, 3, 2]]]
    ours = build(small_yaml(rows, scale))
    theirs = build(small_yaml([[-1, 1, *spec.replaced_row([])], *rows[1:]], scale))
    block, replaced = ours.model[5], theirs.model[5]
    assert type(block) is spec.cls and type(replaced) is spec.replaces
    extra = sum(p.numel() for p in block.parameters())
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters()) + extra
    x = torch.randn(1, width(512, scale), 5, 3)
    assert block(x).shape == replaced(x).shape
    image = torch.zeros(1, 3, 64, 96)
    assert ours.eval()(image)[0].shape == theirs.eval()(image)[0].shape


def test_repeats_build_a_sequence_of_blocks():
    assert isinstance(build(small_yaml([[-1, 2, "SE", [8]]], "n")).model[5], yolo_attn.SE)  # depth 0.33: 2 -> 1
    model = build(small_yaml([[-1, 2, "SE", [8]]], "l"))
    block = model.model[5]
    assert isinstance(block, nn.Sequential) and len(block) == 2
    assert all(isinstance(b, yolo_attn.SE) for b in block)


@pytest.mark.parametrize("scale", ["n", "l"])
@pytest.mark.parametrize(
    ("name", "parent", "cls"), [("CA_C2f", C2f, CA_C2f), ("CA-C2f", C2f, CA_C2f), ("CA_C3k2", C3k2, CA_C3k2)]
)
def test_c2f_like_blocks_scale_like_their_parent(name, parent, cls, scale):
    ours = build(small_yaml([[-1, 3, name, [512, True]]], scale))
    theirs = build(small_yaml([[-1, 3, parent.__name__, [512, True]]], scale))
    block, reference = ours.model[5], theirs.model[5]
    assert type(block) is cls and type(reference) is parent
    assert len(block.m) == len(reference.m)  # depth scaled the same way
    assert block.cv2.conv.out_channels == reference.cv2.conv.out_channels == width(512, scale)
    coordatt = [m for m in block.modules() if isinstance(m, CoordAtt)]
    assert coordatt, "CoordAtt must sit inside the bottlenecks"
    extra = sum(p.numel() for m in coordatt for p in m.parameters())
    n_ours = sum(p.numel() for p in ours.parameters())
    assert n_ours == sum(p.numel() for p in theirs.parameters()) + extra


def test_layer_table_shows_real_block_and_args():
    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())
    level = LOGGER.level
    LOGGER.addHandler(handler)
    LOGGER.setLevel(logging.INFO)
    try:
        DetectionModel(small_yaml([[-1, 1, "CBAM", [8, 3]], [-1, 1, "CA_C2f", [512]]]), verbose=True)
    finally:
        LOGGER.removeHandler(handler)
        LOGGER.setLevel(level)
    table = "\n".join(lines)
    assert "yolo_attn.modules.cbam.CBAM" in table
    assert "[128, 8, 3]" in table  # inferred channels, then the YAML args
    assert "yolo_attn.modules.composed.C2f_CoordAtt" in table  # CA_C2f is an alias of the composition
    assert "nn.modules.linear.Identity" not in table and "torch.nn.modules.linear.Identity" not in table


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ([-1, 1, "CBAM", [1024]], r"layer 5 .*CBAM.*r=1024.*Expected CBAM \[r=16, k=7\]"),
        ([-1, 1, "SE", [256]], r"layer 5 .*SE.*r=256.*Expected SE \[r=16\]"),
        ([[-1, 3], 1, "SE", []], r"layer 5 .*'from' must be one integer"),
        ([-1, 1, "ECA", [{"kernel": 3}]], r"layer 5 .*ECA.*kernel.*Expected ECA \[k=None\]"),
        ([-1, 1, "SpatialAttention", [4]], r"layer 5 .*SpatialAttention.*even"),
        ([-1, 1, "SpatialAttention", [[3, 2]]], r"layer 5 .*SpatialAttention.*even"),
        ([-1, 1, "SpatialAttention", [41]], r"layer 5 .*SpatialAttention.*larger than .*feature map"),
        ([-1, 1, "ECA", [4]], r"layer 5 .*ECA.*odd"),
        ([-1, 1, "CBAM", [8, 7, 3]], r"layer 5 .*CBAM.*bad args"),
        ([-1, 1, "MHSA", [7]], r"layer 5 .*MHSA.*heads"),
        ([-1, 1, "SpatialAttention", [7, "median"]], r"layer 5 .*SpatialAttention.*median"),
        # C2f-like rows: parse_model itself would raise a bare IndexError / TypeError naming C2f or C3k2
        ([-1, 3, "CA_C2f", []], r"layer 5 .*CA_C2f.*args are empty.*c2.*Expected CA_C2f \[c2, shortcut=False, g=1"),
        ([-1, 2, "CA_C3k2", []], r"layer 5 .*CA_C3k2.*args are empty.*Expected CA_C3k2 \[c2, c3k=False, e=0.5"),
        ([-1, 1, "CA-C2f", ["wide"]], r"layer 5 .*CA-C2f.*output channels c2 \(a number\), got 'wide'"),
        ([-1, 1, "CA_C2f", [256, True, 1, 0.5, 9]], r"layer 5 .*CA_C2f.*bad args.*too many"),
        ([-1, 1, "CA_C3k2", [256, True, 0.5, False, 1, True, 9]], r"layer 5 .*CA_C3k2.*bad args.*too many"),
    ],
)
def test_bad_rows_get_clear_errors(row, message):
    with pytest.raises(yolo_attn.YAMLRowError, match=message):
        build(small_yaml([row]))


def test_register_is_idempotent_and_unregister_restores_ultralytics():
    original = patches.ORIGINALS["parse_model"]
    original_yaml_load = patches.ORIGINALS["yaml_model_load"]
    callbacks_before = list(callbacks_base.default_callbacks[workers.DDP_EVENT])
    safe_before = list(torch.serialization.get_safe_globals())
    yolo_attn.register()
    assert tasks.parse_model is parse.parse_model
    assert callbacks_base.default_callbacks[workers.DDP_EVENT] == callbacks_before
    assert torch.serialization.get_safe_globals() == safe_before
    try:
        yolo_attn.unregister()
        assert tasks.parse_model is original
        assert tasks.yaml_model_load is engine_model.yaml_model_load is original_yaml_load
        assert workers.register_in_worker not in callbacks_base.default_callbacks[workers.DDP_EVENT]
        assert yolo_attn.CBAM not in torch.serialization.get_safe_globals()
        with pytest.raises(KeyError, match="CBAM"):
            build(small_yaml([[-1, 1, "CBAM", []]]))
        build(small_yaml([]))  # plain YAMLs still build
    finally:
        yolo_attn.register()
    assert yolo_attn.is_registered()
    assert isinstance(build(small_yaml([[-1, 1, "CBAM", []]])).model[5], yolo_attn.CBAM)


def test_plain_yaml_goes_straight_to_ultralytics(monkeypatch):
    calls = []
    original = patches.ORIGINALS["parse_model"]
    monkeypatch.setitem(patches.ORIGINALS, "parse_model", lambda *a, **k: calls.append(1) or original(*a, **k))
    build(small_yaml([]))
    assert calls == [1]


def test_scaled_yaml_name_found_in_a_folder_whose_name_looks_like_a_scale(tmp_path, repo):
    # Ultralytics' own lookup strips the "5s" of "exp5s" from the path and fails; the file name alone carries the scale.
    folder = tmp_path / "exp5s"
    folder.mkdir()
    shutil.copy(repo / "model_yamls" / "yolov8-cbam.yaml", folder)
    with pytest.raises(FileNotFoundError):
        patches.ORIGINALS["yaml_model_load"](folder / "yolov8n-cbam.yaml")
    model = YOLO(str(folder / "yolov8n-cbam.yaml"))  # through ultralytics.engine.model
    assert model.model.yaml["scale"] == "n"
    assert isinstance(model.model.model[10], yolo_attn.CBAM)
    assert DetectionModel(str(folder / "yolov8s-cbam.yaml"), verbose=False).yaml["scale"] == "s"  # through tasks


def test_shipped_yaml_found_by_bare_name_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # an empty folder: no model_yamls/ here
    with pytest.raises(FileNotFoundError):  # Ultralytics alone does not know the name
        patches.ORIGINALS["yaml_model_load"]("yolo26n-cbam.yaml")
    d = tasks.yaml_model_load("yolo26n-cbam.yaml")
    assert (d["scale"], d["yaml_file"]) == ("n", "yolo26n-cbam.yaml")  # as Ultralytics records its own yolov8n.yaml
    assert lookup.find_shipped_yaml("yolo26s-cbam.yaml") == lookup.MODEL_YAMLS_DIR / "yolo26-cbam.yaml"
    assert lookup.find_shipped_yaml("elsewhere/yolo26n-cbam.yaml") is None  # only bare names
    model = YOLO("yolov8s-eca.yaml")  # through ultralytics.engine.model
    assert model.model.yaml["scale"] == "s"
    assert sum(isinstance(m, yolo_attn.ECA) for m in model.model.modules()) == 4
    with pytest.raises(FileNotFoundError, match=r"yolo26n-cbamx\.yaml.*shipped YAMLs.*yolo26-cbam\.yaml"):
        tasks.yaml_model_load("yolo26n-cbamx.yaml")


def test_local_yaml_wins_over_the_shipped_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = (lookup.MODEL_YAMLS_DIR / "yolov8-cbam.yaml").read_text().replace("CBAM, []", "SE, []")
    (tmp_path / "yolov8-cbam.yaml").write_text(text)  # a user's own edit under the shipped name
    model = DetectionModel("yolov8n-cbam.yaml", verbose=False)
    assert isinstance(model.model[10], yolo_attn.SE)
    assert not any(isinstance(m, yolo_attn.CBAM) for m in model.modules())
