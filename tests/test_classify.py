"""Classification: the synthetic ImageFolder set, data-layout checks, accuracy curves, evaluate_classifier against an
independent count, the eval CLI on a classify checkpoint, and the classify demo end to end (tiny)."""

from __future__ import annotations

import csv
import hashlib
import json
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import subprocess_env, yolo_attn_command

from yolo_attn.cli import main
from yolo_attn.data.synthetic_cls import CLASSES, make_synthetic_cls
from yolo_attn.evaluation.classify_eval import evaluate_classifier, resolve_cls_data
from yolo_attn.experiments.plots import plot_accuracy_curves, read_accuracy


def digest(root: Path) -> dict[str, str]:
    """SHA-1 of every file under root, by relative path."""
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*.png"))}


def test_synthetic_cls_layout_and_determinism(tmp_path: Path) -> None:
    a = make_synthetic_cls(tmp_path / "a", n_train=8, n_val=4, imgsz=48, seed=3)
    b = make_synthetic_cls(tmp_path / "b", n_train=8, n_val=4, imgsz=48, seed=3)
    assert digest(a) == digest(b)
    assert digest(a) != digest(make_synthetic_cls(tmp_path / "c", n_train=8, n_val=4, imgsz=48, seed=4))
    for split, n in (("train", 8), ("val", 4)):
        assert sorted(p.name for p in (a / split).iterdir()) == sorted(CLASSES)
        assert all(len(list((a / split / c).glob("*.png"))) == n // 4 for c in CLASSES)
    image = cv2.imread(str(next((a / "val" / "ring").glob("*.png"))))
    assert image.shape == (48, 48, 3)
    make_synthetic_cls(tmp_path / "a", n_train=4, n_val=4, imgsz=48, seed=3)  # smaller: stale files removed
    assert len(list((a / "train").rglob("*.png"))) == 4
    with pytest.raises(ValueError, match="imgsz=16 must be an int >= 48"):
        make_synthetic_cls(tmp_path / "d", imgsz=16)


def test_resolve_cls_data(tmp_path: Path) -> None:
    root = make_synthetic_cls(tmp_path / "data", n_train=4, n_val=4, imgsz=48)
    assert resolve_cls_data(root) == str(root.resolve())
    (tmp_path / "data.yaml").write_text("path: data\ntrain: train\nval: val\n")
    assert resolve_cls_data(tmp_path / "data.yaml") == str(root.resolve())
    (tmp_path / "bad.yaml").write_text("path: data\ntrain: images/train\n")
    with pytest.raises(ValueError, match="fixed subfolders"):
        resolve_cls_data(tmp_path / "bad.yaml")
    (tmp_path / "nopath.yaml").write_text("train: train\n")
    with pytest.raises(ValueError, match="needs `path:`"):
        resolve_cls_data(tmp_path / "nopath.yaml")
    (root / "val").rename(root / "test")  # test/ instead of val/ is accepted
    assert resolve_cls_data(root) == str(root.resolve())
    (root / "train").rename(root / "other")
    with pytest.raises(FileNotFoundError, match="no train/ folder"):
        resolve_cls_data(root)
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        resolve_cls_data(tmp_path / "missing")


def write_results_csv(path: Path, values: list[float]) -> Path:
    """An Ultralytics-style classify results.csv (padded header names) with the given top-1 per epoch."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["  epoch", "  train/loss", "  metrics/accuracy_top1", "  metrics/accuracy_top5"])
        for epoch, value in enumerate(values, 1):
            writer.writerow([epoch, 1.0 / epoch, value, 1.0])
    return path


def test_accuracy_curves(tmp_path: Path) -> None:
    runs = {
        "base": [write_results_csv(tmp_path / "b0.csv", [0.2, 0.4]), write_results_csv(tmp_path / "b1.csv", [0.3])],
        "se": [write_results_csv(tmp_path / "s0.csv", [0.25, 0.5, 0.6])],
    }
    assert read_accuracy(runs["base"][0]) == ([1, 2], [0.2, 0.4])
    png = plot_accuracy_curves(runs, tmp_path / "acc.png")
    assert cv2.imread(str(png)).shape == (450, 700, 3)
    with pytest.raises(KeyError, match="no column 'metrics/accuracy_top5x'"):
        read_accuracy(runs["se"][0], "metrics/accuracy_top5x")
    with pytest.raises(ValueError, match="at least one"):
        plot_accuracy_curves({"x": []}, tmp_path / "none.png")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The classify demo, tiny: two models x one seed x one epoch on 16 + 8 images."""
    from yolo_attn.demos.classify import run_classify_demo

    out = tmp_path_factory.mktemp("demo_cls")
    return run_classify_demo(out, models=("yolov8n-cls.yaml", "yolov8n-cls-se.yaml"), seeds=(0,), epochs=1,
                             n_train=16, n_val=8, latency_runs=0)  # fmt: skip


@pytest.mark.slow
def test_classify_demo_writes_table_curves_and_runs(demo: Path) -> None:
    table = (demo / "compare" / "compare.md").read_text()  # the demo is a compare --task classify
    assert "| yolov8n-cls (baseline) | 1 |" in table and "| yolov8n-cls-se | 1 |" in table and "Δ top-1" in table
    assert (demo / "compare" / "accuracy.png").is_file() and (demo / "compare" / "compare.csv").is_file()
    for stem in ("yolov8n-cls", "yolov8n-cls-se"):
        run = demo / "compare" / "train" / f"{stem}_seed0"
        assert (run / "weights" / "best.pt").is_file()
        assert len(read_accuracy(run / "results.csv")[1]) == 1


@pytest.mark.slow
def test_evaluate_classifier_equals_an_independent_count(demo: Path) -> None:
    """Ultralytics' top-1 equals our own count of argmax hits over the val images (same 64 px preprocessing)."""
    from ultralytics import YOLO

    weights = demo / "compare" / "train" / "yolov8n-cls-se_seed0" / "weights" / "best.pt"
    metrics = evaluate_classifier(weights, demo / "data", imgsz=64, batch=4, device="cpu")
    assert metrics["nc"] == 4 and 0.0 <= metrics["top1"] <= metrics["top5"] == 1.0
    model = YOLO(str(weights))
    hits = total = 0
    for label, name in enumerate(sorted(CLASSES)):
        for file in sorted((demo / "data" / "val" / name).glob("*.png")):
            result = model.predict(str(file), imgsz=64, device="cpu", verbose=False)[0]
            hits += int(result.probs.top1 == label)
            total += 1
    assert metrics["top1"] == pytest.approx(hits / total, abs=1e-6)


@pytest.mark.slow
def test_eval_cli_detects_a_classify_checkpoint(demo: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    weights = demo / "compare" / "train" / "yolov8n-cls_seed0" / "weights" / "best.pt"
    main(["eval", "--weights", str(weights), "--data", str(demo / "data"), "--imgsz", "64", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert "top-1" in out and "top-5 100.00%" in out
    assert (tmp_path / "metrics.json").is_file()
    with pytest.raises(ValueError, match="is a detect model"):
        evaluate_classifier("yolov8n.yaml", demo / "data")
    assert torch.is_grad_enabled()


def write_tiny_image_folder(root: Path, imgsz: int = 32, n_train: int = 8, n_val: int = 4) -> Path:
    """Two classes (dark and light noise) x ``n_train`` train and ``n_val`` val images of ``imgsz`` px."""
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("val", n_val)):
        for level, name in enumerate(("dark", "light")):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(n):
                image = rng.integers(0, 100, (imgsz, imgsz, 3)) + 120 * level
                cv2.imwrite(str(folder / f"{i}.png"), image.astype(np.uint8))
    return root


def test_a_detector_in_a_classify_comparison_is_refused(tmp_path: Path) -> None:
    from yolo_attn.experiments.cell import train_and_evaluate

    settings = {"task": "classify", "data": str(tmp_path), "epochs": 1, "imgsz": 32, "batch": 2}
    settings |= {"train_overrides": {}, "backend": None, "pretrained": None}
    with pytest.raises(ValueError, match=r"yolov8n\.yaml is a detect model, but this comparison's task is classify"):
        train_and_evaluate("yolov8n.yaml", 0, settings, "cpu", tmp_path)


@pytest.mark.slow
def test_compare_classify_cli_end_to_end_with_resume(tmp_path: Path) -> None:
    """2 models x 2 seeds x 1 epoch through the installed ``yolo-attn``; the same command again skips all 4 cells."""
    data = write_tiny_image_folder(tmp_path / "data")
    out = tmp_path / "cmp"
    models = ["yolov8n-cls.yaml", "yolov8n-cls-se.yaml"]
    grid = ["--models", *models, "--seeds", "0", "1", "--epochs", "1", "--imgsz", "32", "--batch", "8"]
    command = [*yolo_attn_command(), "compare", "--task", "classify", "--data", str(data), *grid]
    command += ["--device", "cpu", "--out", str(out), "--latency-runs", "3", "workers=0"]
    first = subprocess.run(command, env=subprocess_env(), capture_output=True, text=True, cwd=tmp_path)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    records = {p.name: json.loads(p.read_text()) for p in sorted((out / "runs").glob("*.json"))}
    assert sorted(records) == sorted(f"{Path(m).stem}_seed{s}.json" for m in models for s in (0, 1))
    for record in records.values():
        assert record["status"] == "done" and record["settings"]["task"] == "classify"
        assert 0.0 <= record["metrics"]["top1"] <= record["metrics"]["top5"] == 1.0 and record["metrics"]["nc"] == 2
    with (out / "compare.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["stem"] for r in rows] == ["yolov8n-cls", "yolov8n-cls-se"]
    top1 = [records[f"yolov8n-cls_seed{s}.json"]["metrics"]["top1"] for s in (0, 1)]
    assert float(rows[0]["top1_mean"]) == pytest.approx(sum(top1) / 2)
    assert int(rows[1]["params"]) > int(rows[0]["params"]) and float(rows[0]["latency_ms"]) > 0
    report = (out / "compare.md").read_text()
    assert "| top-1 | top-5 |" in report and "4/4 runs finished" in report and report in first.stdout
    for key in ("yolov8n-cls_seed0", "yolov8n-cls-se_seed1"):
        assert f"[{key}](train/{key}/results.csv)" in report
        assert len(read_accuracy(out / "train" / key / "results.csv")[1]) == 1
    assert (out / "accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in (out / "runs").glob("*.json")}
    weights = {p: p.stat().st_mtime_ns for p in (out / "train").rglob("*.pt")}
    again = subprocess.run(command, env=subprocess_env(), capture_output=True, text=True, cwd=tmp_path)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "4 finished before, 0 to run" in again.stdout + again.stderr
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in (out / "runs").glob("*.json")} == before
    assert {p: p.stat().st_mtime_ns for p in (out / "train").rglob("*.pt")} == weights  # nothing retrained

    other = [a if a != "classify" else "detect" for a in command[1:]]
    with pytest.raises(ValueError, match="task: 'classify' before, 'detect' now"):
        main(other)
