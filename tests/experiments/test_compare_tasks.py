"""compare and eval end to end for segment, pose and obb, through the CLI a user types.

Each task: its synthetic YOLO-label set (8 train + 4 val images at 64 px), 2 models x 2 seeds x 1 epoch, every model
fine-tuned from the same random baseline checkpoint of the task (``--pretrained``), then ``yolo-attn eval`` of one
``best.pt``. About 40 s per task on 2 CPU cores.
"""

from __future__ import annotations

import copy
import csv
import json
import subprocess
from pathlib import Path

import pytest
import torch
from support.env import subprocess_env, yolo_attn_command
from ultralytics.nn.tasks import OBBModel, PoseModel, SegmentationModel

from yolo_attn.cli import main
from yolo_attn.data.synthetic_tasks import KPT_SHAPE, NAMES, make_synthetic_yolo
from yolo_attn.experiments.files import load_runs
from yolo_attn.experiments.tasks import TASKS, grid_task
from yolo_attn.modules.random_weights import randomize_

MODELS = {"segment": SegmentationModel, "pose": PoseModel, "obb": OBBModel}
SUFFIX = {"segment": "seg", "pose": "pose", "obb": "obb"}


def baseline_checkpoint(task: str, path):
    """A YOLOv8n checkpoint of ``task`` with random (not zero) weights, a stand-in for yolov8n-seg.pt and the like."""
    extra = {"data_kpt_shape": KPT_SHAPE} if task == "pose" else {}
    model = MODELS[task](f"yolov8n-{SUFFIX[task]}.yaml", nc=len(NAMES), verbose=False, **extra)
    randomize_(model, fan_in=True)
    torch.save({"model": copy.deepcopy(model).half(), "train_args": {}}, path)
    return path, len(model.state_dict())


def metric(run: dict, key: tuple[str, ...]) -> float:
    value = run["metrics"]
    for part in key:
        value = value[part]
    return float(value)


@pytest.mark.slow
@pytest.mark.parametrize("task", ["segment", "pose", "obb"])
def test_compare_and_eval_end_to_end(task, tmp_path):
    data = make_synthetic_yolo(tmp_path / "data", task, n_train=8, n_val=4, imgsz=64)
    weights, n_tensors = baseline_checkpoint(task, tmp_path / "base.pt")
    base, cbam = f"yolov8n-{SUFFIX[task]}", f"yolov8n-{SUFFIX[task]}-cbam"
    grid = ["--models", f"{base}.yaml", f"{cbam}.yaml", "--seeds", "0", "1", "--epochs", "1", "--imgsz", "64"]
    grid += ["--batch", "8", "--device", "cpu", "--latency-runs", "2", "--out", "cmp", "--pretrained", str(weights)]
    command = [*yolo_attn_command(), "compare", "--data", str(data), *grid, "workers=0"]
    proc = subprocess.run(command, cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    spec = TASKS[task]
    runs = load_runs(tmp_path / "cmp")
    assert sorted((r["stem"], r["seed"]) for r in runs) == [(m, s) for m in (base, cbam) for s in (0, 1)]
    for run in runs:  # every model fine-tuned from every tensor of the same source; new blocks start as the identity
        assert run["settings"]["task"] == task and run["settings"]["backend"] is None
        assert run["pretrained"] == str(weights.resolve())
        assert run["transfer"]["transferred"] == run["transfer"]["source_tensors"] == n_tensors
        assert run["metrics"]["task"] == task
        for key, _ in spec.metrics.values():  # Ultralytics' validator keys of the task, e.g. metrics/mAP50-95(M)
            assert 0.0 <= metric(run, key) <= 1.0
        if run["stem"] == cbam:
            assert run["transfer"]["identity_start"]
            assert sorted(set(run["transfer"]["new_blocks"].values())) == ["CBAM"]

    report = (tmp_path / "cmp" / "compare.md").read_text()
    labels = [label for _, label in spec.metrics.values()]
    assert "| " + " | ".join([*labels, *(f"Δ {label}" for label in labels)]) + " |" in report
    assert spec.source in report and f"every model fine-tuned from `{weights.resolve()}`" in report
    assert "COCO" not in report and (tmp_path / "cmp" / "compare.png").is_file()
    with (tmp_path / "cmp" / "compare.csv").open() as f:
        rows = {row["stem"]: row for row in csv.DictReader(f)}
    for prefix, (key, _) in spec.metrics.items():  # the paired delta of every column, from the cells' own records
        by = {(r["stem"], r["seed"]): metric(r, key) for r in runs}
        expected = sum(by[cbam, s] - by[base, s] for s in (0, 1)) / 2
        assert float(rows[cbam][f"delta_{prefix}_mean"]) == pytest.approx(expected, abs=1e-9)
        assert rows[cbam][f"delta_{prefix}_noise"] in {"True", "False"}

    run = next(r for r in runs if r["stem"] == cbam and r["seed"] == 0)
    main(["eval", "--weights", run["weights"], "--data", str(data), "--imgsz", "64", "--batch", "8",
          "--device", "cpu", "--out", str(tmp_path / "eval")])  # fmt: skip
    evaluated = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    for key, _ in spec.metrics.values():  # the same validator on the same weights gives the cell's numbers
        assert metric({"metrics": evaluated}, key) == pytest.approx(metric(run, key), abs=1e-6)


def test_a_grid_that_mixes_tasks_is_refused(tmp_path):
    data = make_synthetic_yolo(tmp_path / "data", "segment", n_train=1, n_val=1, imgsz=32)
    where = ["--data", str(data), "--out", str(tmp_path / "x")]
    assert grid_task(["yolov8n-seg.yaml", "yolov8n-seg-cbam.yaml"]) == "segment"
    with pytest.raises(SystemExit, match=r"mixes tasks \(yolov8n-seg.yaml is segment, yolov8n-pose.yaml is pose\)"):
        main(["compare", *where, "--models", "yolov8n-seg.yaml", "yolov8n-pose.yaml"])
    with pytest.raises(SystemExit, match="mixes tasks"):
        main(["compare", *where, "--models", "yolov8n-seg.yaml", "yolov8n-obb.yaml", "--task", "obb"])
    with pytest.raises(ValueError, match="--task obb, but the grid mixes tasks"):
        grid_task(["yolov8n-seg.yaml"], "obb")
    assert not (tmp_path / "x").exists()


def test_task_demo_pretrains_the_task_baseline_once_then_fine_tunes_every_model_from_it(tmp_path, monkeypatch):
    from yolo_attn.demos import tasks as demo
    from yolo_attn.experiments import compare as compare_module

    seen, pretrained = {}, []

    def fake_pretrain(task, data, folder, epochs):
        pretrained.append((task, Path(data), epochs))
        (folder / "weights").mkdir(parents=True)
        (folder / "weights" / "last.pt").write_bytes(b"")
        return folder / "weights" / "last.pt"

    def fake_compare(data, models, seeds, epochs, **kwargs):
        seen.update(data=Path(data), models=models, seeds=seeds, epochs=epochs, **kwargs)
        return kwargs["out"]

    monkeypatch.setattr(demo, "pretrain_baseline", fake_pretrain)
    monkeypatch.setattr(compare_module, "compare", fake_compare)
    out = demo.run_task_demo("pose", tmp_path / "demo", n_upstream=3, n_train=2, n_val=1)
    [(task, upstream, epochs)] = pretrained  # once, on other images than the compared runs train on
    assert task == "pose" and epochs == demo.PRETRAIN_EPOCHS and upstream != seen["data"]
    images = {p.read_bytes() for p in (upstream.parent / "images" / "train").iterdir()}
    assert not images & {p.read_bytes() for p in (seen["data"].parent / "images" / "train").iterdir()}
    assert seen["pretrained"] == out / "pretrain" / "weights" / "last.pt"
    assert seen["task"] == "pose" and seen["out"] == out / "compare" and seen["seeds"] == list(demo.SEEDS)
    assert seen["models"] == ["yolov8n-pose.yaml", "yolov8n-pose-cbam.yaml", "yolov8n-pose-eca.yaml"]
    assert grid_task(seen["models"]) == "pose"  # every demo model builds, all of the task
    assert yaml_keys(seen["data"]) >= {"kpt_shape", "flip_idx"} and yaml_keys(upstream) >= {"kpt_shape"}
    assert seen["imgsz"] == demo.IMGSZ and seen["device"] == "cpu" and seen["train_overrides"]["workers"] == 0
    with pytest.raises(ValueError, match="task must be one of segment, pose, obb"):
        demo.demo_models("classify")


def yaml_keys(path) -> set[str]:
    import yaml

    return set(yaml.safe_load(path.read_text()))
