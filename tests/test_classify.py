"""Classification: the synthetic ImageFolder set, data-layout checks, accuracy curves, evaluate_classifier against an
independent count, the eval CLI on a classify checkpoint, and the classify demo end to end (tiny)."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import cv2
import pytest
import torch

from yolo_attn.cli import main
from yolo_attn.data.synthetic_cls import CLASSES, make_synthetic_cls
from yolo_attn.evaluation.classify_eval import (
    evaluate_classifier,
    plot_accuracy_curves,
    read_accuracy,
    resolve_cls_data,
)


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
    from yolo_attn.demo_classify import run_classify_demo

    out = tmp_path_factory.mktemp("demo_cls")
    return run_classify_demo(out, models=("yolov8n-cls.yaml", "yolov8n-cls-se.yaml"), seeds=(0,), epochs=1,
                             n_train=16, n_val=8)  # fmt: skip


@pytest.mark.slow
def test_classify_demo_writes_table_curves_and_runs(demo: Path) -> None:
    table = (demo / "results.md").read_text()
    assert "| yolov8n-cls | 1 |" in table and "| yolov8n-cls-se | 1 |" in table
    assert (demo / "accuracy.png").is_file() and (demo / "results.json").is_file()
    for stem in ("yolov8n-cls", "yolov8n-cls-se"):
        run = demo / "train" / f"{stem}_seed0"
        assert (run / "weights" / "best.pt").is_file()
        assert len(read_accuracy(run / "results.csv")[1]) == 1


@pytest.mark.slow
def test_evaluate_classifier_equals_an_independent_count(demo: Path) -> None:
    """Ultralytics' top-1 equals our own count of argmax hits over the val images (same 64 px preprocessing)."""
    from ultralytics import YOLO

    weights = demo / "train" / "yolov8n-cls-se_seed0" / "weights" / "best.pt"
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
    weights = demo / "train" / "yolov8n-cls_seed0" / "weights" / "best.pt"
    main(["eval", "--weights", str(weights), "--data", str(demo / "data"), "--imgsz", "64", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert "top-1" in out and "top-5 100.00%" in out
    assert (tmp_path / "metrics.json").is_file()
    with pytest.raises(ValueError, match="is a detect model"):
        evaluate_classifier("yolov8n.yaml", demo / "data")
    assert torch.is_grad_enabled()
