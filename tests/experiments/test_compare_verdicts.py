"""The report's verdicts: Holm-corrected over the variants of each metric, and no claim for seeds that trained alike.

Cells are fakes (`compare_fakes.fakes`) with chosen mAP per model and seed and a written ``results.csv``, so the
numbers below are computed by hand: with 3 seeds the paired t has 2 degrees of freedom, where the two-sided p-value has
the closed form ``p = 1 - sqrt(t^2 / (t^2 + 2))``.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from yolo_attn.experiments.compare import compare
from yolo_attn.experiments.report import write_report

BASE = {0: 0.30, 1: 0.34, 2: 0.32}
DELTAS = {  # paired deltas per seed of each variant
    "strong": (0.05, 0.04, 0.06),  # mean 0.05, sd 0.01: t^2 = 75, p = 0.013072
    "weak": (0.03, 0.02, 0.04),  # mean 0.03, sd 0.01: t^2 = 27, p = 0.035099 (< 0.05 unadjusted)
    "flat": (0.01, -0.02, 0.01),  # mean 0: p = 1
}
AP = {"base": BASE} | {m: {s: BASE[s] + d[s] for s in BASE} for m, d in DELTAS.items()}


def p_df2(t2: float) -> float:
    """Two-sided p-value of a Student t with 2 degrees of freedom, from t squared."""
    return 1 - math.sqrt(t2 / (t2 + 2))


class TableTrainer:
    """A cell whose mAP comes from ``AP`` and whose ``results.csv`` has first-epoch losses per (model, seed)."""

    def __init__(self, same_losses: set[str] = frozenset()) -> None:
        self.same_losses = same_losses  # models whose seeds write bit-identical first-epoch losses
        self.calls: list[tuple[str, int]] = []

    def __call__(self, model: str, seed: int, settings: dict, device, out: Path) -> dict:
        stem = Path(model).stem
        self.calls.append((stem, seed))
        folder = out / "train" / f"{stem}_seed{seed}"
        folder.mkdir(parents=True, exist_ok=True)
        loss = 1.5 if stem in self.same_losses else 1.5 + 0.01 * seed
        (folder / "results.csv").write_text(
            "epoch,train/box_loss,train/cls_loss,metrics/mAP50-95(B)\n"
            f"1,{loss:.5g},{loss + 1:.5g},0.1\n2,{loss - 0.2:.5g},{loss + 0.5:.5g},0.2\n"
        )
        ap = AP[stem][seed]
        metrics = {"coco": {"AP": ap, "AP50": ap + 0.2}, "ultralytics": {"mAP50-95": ap, "mAP50": ap + 0.2}}
        return {"metrics": metrics, "weights": str(folder / "best.pt"), "train_dir": str(folder)}


def run(tmp_path: Path, fakes, same_losses: set[str] = frozenset()) -> tuple[dict[str, dict[str, str]], str]:
    fakes(TableTrainer(same_losses))
    out = compare(
        "data.yaml", ["base.yaml", *(f"{m}.yaml" for m in DELTAS)], [0, 1, 2], 2, out=tmp_path, latency_runs=0
    )
    with (out / "compare.csv").open() as f:
        rows = {row["stem"]: row for row in csv.DictReader(f)}
    return rows, (out / "compare.md").read_text()


def test_holm_lets_one_unadjusted_p_below_005_stand_and_not_the_other(tmp_path, fakes):
    rows, text = run(tmp_path, fakes)
    p = {"strong": p_df2(75), "weak": p_df2(27), "flat": 1.0}
    assert p["strong"] == pytest.approx(0.013072, abs=1e-6) and p["weak"] == pytest.approx(0.035099, abs=1e-6)
    # Holm by hand, ascending: strong 3 * 0.013072 = 0.039216; weak max(0.039216, 2 * 0.035099) = 0.070198; flat 1
    holm = {"strong": 3 * p["strong"], "weak": 2 * p["weak"], "flat": 1.0}
    for metric in ("map50_95", "map50", "ultralytics_map50_95"):  # one family of k = 3 per metric
        for model in DELTAS:
            row = rows[model]
            assert float(row[f"delta_{metric}_p"]) == pytest.approx(p[model], abs=1e-6)
            assert float(row[f"delta_{metric}_p_holm"]) == pytest.approx(holm[model], abs=1e-6)
            assert row[f"delta_{metric}_holm_m"] == "3" and row[f"delta_{metric}_claimed"] == "True"
        assert rows["strong"][f"delta_{metric}_resolved"] == "True"
        assert rows["weak"][f"delta_{metric}_resolved"] == "False"  # p = 0.035 < 0.05, but not after Holm
        assert rows["weak"][f"delta_{metric}_noise"] == "False"  # its unadjusted interval excludes 0, kept beside
        assert rows["flat"][f"delta_{metric}_resolved"] == "False" and rows["flat"][f"delta_{metric}_noise"] == "True"
    assert "delta_map50_95_p" not in rows["base"] or rows["base"]["delta_map50_95_p"] == ""

    half = 4.302653 * 0.01 / math.sqrt(3)  # t(0.975, 2) * sd / sqrt(3) = 0.024841
    assert float(rows["weak"]["delta_map50_95_low"]) == pytest.approx(0.03 - half, abs=1e-6)
    assert "| **+0.050** [+0.025, +0.075] p=0.013, Holm 0.039 |" in text
    assert "| +0.030 [+0.005, +0.055] p=0.035, Holm 0.07 *not after Holm* |" in text
    assert "| +0.000 [-0.043, +0.043] p=1, Holm 1 *noise* |" in text  # sd 0.017321: half 4.302653 * sd / sqrt(3)
    assert "Holm-Bonferroni over the k=3 comparisons with the baseline per metric" in text
    assert "trained identically" not in text


def test_with_one_variant_holm_is_the_plain_paired_t(tmp_path, fakes):
    fakes(TableTrainer())
    compare("data.yaml", ["base.yaml", "weak.yaml"], [0, 1, 2], 2, out=tmp_path, latency_runs=0)
    text = (tmp_path / "compare.md").read_text()
    assert "| **+0.030** [+0.005, +0.055] p=0.035, Holm 0.035 |" in text  # alone, the weak delta stands
    assert "over the k=1 comparison with the baseline per metric" in text


def test_identical_seeds_are_reported_in_bold_and_claim_no_interval(tmp_path, fakes):
    rows, text = run(tmp_path, fakes, same_losses={"strong"})
    assert (
        "**strong: seeds 0 and 1, 0 and 2, 1 and 2 trained identically (bit-identical first-epoch losses in "
        "results.csv)" in text
    )
    assert text.index("**strong: seeds") < text.index("| Model |")  # the warning comes before the table
    strong = rows["strong"]
    assert strong["delta_map50_95_claimed"] == "False" and strong["delta_map50_95_resolved"] == "False"
    assert strong["delta_map50_95_low"] == "" and strong["delta_map50_95_p"] == ""
    assert float(strong["delta_map50_95_mean"]) == pytest.approx(0.05)  # the mean is still shown
    assert "| +0.050 *not claimed: identical seeds* |" in text
    # the family is the two claimed variants now: weak 2 * 0.035099 = 0.070 is still not resolved, flat stays 1
    assert rows["weak"]["delta_map50_95_holm_m"] == "2"
    assert float(rows["weak"]["delta_map50_95_p_holm"]) == pytest.approx(2 * p_df2(27), abs=1e-6)

    # the baseline's seeds forced alike too (its logs rewritten): no verdict is claimed for any variant
    same = (tmp_path / "train" / "base_seed0" / "results.csv").read_text()
    for seed in (1, 2):
        (tmp_path / "train" / f"base_seed{seed}" / "results.csv").write_text(same)
    text = write_report(tmp_path).read_text()
    with (tmp_path / "compare.csv").open() as f:
        rows = {row["stem"]: row for row in csv.DictReader(f)}
    assert "**base: seeds 0 and 1, 0 and 2, 1 and 2 trained identically" in text
    assert "**base is the baseline: no 95% interval and no verdict is claimed for any model" in text
    for model in DELTAS:
        assert rows[model]["delta_map50_95_claimed"] == "False" and rows[model]["delta_map50_95_resolved"] == "False"
    assert text.count("*not claimed: identical seeds*") == 2 * len(DELTAS)  # every Δ column of every variant
    assert "**+0.050**" not in text
