"""Compare settings declared once (CLI flags, compare() keywords, plan.json) and executors picked from one table."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

import yolo_attn.experiments.compare as experiment
from yolo_attn.cli import build_parser, main, parse_verb
from yolo_attn.experiments.compare import TRAIN, CompareSettings, compare
from yolo_attn.experiments.executors import (
    EXECUTORS,
    Executor,
    LocalExecutor,
    ParallelExecutor,
    SequentialExecutor,
    Slot,
    SlurmExecutor,
    run_slots,
)
from yolo_attn.experiments.files import read_json
from yolo_attn.experiments.plan import make_plan, save_plan
from yolo_attn.utils.settings import flag_name, setting, settings_fields


@dataclasses.dataclass(frozen=True)
class WithNewSetting(CompareSettings):
    """The settings plus one new one, written in one place: its field."""

    warmup_images: int = setting(7, help="images shown before training (a new setting)", group=TRAIN, plan=True)


@pytest.fixture
def runs(monkeypatch, tmp_path):
    """Replace run_comparison: record the settings it gets, save their plan, and return the folder."""
    seen: list[CompareSettings] = []

    def fake_run(settings: CompareSettings) -> Path:
        seen.append(settings)
        out = Path(settings.out or tmp_path / "cmp")
        save_plan(out, settings.plan())
        return out

    monkeypatch.setattr(experiment, "run_comparison", fake_run)
    return seen


def compare_parser(parser):
    return next(a for a in parser._subparsers._group_actions if a.dest == "verb").choices["compare"]


def test_a_new_setting_is_one_field_and_reaches_the_parser_compare_and_plan_json(monkeypatch, runs, tmp_path):
    monkeypatch.setattr(experiment, "CompareSettings", WithNewSetting)
    option = {a.dest: a for a in compare_parser(build_parser())._actions}["warmup_images"]
    assert option.option_strings == ["--warmup-images"] and option.default == 7 and option.type is int
    assert option.help == "images shown before training (a new setting)"

    argv = ["compare", "--data", "d.yaml", "--models", "yolov8n.yaml", "--warmup-images", "3", "--out"]
    main([*argv, str(tmp_path / "cli"), "--latency-runs", "0"])
    compare("d.yaml", ["yolov8n.yaml"], [0], 1, warmup_images=5, out=tmp_path / "py")
    assert [s.warmup_images for s in runs] == [3, 5]
    assert read_json(tmp_path / "cli" / "plan.json")["settings"]["warmup_images"] == 3  # recorded, guarded on resume
    assert read_json(tmp_path / "py" / "plan.json")["settings"]["warmup_images"] == 5

    monkeypatch.setattr(experiment, "CompareSettings", CompareSettings)  # without the field: refused, nothing run
    with pytest.raises(TypeError, match="warmup_images"):
        compare("d.yaml", ["yolov8n.yaml"], [0], 1, warmup_images=5)
    assert len(runs) == 2


def test_every_keyword_of_the_previous_signature_still_works(runs, tmp_path):
    keywords = {
        "imgsz": 64, "batch": 4, "device": "cpu", "out": tmp_path / "x", "train_overrides": None,
        "backend": "faster-coco-eval", "latency_runs": 0, "pretrained": None, "executor": "parallel",
        "per_device": 2, "slurm": None, "array_parallelism": 3, "runtime": "torch", "task": "detect", "wait": False,
    }  # fmt: skip
    compare("d.yaml", ["a.yaml", "b.yaml"], [0, 1], 2, **keywords)
    (settings,) = runs
    assert settings.train_overrides == {} and settings.slurm == {}  # None, as before, means none
    assert {k: getattr(settings, k) for k in keywords if k not in {"train_overrides", "slurm"}} == {
        k: v for k, v in keywords.items() if k not in {"train_overrides", "slurm"}
    }
    assert (settings.data, settings.models, settings.seeds, settings.epochs) == (
        "d.yaml",
        ["a.yaml", "b.yaml"],
        [0, 1],
        2,
    )
    plan = json.loads((tmp_path / "x" / "plan.json").read_text())  # what plan.json stored before, no more
    assert sorted(plan) == ["device", "latency_runs", "models", "seeds", "settings"]
    assert sorted(plan["settings"]) == sorted(
        ["data", "epochs", "imgsz", "batch", "train_overrides", "backend", "pretrained", "task", "protocol"]
    )


def test_every_setting_with_a_flag_is_a_compare_option_with_its_help():
    options = {a.dest: a for a in compare_parser(build_parser())._actions}
    for f in settings_fields(CompareSettings):
        if flag_name(f) is None:
            assert f.name == "train_overrides"  # given as key=value tokens
            continue
        assert options[f.name].option_strings == [flag_name(f)] and options[f.name].help == f.metadata["help"]
    args, overrides = parse_verb(build_parser(), ["compare", "--no-wait", "--per-device", "2", "lr0=0.1"])
    assert (args.wait, args.per_device, args.seeds, args.epochs, overrides) == (False, 2, [0], 100, {"lr0": 0.1})


def test_executors_come_from_one_table():
    assert {
        "sequential": SequentialExecutor,
        "parallel": ParallelExecutor,
        "local": LocalExecutor,
        "slurm": SlurmExecutor,
    } == EXECUTORS
    assert all(issubclass(e, Executor) and e.name == name for name, e in EXECUTORS.items())
    assert [name for name, e in EXECUTORS.items() if not e.waits] == ["slurm"]  # submits and returns
    options = {a.dest: a for a in compare_parser(build_parser())._actions}
    assert tuple(options["executor"].choices) == tuple(EXECUTORS)


class RaisingJob:
    """A submitit-like job that crashed: result() raises, as submitit's does for a failed job."""

    def done(self) -> bool:
        return True

    def result(self):
        raise RuntimeError("job 12 ended FAILED; see its stderr")

    def cancel(self) -> None:
        raise AssertionError("a finished job is not cancelled")


def test_a_job_whose_result_raises_is_reported_as_a_failed_cell(tmp_path):
    plan = make_plan("data.yaml", ["a.yaml"], [0], 1)
    save_plan(tmp_path, plan)
    (record,) = run_slots(plan.cells, tmp_path, [Slot("cpu")], lambda cell, slot: RaisingJob(), poll_s=0.0)
    assert record == {
        "stem": "a",
        "seed": 0,
        "status": "failed",
        "error": "RuntimeError: job 12 ended FAILED; see its stderr",
    }
