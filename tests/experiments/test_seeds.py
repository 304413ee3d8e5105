"""Identical seeds: runs of one model whose first-epoch losses in results.csv are bit-identical."""

from __future__ import annotations

from pathlib import Path

from yolo_attn.experiments.seeds import (
    first_epoch_losses,
    identical_seed_pairs,
    identical_seeds,
    identical_seeds_warning,
)

HEADER = "                  epoch,time,train/box_loss,train/cls_loss,train/dfl_loss,metrics/mAP50(B),val/box_loss"


def _run(root: Path, name: str, rows: list[str]) -> Path:
    """Write a tiny Ultralytics-like run folder with a results.csv (header, then one row per epoch)."""
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "results.csv").write_text("\n".join([HEADER, *rows]) + "\n")
    return folder


def test_a_forced_identical_pair_is_found_and_others_are_not(tmp_path: Path) -> None:
    epoch1 = "1,3.1,1.2345,2.5,1.1,0.01,1.7"
    runs = {
        0: _run(tmp_path, "m_seed0", [epoch1, "2,6.0,1.1,2.4,1.0,0.02,1.6"]),
        1: _run(tmp_path, "m_seed1", ["1,2.9,1.2346,2.5,1.1,0.012,1.7"]),  # one loss differs in the 5th digit
        2: _run(tmp_path, "m_seed2", ["1,3.4,1.2345,2.5,1.1,0.03,1.7", "2,7,0.9,2,1,0.04,1.5"]),  # time/mAP differ
        3: tmp_path / "missing",
    }
    assert first_epoch_losses(runs[0]) == {
        "train/box_loss": 1.2345,
        "train/cls_loss": 2.5,
        "train/dfl_loss": 1.1,
        "val/box_loss": 1.7,
    }
    assert identical_seed_pairs(runs) == [(0, 2)]
    assert identical_seeds({"base": {0: runs[0], 1: runs[1]}, "m": runs}) == {"m": [(0, 2)]}


def test_the_warning_is_bold_and_names_the_seeds() -> None:
    text = identical_seeds_warning("yolo11n+EMA@p4", [(0, 2), (1, 3)])
    assert text.startswith("**yolo11n+EMA@p4: seeds 0 and 2, 1 and 3 trained identically") and text.endswith("**")
    assert "no 95% interval is claimed" in text
    assert identical_seeds_warning("yolo11n", []) == ""


def test_a_run_without_an_epoch_is_left_out(tmp_path: Path) -> None:
    empty = _run(tmp_path, "a", [])
    assert first_epoch_losses(empty) is None
    assert identical_seed_pairs({0: empty, 1: _run(tmp_path, "b", [])}) == []
