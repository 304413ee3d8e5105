"""compare()'s settings as one dataclass: the keyword API and CompareSettings run the same comparison (fake cells)."""

from __future__ import annotations

import pytest
from support.compare_fakes import GRID, FakeTrainer

from yolo_attn.experiments.compare import CompareSettings, compare, run_comparison
from yolo_attn.experiments.files import load_runs
from yolo_attn.experiments.plan import load_plan


def test_compare_and_its_settings_dataclass_run_the_same_comparison(tmp_path, fakes):
    trainer = fakes(FakeTrainer())
    compare("data.yaml", **GRID, imgsz=32, out=tmp_path / "a", device="cpu", train_overrides={"lr0": 0.01})
    settings = CompareSettings(
        "data.yaml", **GRID, imgsz=32, out=tmp_path / "b", device="cpu", train_overrides={"lr0": 0.01}
    )
    assert run_comparison(settings) == (tmp_path / "b").resolve()
    a, b = load_plan(tmp_path / "a"), load_plan(tmp_path / "b")
    assert a.to_dict() == b.to_dict() and a.settings["train_overrides"] == {"lr0": 0.01}
    assert trainer.calls[:4] == trainer.calls[4:] and len(trainer.calls) == 8
    assert [r["metrics"] for r in load_runs(tmp_path / "a")] == [r["metrics"] for r in load_runs(tmp_path / "b")]
    assert (tmp_path / "b" / "compare.md").read_text() == (tmp_path / "a" / "compare.md").read_text().replace(
        str((tmp_path / "a").resolve()), str((tmp_path / "b").resolve())
    )


def test_an_unknown_executor_is_refused_before_any_file_is_written(tmp_path):
    with pytest.raises(ValueError, match="executor must be one of sequential, parallel, local, slurm, got 'cloud'"):
        compare("data.yaml", **GRID, out=tmp_path / "x", executor="cloud")
    assert not (tmp_path / "x").exists()
