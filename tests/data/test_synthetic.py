"""Tests for the synthetic COCO-format data set."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import cv2
import pytest

from yolo_attn.data.synthetic import CATEGORIES, make_synthetic_coco


def tree_bytes(root: Path) -> dict[str, bytes]:
    """Map every file under root (relative path) to its bytes."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def load(root: Path, split: str) -> dict:
    return json.loads((root / "annotations" / f"instances_{split}.json").read_text())


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic_coco(tmp_path_factory.mktemp("syn") / "coco", n_train=24, n_val=16, imgsz=64, seed=3)


def test_same_arguments_give_byte_identical_files(synthetic: Path, tmp_path: Path) -> None:
    again = make_synthetic_coco(tmp_path / "again", n_train=24, n_val=16, imgsz=64, seed=3)
    first, second = tree_bytes(synthetic), tree_bytes(again)
    assert len(first) == 24 + 16 + 2
    assert first == second


def test_other_seed_gives_other_images(synthetic: Path, tmp_path: Path) -> None:
    other = make_synthetic_coco(tmp_path / "other", n_train=24, n_val=16, imgsz=64, seed=4)
    a, b = tree_bytes(synthetic), tree_bytes(other)
    assert a.keys() == b.keys()
    assert a["val2017/000000000025.jpg"] != b["val2017/000000000025.jpg"]


def test_rerun_with_fewer_images_removes_stale_images(tmp_path: Path) -> None:
    make_synthetic_coco(tmp_path, n_train=10, n_val=4, imgsz=48)
    make_synthetic_coco(tmp_path, n_train=3, n_val=2, imgsz=48)
    assert tree_bytes(tmp_path) == tree_bytes(make_synthetic_coco(tmp_path / "fresh", n_train=3, n_val=2, imgsz=48))


def test_coco_structure(synthetic: Path) -> None:
    train, val = load(synthetic, "train2017"), load(synthetic, "val2017")
    ids = [c["id"] for c in train["categories"]]
    assert ids == [c["id"] for c in CATEGORIES]
    assert ids != list(range(1, len(ids) + 1))  # non-contiguous, like COCO
    image_ids = [im["id"] for d in (train, val) for im in d["images"]]
    annotation_ids = [a["id"] for d in (train, val) for a in d["annotations"]]
    assert len(set(image_ids)) == len(image_ids) == 40
    assert len(set(annotation_ids)) == len(annotation_ids)
    for data, folder in ((train, "train2017"), (val, "val2017")):
        sizes = {im["id"]: (im["width"], im["height"]) for im in data["images"]}
        for image in data["images"]:
            pixels = cv2.imread(str(synthetic / folder / image["file_name"]))
            assert pixels.shape == (image["height"], image["width"], 3)
        for annotation in data["annotations"]:
            x, y, w, h = annotation["bbox"]
            width, height = sizes[annotation["image_id"]]
            assert w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= width and y + h <= height
            assert annotation["area"] == pytest.approx(w * h, abs=0.01)
            assert annotation["category_id"] in ids
        annotated = {a["image_id"] for a in data["annotations"]}
        assert any(im["id"] not in annotated for im in data["images"]), "expected images without annotations"
        crowd = [a for a in data["annotations"] if a["iscrowd"]]
        assert crowd and all(a["category_id"] == 7 for a in crowd)
    counts = Counter(a["category_id"] for a in train["annotations"] if not a["iscrowd"])
    assert set(counts) == set(ids), f"every class should occur in 24 train images: {counts}"


@pytest.mark.parametrize(
    "kwargs", [{"n_train": -1}, {"imgsz": 16}, {"n_val": 2.5}, {"max_objects": 0}, {"jpeg_quality": 101}]
)
def test_invalid_arguments(tmp_path: Path, kwargs: dict) -> None:
    with pytest.raises(ValueError, match="must be"):
        make_synthetic_coco(tmp_path, **kwargs)


def test_synthetic_detection_case_is_deterministic_and_valid() -> None:
    from yolo_attn.data.synthetic import synthetic_detection_case
    from yolo_attn.evaluation.coco_eval import check_detections, load_coco_json

    gt, dets = synthetic_detection_case(n_images=200, seed=7, imgsz=320)
    assert (gt, dets) == synthetic_detection_case(n_images=200, seed=7, imgsz=320)
    assert len(gt["images"]) == 200 and dets
    assert len(check_detections(dets, load_coco_json(gt))) == len(dets)
    areas = [a["area"] for a in gt["annotations"]]
    assert min(areas) < 32**2 and max(areas) > 96**2  # small, medium and large all occur
    assert any(a["iscrowd"] for a in gt["annotations"])
