"""Pretrained weights transfer by YAML alignment: every shipped YAML, shifted strangers, other families and scales,
fine-tuned sources, and the identity start of new attention blocks."""

from __future__ import annotations

import copy
import re
from functools import cache
from pathlib import Path

import pytest
import torch
from conftest import MODEL_YAMLS
from torch import nn
from ultralytics import YOLO
from ultralytics.nn.tasks import ClassificationModel, DetectionModel

import yolo_attn
from yolo_attn.finetune import transfer
from yolo_attn.integration import loading, patches
from yolo_attn.modules.random_weights import randomize_

IMAGE = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))


def baseline_of(variant: str) -> str:
    """``yolov8n-cbam.yaml`` -> ``yolov8n.yaml``; ``yolov8n-cls-se.yaml`` -> ``yolov8n-cls.yaml``."""
    family = re.match(r"(yolov8|yolo11|yolo26)n(-cls)?", variant)
    assert family, f"no Ultralytics baseline known for {variant}"
    return f"{family[0]}.yaml"


def shipped() -> list[str]:
    """Every shipped YAML, detection and classification, at scale n (``yolov8-cbam.yaml`` -> ``yolov8n-cbam.yaml``)."""
    names = sorted(p.name for p in MODEL_YAMLS.glob("*.yaml"))
    return [re.sub(r"^(yolov8|yolo11|yolo26)-", r"\1n-", n) for n in names]


@cache
def baseline_checkpoint(name: str, folder: str) -> tuple[Path, nn.Module]:
    """A baseline checkpoint with random weights (not zeros), written once per family and task."""
    model_class = ClassificationModel if "-cls" in name else DetectionModel
    model = randomize_(model_class(name, verbose=False), fan_in=True).eval()
    path = Path(folder) / name.replace(".yaml", ".pt")
    torch.save({"model": copy.deepcopy(model), "train_args": {}}, path)
    return path, model


def expected_layer_map(source: dict, target: dict) -> dict[int, int]:
    """The layer map of a shipped YAML, computed independently of yolo_attn.finetune.transfer.

    A shipped variant only inserts channel-preserving rows or renames C2f/C3k2 rows to their CA versions, so its other
    rows, in order, are the baseline's rows in order.
    """
    rename = {"CA_C2f": "C2f", "CA-C2f": "C2f", "CA_C3k2": "C3k2"}
    rows_s = source["backbone"] + source["head"]
    rows_t = target["backbone"] + target["head"]
    kept = [j for j, row in enumerate(rows_t) if row[2] not in yolo_attn.BLOCKS]
    assert len(kept) == len(rows_s)
    for i, j in zip(range(len(rows_s)), kept, strict=True):
        assert rename.get(rows_t[j][2], rows_t[j][2]) == rows_s[i][2] and rows_t[j][1] == rows_s[i][1]
    return dict(zip(range(len(rows_s)), kept, strict=True))


@pytest.mark.seam
def test_seam_variants_are_shipped():
    assert set(shipped()) >= SEAM_VARIANTS


def relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


def renamed(key: str, layer_map: dict[int, int]) -> str:
    match = re.match(r"model\.(\d+)\.(.+)", key)
    return f"model.{layer_map[int(match[1])]}.{match[2]}" if match else key


# One variant per family and task, and each C2f/C3k2 replacement: enough for the run against the lowest Ultralytics.
SEAM_VARIANTS = {
    "yolov8n-cbam.yaml",
    "yolov8n-ca-c2f.yaml",
    "yolo11n-ca-c3k2.yaml",
    "yolo26n-ca-c3k2.yaml",
    "yolo26n-cbam.yaml",
    "yolov8n-cls-se.yaml",
    "yolo11n-cls-eca.yaml",
}


@pytest.mark.parametrize(
    "variant", [pytest.param(v, marks=[pytest.mark.seam] if v in SEAM_VARIANTS else []) for v in shipped()]
)
def test_every_shipped_yaml_takes_every_baseline_tensor_and_predicts_the_same(variant, tmp_path_factory):
    path, base = baseline_checkpoint(baseline_of(variant), str(tmp_path_factory.getbasetemp()))
    model = YOLO(str(MODEL_YAMLS / variant)).load(path).model.eval()

    layer_map = expected_layer_map(base.yaml, model.yaml)
    ours = model.state_dict()
    for key, tensor in base.state_dict().items():
        assert torch.equal(ours[renamed(key, layer_map)], tensor), f"{key} -> {renamed(key, layer_map)}"

    report = model.transfer_report
    assert report["transferred"] == report["source_tensors"] == len(base.state_dict())
    assert report["identity_start"] and report["new_blocks"]
    with torch.no_grad():
        expected, got = first_output(base(IMAGE)), first_output(model(IMAGE))
    assert relative_difference(got, expected) <= 1e-5


def first_output(output: torch.Tensor | tuple) -> torch.Tensor:
    """The raw prediction tensor: a detector's first output, a classifier's (B, nc) probabilities."""
    return output if isinstance(output, torch.Tensor) else output[0]


def small_yaml(backbone_extra: list, head: list, nc: int = 2) -> dict:
    backbone = [
        [-1, 1, "Conv", [64, 3, 2]],  # 0
        [-1, 1, "Conv", [128, 3, 2]],  # 1
        [-1, 1, "Conv", [256, 3, 2]],  # 2 P3
        [-1, 1, "C2f", [256, True]],  # 3
        [-1, 1, "Conv", [512, 3, 2]],  # 4 P4
        *backbone_extra,
    ]
    return {"nc": nc, "scales": {"n": [0.33, 0.25, 1024]}, "scale": "n", "backbone": backbone, "head": head}


def build(d: dict) -> DetectionModel:
    return DetectionModel(copy.deepcopy(d), verbose=False)


def test_a_shifted_layer_never_lands_in_a_same_shaped_stranger():
    # The target inserts a dilated 3x3 Conv at index 5, with exactly the shapes of the source's layer 5 (a plain 3x3
    # Conv), and reads its input from a side branch; the source's layer 5 now stands at index 6.
    source = small_yaml([[-1, 1, "Conv", [512, 3, 1]]], [[[3, 5], 1, "Detect", ["nc"]]])  # 5
    stranger = [4, 1, "Conv", [512, 3, 1, None, 1, 2]]  # 5: dilation 2, same tensor shapes as a 3x3 Conv
    target = small_yaml([stranger, [4, 1, "Conv", [512, 3, 1]]], [[[3, 6], 1, "Detect", ["nc"]]])
    src, tgt = randomize_(build(source), fan_in=True), build(target)
    fresh_stranger = copy.deepcopy(tgt.model[5].state_dict())
    assert {k: v.shape for k, v in src.model[5].state_dict().items()} == {
        k: v.shape for k, v in tgt.model[5].state_dict().items()
    }

    by_key = build(target)
    patches.ORIGINALS["load"](by_key, src, verbose=False)  # Ultralytics' own load puts layer 5 into the stranger
    assert torch.equal(by_key.model[5].conv.weight, src.model[5].conv.weight)

    report = yolo_attn.load_pretrained(tgt, src, verbose=False)
    assert [5, 6] in report.layer_map and all(t != 5 for _, t in report.layer_map)
    for key, value in tgt.model[5].state_dict().items():
        assert torch.equal(value, fresh_stranger[key]), f"model.5.{key} received a tensor"
    for key, value in src.model[5].state_dict().items():
        assert torch.equal(tgt.model[6].state_dict()[key], value)
    assert report.transferred == report.source_tensors
    tgt_state = tgt.state_dict()
    for key, value in src.state_dict().items():
        assert torch.equal(tgt_state[renamed(key, {5: 6, 6: 7} | {i: i for i in range(5)})], value)


def test_other_family_transfers_only_what_corresponds_and_names_the_first_difference(tmp_path_factory):
    path, yolo11 = baseline_checkpoint("yolo11n.yaml", str(tmp_path_factory.getbasetemp()))
    model = fresh("yolov8n-cbam.yaml")
    before = copy.deepcopy(model.state_dict())
    report = yolo_attn.load_pretrained(model, str(path), verbose=False)
    assert "target layer 2 C2f" in report.first_difference and "module differs" in report.first_difference
    assert report.first_difference in report.summary()
    assert report.layer_map == [[0, 0], [1, 1]]  # the stem convolutions; everything after reads a different layer
    source = yolo11.state_dict()
    moved = {k for k, v in model.state_dict().items() if k in before and not torch.equal(v, before[k])}
    assert moved and all(k.startswith(("model.0.", "model.1.")) for k in moved)
    for key in moved:
        assert torch.equal(model.state_dict()[key], source[key])
    assert report.new_blocks == {f"model.{i}": "CBAM" for i in (10, 17, 21, 25)} and report.identity_start


@pytest.mark.slow  # builds yolov8s
def test_other_scale_transfers_only_equal_shapes(tmp_path_factory):
    source = randomize_(DetectionModel("yolov8s.yaml", verbose=False), fan_in=True)
    model = fresh("yolov8n-cbam.yaml")
    report = yolo_attn.load_pretrained(model, source, verbose=False)
    assert report.first_difference.startswith("target layer 0: model.0.conv.weight shape (32, 3, 3, 3)")
    layer_map = dict(map(tuple, report.layer_map))
    state = model.state_dict()
    for key, value in source.state_dict().items():
        target_key = renamed(key, layer_map)
        if key in report.not_transferred:
            assert "shape" in report.not_transferred[key]
        else:
            assert torch.equal(state[target_key], value)
    assert report.transferred < report.source_tensors


@cache
def _built(name: str) -> DetectionModel:
    return DetectionModel(str(MODEL_YAMLS / name), verbose=False)


def yolo_attn_yaml(name: str) -> dict:
    """The model dict of a shipped YAML at a scaled name (``yolov8n-cbam.yaml``)."""
    return copy.deepcopy(_built(name).yaml)


def fresh(name: str) -> DetectionModel:
    """A freshly built model of a shipped YAML (built once, copied)."""
    return copy.deepcopy(_built(name))


@pytest.mark.parametrize(
    "variant",
    [
        pytest.param("yolov8n-cbam.yaml", marks=pytest.mark.seam),
        pytest.param("yolo11n-ca-c3k2.yaml", marks=pytest.mark.slow),
        pytest.param("yolov8n-mhsa.yaml", marks=pytest.mark.slow),
    ],
)
def test_a_fine_tuned_variant_reloads_exactly(variant, tmp_path):
    # best.pt of a fine-tuned variant (mixes moved off zero) into a fresh build of its own YAML: the fine-tuning and
    # resume paths. Every tensor, the mixes included, lands at its own key.
    tuned = fresh(variant)
    for block in transfer.outermost_attention_blocks(tuned).values():
        block.start_as_identity()
    randomize_(tuned, fan_in=True).eval()
    mixes = [k for k in tuned.state_dict() if k.endswith("identity_mix")]
    assert mixes or variant == "yolov8n-mhsa.yaml"
    path = tmp_path / "best.pt"
    torch.save({"model": tuned}, path)
    model = YOLO(str(MODEL_YAMLS / variant)).load(path).model.eval()
    theirs, ours = tuned.state_dict(), model.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)
    assert not model.transfer_report["new_blocks"] and not model.transfer_report["not_transferred"]
    with torch.no_grad():
        assert torch.equal(model(IMAGE)[0], tuned(IMAGE)[0])


def test_attention_blocks_of_the_source_are_dropped_or_kept_by_position():
    # Source: CBAM after layer 4 and SE after layer 5. Target: SE after layer 5 only, and a new ECA after layer 4.
    source = small_yaml(
        [[-1, 1, "CBAM", []], [-1, 1, "Conv", [512, 1, 1]], [-1, 1, "SE", []]], [[[3, 7], 1, "Detect", ["nc"]]]
    )
    target = small_yaml(
        [[-1, 1, "ECA", []], [-1, 1, "Conv", [512, 1, 1]], [-1, 1, "SE", []]], [[[3, 7], 1, "Detect", ["nc"]]]
    )
    src, tgt = randomize_(build(source), fan_in=True), build(target)
    report = yolo_attn.load_pretrained(tgt, src, verbose=False)
    assert report.dropped_blocks == {"model.5": "CBAM"}
    assert report.new_blocks == {"model.5": "ECA"}
    assert all(torch.equal(v, src.model[7].state_dict()[k]) for k, v in tgt.model[7].state_dict().items())
    assert tgt.model[5].identity_mix is not None and float(tgt.model[5].identity_mix.detach()) == 0


def test_identity_start_opt_out(monkeypatch, tmp_path_factory):
    path, base = baseline_checkpoint("yolov8n.yaml", str(tmp_path_factory.getbasetemp()))
    monkeypatch.setenv(transfer.ENV_IDENTITY_START, "0")
    model = YOLO(str(MODEL_YAMLS / "yolov8n-se.yaml")).load(path).model.eval()
    assert not model.transfer_report["identity_start"]
    assert all(getattr(m, "identity_mix", None) is None for m in model.modules())
    with torch.no_grad():
        assert relative_difference(model(IMAGE)[0], base(IMAGE)[0]) > 1e-3  # fresh SE gates halve their input

    monkeypatch.setenv(transfer.ENV_IDENTITY_START, "1")
    d = dict(yolo_attn_yaml("yolov8n-se.yaml")) | {"identity_start": False}  # the YAML key wins, and travels
    model = build(d)
    yolo_attn.load_pretrained(model, path, verbose=False)
    assert not model.transfer_report["identity_start"]

    monkeypatch.setenv(transfer.ENV_IDENTITY_START, "maybe")
    with pytest.raises(ValueError, match="YOLO_ATTN_IDENTITY_START must be 1 or 0"):
        yolo_attn.load_pretrained(fresh("yolov8n-se.yaml"), path, verbose=False)


@pytest.mark.seam
def test_plain_models_with_the_same_rows_go_to_ultralytics_unchanged(monkeypatch, tmp_path_factory):
    path, base = baseline_checkpoint("yolov8n.yaml", str(tmp_path_factory.getbasetemp()))
    calls = []
    original = patches.ORIGINALS["load"]
    spy = lambda m, w, verbose=True: calls.append(w) or original(m, w, verbose)  # noqa: E731
    monkeypatch.setitem(patches.ORIGINALS, "load", spy)
    model = DetectionModel("yolov8n.yaml", verbose=False)
    model.load(torch.load(path, weights_only=False))
    assert len(calls) == 1 and isinstance(calls[0], dict)  # the checkpoint itself, not a renamed view
    assert model.transfer_report["aligned"] is False
    assert model.transfer_report["transferred"] == len(base.state_dict())


def test_summary_line(tmp_path_factory):
    path, _ = baseline_checkpoint("yolov8n.yaml", str(tmp_path_factory.getbasetemp()))
    report = yolo_attn.load_pretrained(fresh("yolov8n-cbam.yaml"), str(path), verbose=False)
    assert report.summary() == (
        "yolo_attn: 355/355 tensors of yolov8n.pt transferred (layers 10-22 -> 11-26); "
        "new: 4 CBAM blocks (44 tensors), started as identity"
    )
    assert report.to_dict()["summary"] == report.summary()
    import json

    assert json.loads(json.dumps(report.to_dict()))["layer_map"][10] == [10, 11]


@pytest.mark.seam
def test_load_wrapper_is_installed_and_removed():
    from ultralytics.nn import tasks

    assert tasks.BaseModel.load is loading.base_model_load
    original = patches.ORIGINALS["load"]
    try:
        yolo_attn.unregister()
        assert tasks.BaseModel.load is original
    finally:
        yolo_attn.register()
    assert tasks.BaseModel.load is loading.base_model_load
