"""Issue 26: the report and the console name every new block that stayed off, and say when a model's mean did."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from ultralytics.nn.tasks import DetectionModel

from yolo_attn.experiments.report import engagement_notes, engagement_stats
from yolo_attn.finetune.engagement import NEAR_IDENTITY, print_at_train_end, summary_lines
from yolo_attn.integration import load_pretrained

SENTENCE = "this comparison cannot say whether the block helps"


def record(stem: str, seed: int, values: dict[int, float]) -> dict:
    """A run record of a fine-tuned model whose CBAM blocks at the given layers have these engagements."""
    blocks = {f"model.{i}": {"block": "CBAM", "identity_mix": v, "engagement": v} for i, v in values.items()}
    return {"stem": stem, "seed": seed, "engagement": {"blocks": blocks}, "transfer": {"new_blocks": list(blocks)}}


def test_one_block_under_the_threshold_is_named_with_its_layer_and_a_low_mean_gets_the_sentence():
    runs = [
        record("one-off", 0, {10: 0.05, 17: 0.03, 21: 0.04, 25: 0.002}),  # mean 3%: only layer 25 is off
        record("one-off", 1, {10: 0.06, 17: 0.02, 21: 0.05, 25: 0.03}),
        record("mostly-off", 0, {10: 0.025, 17: 0.0, 21: 0.0, 25: 0.0}),  # max 2.5% but mean 0.63% < 1%
        record("mostly-off", 1, {10: 0.02, 17: 0.001, 21: 0.0, 25: 0.0}),
        record("on", 0, {10: 0.05, 17: 0.03}),
    ]
    rows = [{"stem": s, **engagement_stats(runs, s)} for s in ("one-off", "mostly-off", "on")]
    one_off, mostly_off, on = rows
    assert list(one_off["blocks_off"]) == ["model.25"] and one_off["blocks_off"]["model.25"]["seeds"] == {0: 0.002}
    assert one_off["near_identity"] is False and mostly_off["near_identity"] is True  # the mean decides, not the max
    assert list(mostly_off["blocks_off"]) == ["model.17", "model.21", "model.25"]
    assert on["blocks_off"] == {} and on["near_identity"] is False
    notes = engagement_notes(rows).splitlines()
    assert len(notes) == 2  # nothing about "on"
    assert notes[0].startswith("- **one-off**") and "layer 25 (CBAM, model.25): seed 0 0.20%" in notes[0]
    assert SENTENCE not in notes[0] and "layer 10" not in notes[0]
    assert notes[1].startswith("- **mostly-off**") and SENTENCE in notes[1]
    assert "layer 17 (CBAM, model.17): seed 0 0.00%, seed 1 0.10%" in notes[1]
    assert "layer 21 (CBAM, model.21)" in notes[1] and "layer 25 (CBAM, model.25)" in notes[1]


def report(values: dict[str, float], mixes: dict[str, float | None] | None = None) -> dict:
    mixes = mixes or dict.fromkeys(values, 0.01)
    blocks = {p: {"block": "ECA", "identity_mix": mixes[p], "engagement": v} for p, v in values.items()}
    vals = list(values.values())
    return {"blocks": blocks, "images": 16, "imgsz": 128, "mean": sum(vals) / len(vals), "min": min(vals),
            "max": max(vals)}  # fmt: skip


def test_the_console_summary_lists_every_block_and_warns_about_those_off():
    lines = summary_lines(report({"model.10": 0.05, "model.21": 0.0001}), "ECA")
    assert lines[0].startswith("engagement of 2 attention block(s) on 16 val images at imgsz 128: mean 2.51%")
    assert lines[1] == "  layer 10 ECA: identity_mix +0.01, engagement 5.00%"
    assert lines[2] == "  layer 21 ECA: identity_mix +0.01, engagement 0.01% (off)"
    assert lines[3] == "WARNING: 1 block(s) stayed within 1% of the identity: layer 21 (ECA, 0.01%)"
    assert len(lines) == 4  # the mean is over 1%: no sentence
    low = summary_lines(report({"model.10": 0.012, "model.21": 0.0002}), "ECA")
    assert low[-1].endswith("this comparison cannot say whether ECA helps") and "mean engagement 0.61%" in low[-1]
    assert summary_lines({"blocks": {}, "mean": None}) == []
    assert NEAR_IDENTITY == 0.01


def test_yolo_attn_train_prints_each_new_blocks_engagement_at_the_end(tiny_data, monkeypatch):
    from ultralytics.utils import LOGGER

    source = DetectionModel("yolov8n.yaml", nc=2, verbose=False)
    model = DetectionModel("yolov8n-cbam.yaml", nc=2, verbose=False)
    load_pretrained(model, source, verbose=False)
    with torch.no_grad():
        model.model[10].identity_mix.fill_(0.2)  # one block on, three still at the identity
    said: list[str] = []
    monkeypatch.setattr(LOGGER, "info", lambda text, *a, **k: said.append(f"info {text}"))
    monkeypatch.setattr(LOGGER, "warning", lambda text, *a, **k: said.append(f"warning {text}"))
    args = SimpleNamespace(data=str(tiny_data), task="detect", imgsz=64)
    print_at_train_end(
        SimpleNamespace(ema=SimpleNamespace(ema=model), model=model, args=args, device=torch.device("cpu"))
    )
    assert said[0].startswith("info yolo_attn: engagement of 4 attention block(s) on 4 val images at imgsz 64")
    assert said[1].startswith("info yolo_attn:   layer 10 CBAM: identity_mix +0.2, engagement ")
    assert [s.split(":")[1].strip() for s in said[2:5]] == ["layer 17 CBAM", "layer 21 CBAM", "layer 25 CBAM"]
    assert said[5].startswith("warning yolo_attn: 3 block(s) stayed within 1% of the identity: layer 17 (CBAM, 0.00%)")
    plain = DetectionModel("yolov8n.yaml", nc=2, verbose=False)  # no new block: nothing printed
    said.clear()
    print_at_train_end(
        SimpleNamespace(ema=SimpleNamespace(ema=plain), model=plain, args=args, device=torch.device("cpu"))
    )
    assert said == []


@pytest.mark.parametrize("value", [0.0, 0.00999])
def test_a_single_block_just_under_the_threshold_is_off(value):
    assert "(off)" in summary_lines(report({"model.10": 0.5, "model.25": value}))[2]
