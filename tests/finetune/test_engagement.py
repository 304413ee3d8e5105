"""Engagement: how far each attention block moves its input (0 at the identity); in the report, in visualize titles."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from support.blocks import BLOCK_ARGS, C, X, make
from torch import nn

import yolo_attn
from yolo_attn.experiments.report import engagement_notes, engagement_stats, markdown_table
from yolo_attn.finetune.engagement import NEAR_IDENTITY, block_mixes, measure_engagement, relative_change, sample_images
from yolo_attn.modules import AttentionBlock
from yolo_attn.modules.random_weights import randomize_
from yolo_attn.visualize.overlay import capture_attention_maps


class UserGate(AttentionBlock):
    """A user's block written the way ours are: a sigmoid gate, ending with ``blend`` (so it can start as identity)."""

    def __init__(self, c1: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c1, c1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blend(x, x * torch.sigmoid(self.conv(x)))


def own_formula(block: AttentionBlock) -> torch.Tensor:
    """The block's paper formula on X (its mix removed for the call)."""
    mix = block.identity_mix
    block.register_parameter("identity_mix", None)
    try:
        with torch.no_grad():
            return block(X)
    finally:
        block.register_parameter("identity_mix", mix)


def blocks_to_test():
    assert set(BLOCK_ARGS) == set(yolo_attn.BLOCKS)  # every registered block, and a user's
    return [*BLOCK_ARGS, "user"]


@pytest.mark.parametrize("name", blocks_to_test())
def test_engagement_is_zero_at_the_identity_and_the_blocks_own_change_at_mix_one(name):
    block = UserGate(C).eval() if name == "user" else make(name)
    randomize_(block).start_as_identity()
    model = nn.Sequential(block).eval()
    assert measure_engagement(model, X) == {"0": 0.0}  # exactly: out == x
    if block.zero_output:  # residual blocks (MHSA): identity by a zero projection, no mix; trained, their own change
        randomize_(block, seed=1)
        with torch.no_grad():
            expected = float(relative_change(X, block(X)).mean())
        assert block_mixes(model) == {"0": None}
        assert measure_engagement(model, X)["0"] == pytest.approx(expected, rel=1e-9)
        assert expected > 0.01
        return
    with torch.no_grad():
        block.identity_mix.fill_(1.0)
    expected = float(relative_change(X, own_formula(block)).mean())
    assert expected > 0.01, "the paper formula changes its input"
    assert measure_engagement(model, X)["0"] == pytest.approx(expected, rel=1e-6)
    with torch.no_grad():
        block.identity_mix.fill_(-0.25)
    assert block_mixes(model) == {"0": -0.25}
    assert measure_engagement(model, X)["0"] == pytest.approx(0.25 * expected, rel=1e-5)  # |mix| x own change


def test_engagement_averages_per_image_and_counts_cbam_once():
    model = nn.Sequential(randomize_(make("CBAM")), randomize_(make("SE"))).eval()
    images = [X[:1], X[1:]]
    found = measure_engagement(model, images)
    assert sorted(found) == ["0", "1"]  # CBAM's two gates are inside it
    with torch.no_grad():
        mid = model[0](X)
        per_image = relative_change(X, mid)
    assert found["0"] == pytest.approx(float(per_image.mean()), rel=1e-6)
    assert per_image[0] != per_image[1]


def test_the_sample_is_the_first_val_images_by_name(tiny_data):
    files = sample_images(tiny_data, n=3)
    assert [f.name for f in files] == ["000.jpg", "001.jpg", "002.jpg"]
    assert all("val" in f.parts for f in files)
    assert sample_images(tiny_data, n=100) == sample_images(tiny_data, n=100)


def record(stem: str, seed: int, values: list[float], mixes: list[float | None], new: bool = True) -> dict:
    pairs = enumerate(zip(values, mixes, strict=True))
    blocks = {f"model.{i}": {"block": "CBAM", "identity_mix": m, "engagement": v} for i, (v, m) in pairs}
    transfer = {"new_blocks": {k: "CBAM" for k in blocks}} if new else None
    return {"stem": stem, "seed": seed, "engagement": {"blocks": blocks}, "transfer": transfer}


def test_report_summarises_engagement_over_blocks_and_seeds_and_says_when_blocks_stayed_at_the_identity():
    runs = [
        record("base", 0, [], []),
        record("flat", 0, [0.001, 0.004], [0.001, -0.003]),
        record("flat", 1, [0.002, 0.0], [0.002, 0.0]),
        record("used", 0, [0.002, 0.3], [0.01, 0.4]),
        record("scratch", 0, [0.001, 0.002], [None, None], new=False),
        record("resumed", 0, [0.001, 0.002], [0.001, 0.003], new=False),  # its report lost the new blocks
    ]
    flat, used, scratch, base = (engagement_stats(runs, s) for s in ("flat", "used", "scratch", "base"))
    assert flat["engagement_mean"] == pytest.approx(0.00175) and flat["engagement_n"] == 4
    assert (flat["engagement_min"], flat["engagement_max"]) == (0.0, 0.004)
    assert (flat["mix_min"], flat["mix_max"]) == (-0.003, 0.002)
    assert flat["near_identity"] is True and used["near_identity"] is False
    assert scratch["near_identity"] is None and scratch["mix_min"] is None  # not fine-tuned: no such verdict
    assert base["engagement_mean"] is None
    assert engagement_stats(runs, "resumed")["near_identity"] is True  # a mix means it started as the identity
    rows = [{"stem": s, **engagement_stats(runs, s)} for s in ("flat", "used", "scratch")]
    notes = engagement_notes(rows)
    assert notes.count("this comparison cannot say whether the block helps") == 1
    flat_note, used_note = notes.splitlines()  # used: one block under 1% in seed 0, named
    assert flat_note.startswith("- **flat**") and "this comparison cannot say whether the block helps" in flat_note
    assert used_note.startswith("- **used**") and "layer 0 (CBAM, model.0): seed 0 0.20%" in used_note
    assert NEAR_IDENTITY == 0.01


def test_the_table_has_an_engagement_column():
    stats = engagement_stats([record("used", 0, [0.002, 0.3], [0.01, 0.4])], "used")
    rows = []
    for i, stem in enumerate(("base", "used")):
        row = {"stem": stem, "baseline": i == 0, "seeds": [0], "params": None, "gflops": None, "latency_ms": None}
        row |= {"map50_95_mean": 0.1, "map50_95_std": None, "map50_mean": 0.2, "map50_std": None}
        row |= {f"delta_{p}_mean": None for p in ("map50_95", "map50")}
        rows.append(row | (stats if i else engagement_stats([], stem)))
    table = markdown_table(rows)
    header, _, base_line, used_line = table.splitlines()[:4]
    column = header.split(" | ").index("Engagement (mean [min, max])")
    assert base_line.split(" | ")[column] == "–"
    assert used_line.split(" | ")[column] == "15.10% [0.20%, 30.00%]"


def test_visualize_titles_each_map_with_its_blocks_mix(tmp_path):
    started, fresh = randomize_(make("CBAM")).start_as_identity(), randomize_(make("SpatialAttention"), seed=2)
    with torch.no_grad():
        started.identity_mix.fill_(0.0123)
    stem = nn.Conv2d(3, C, 1)
    model = nn.Sequential(stem, started, fresh).eval()
    image = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), image)
    maps = capture_attention_maps(model, torch.rand(1, 3, 16, 16))
    assert [m.title.splitlines()[-1] for m in maps] == ["identity_mix +0.0123", "no identity mix"]
