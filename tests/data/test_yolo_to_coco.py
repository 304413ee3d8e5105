"""COCO ground truth built from a plain YOLO-label data set: hand-checked boxes, determinism, cache, errors, eval."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from PIL import Image

from yolo_attn.data import yolo_to_coco
from yolo_attn.data.yolo_to_coco import LabelError, cache_dir, ground_truth_for, val_image_paths


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv(yolo_to_coco.CACHE_ENV, str(folder))
    return folder


def write_image(path: Path, width: int, height: int, orientation: int | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", (width, height), (90, 30, 200))
    if orientation is None:
        image.save(path)
    else:
        exif = Image.Exif()
        exif[274] = orientation  # EXIF Orientation tag
        image.save(path, exif=exif)


def write_label(root: Path, name: str, lines: list[str]) -> Path:
    path = root / "labels" / "val" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def make_dataset(root: Path, val: str | list[str] = "images/val", names: list | dict | None = None) -> Path:
    """Four val images: two labelled boxes (one clipped), a background, an EXIF-rotated image, a polygon row."""
    write_image(root / "images/val/a.jpg", 100, 50)
    write_label(root, "a.txt", ["0 0.5 0.5 0.2 0.4", "1 0.1 0.1 0.4 0.4", "0 0.5 0.5 0.2 0.4"])  # 3rd: duplicate
    write_image(root / "images/val/b.png", 40, 80)  # no label file: an image without objects
    write_image(root / "images/val/c.jpg", 60, 30, orientation=6)  # stored 60x30, upright 30x60
    write_label(root, "c.txt", ["0 0.5 0.5 1 1"])
    write_image(root / "images/val/d.png", 100, 100)
    write_label(root, "d.txt", ["1 0.1 0.2 0.5 0.2 0.5 0.6"])  # polygon -> its enclosing box
    write_image(root / "images/train/t.jpg", 32, 32)
    spec = {"path": str(root), "train": "images/train", "val": val, "names": names or ["red", "cyan"]}
    data = root / "data.yaml"
    data.write_text(yaml.safe_dump(spec, sort_keys=False))
    return data


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def test_conversion_by_hand(tmp_path: Path):
    gt = load(ground_truth_for(make_dataset(tmp_path)))
    assert gt["images"] == [
        {"id": 1, "file_name": "images/val/a.jpg", "width": 100, "height": 50},
        {"id": 2, "file_name": "images/val/b.png", "width": 40, "height": 80},
        {"id": 3, "file_name": "images/val/c.jpg", "width": 30, "height": 60},  # EXIF orientation 6 swaps the sides
        {"id": 4, "file_name": "images/val/d.png", "width": 100, "height": 100},
    ]
    assert gt["annotations"] == [
        # cx 0.5 w 0.2 of 100 px -> x 40..60; cy 0.5 h 0.4 of 50 px -> y 15..35
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [40.0, 15.0, 20.0, 20.0], "area": 400.0, "iscrowd": 0},
        # x -10..30, y -5..15, clipped to the image
        {"id": 2, "image_id": 1, "category_id": 2, "bbox": [0.0, 0.0, 30.0, 15.0], "area": 450.0, "iscrowd": 0},
        {"id": 3, "image_id": 3, "category_id": 1, "bbox": [0.0, 0.0, 30.0, 60.0], "area": 1800.0, "iscrowd": 0},
        {"id": 4, "image_id": 4, "category_id": 2, "bbox": [10.0, 20.0, 40.0, 40.0], "area": 1600.0, "iscrowd": 0},
    ]
    assert gt["categories"] == [{"id": 1, "name": "red"}, {"id": 2, "name": "cyan"}]
    assert gt["yolo_class_to_category_id"] == [1, 2]


def test_val_as_folder_list_or_txt_and_names_as_dict_give_the_same_ground_truth(tmp_path: Path):
    reference = load(ground_truth_for(make_dataset(tmp_path / "folder")))
    root = tmp_path / "listed"
    make_dataset(root)
    (root / "val.txt").write_text("".join(f"./images/val/{n}\n" for n in ("d.png", "a.jpg", "c.jpg", "b.png")))
    for val, names in (("val.txt", None), (["images/val"], {0: "red", 1: "cyan"})):
        gt = load(ground_truth_for(make_dataset(root, val=val, names=names)))
        assert (gt["images"], gt["annotations"], gt["categories"]) == (
            reference["images"],
            reference["annotations"],
            reference["categories"],
        )


def test_deterministic_cached_outside_the_data_folder(tmp_path: Path, private_cache: Path):
    data = make_dataset(tmp_path / "data")
    first = ground_truth_for(data)
    content, mtime = first.read_bytes(), first.stat().st_mtime_ns
    assert first.parent == cache_dir() == private_cache / "coco_gt"
    assert not first.is_relative_to(tmp_path / "data")
    assert sorted(p.name for p in (tmp_path / "data").rglob("*.json")) == []  # nothing written beside the data
    assert ground_truth_for(data) == first and first.stat().st_mtime_ns == mtime  # reused, not rewritten
    first.unlink()
    assert ground_truth_for(data) == first and first.read_bytes() == content  # rebuilt byte for byte
    copy = make_dataset(tmp_path / "elsewhere")  # same labels and sizes under another root: its own file
    assert ground_truth_for(copy) != first


def test_default_cache_is_the_user_cache_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.delenv(yolo_to_coco.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "yolo_attn" / "coco_gt"


def test_rebuilt_when_a_label_or_a_name_changes(tmp_path: Path):
    data = make_dataset(tmp_path)
    before = ground_truth_for(data)
    write_label(tmp_path, "c.txt", ["1 0.5 0.5 1 1"])
    after = ground_truth_for(data)
    assert after != before
    assert load(after)["annotations"][2]["category_id"] == 2
    assert load(before)["annotations"][2]["category_id"] == 1  # the old file is left as it was
    renamed = ground_truth_for(make_dataset(tmp_path, names=["red", "teal"]))
    assert load(renamed)["categories"][1]["name"] == "teal"


def test_images_resolve_to_the_files_ultralytics_validates(tmp_path: Path):
    from ultralytics.data.utils import check_det_dataset

    data = make_dataset(tmp_path)
    images = val_image_paths(check_det_dataset(str(data)), load(ground_truth_for(data)))
    assert images == {
        str(tmp_path / "images/val" / n): i for i, n in enumerate(["a.jpg", "b.png", "c.jpg", "d.png"], 1)
    }


def test_coco_gt_key_wins(tmp_path: Path):
    data = make_dataset(tmp_path)
    spec = yaml.safe_load(data.read_text()) | {"coco_gt": "annotations/gt.json"}
    data.write_text(yaml.safe_dump(spec))
    with pytest.raises(FileNotFoundError, match=r"coco_gt file .*annotations/gt\.json not found"):
        ground_truth_for(data)
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations/gt.json").write_text("{}")
    assert ground_truth_for(data) == tmp_path / "annotations/gt.json"


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (["2 0.5 0.5 0.1 0.1"], r"c\.txt, line 1 .*class 2 is outside names \(0-1, 2 classes\)"),
        (["-1 0.5 0.5 0.1 0.1"], r"c\.txt, line 1 .*class -1 is outside names"),
        (["0 0.5 0.5 0.1 0.1", "1 0.5 0.5 0.1"], r"c\.txt, line 2 .*4 values; expected 'class cx cy w h'"),
        (["0 0.5 0.5 0.1 wide"], r"c\.txt, line 1 .*not numbers"),
        (["nan 0.5 0.5 0.1 0.1"], r"c\.txt, line 1 .*not numbers"),
        (["0 50 40 10 10"], r"c\.txt, line 1 .*normalised"),
        (["0 0.5 0.5 0.1 0.1", "1 0.1 0.2 0.5 0.2 0.5 0.6"], r"c\.txt: mixes box rows and polygon rows"),
    ],
)
def test_bad_label_rows_name_the_file_and_line(tmp_path: Path, lines: list[str], message: str):
    data = make_dataset(tmp_path)
    write_label(tmp_path, "c.txt", lines)
    with pytest.raises(LabelError, match=message):
        ground_truth_for(data)


def test_unreadable_image_is_named(tmp_path: Path):
    data = make_dataset(tmp_path)
    (tmp_path / "images/val/c.jpg").write_bytes(b"not an image")
    with pytest.raises(LabelError, match=r"Cannot read image .*images/val/c\.jpg"):
        ground_truth_for(data)


def test_val_split_without_labels_is_an_error(tmp_path: Path):
    data = make_dataset(tmp_path)
    for label in (tmp_path / "labels").rglob("*.txt"):
        label.unlink()
    with pytest.raises(FileNotFoundError, match=r"val split .*has no YOLO label files: looked for .*labels/val/a\.txt"):
        ground_truth_for(data)


def test_eval_cli_end_to_end_on_a_plain_yolo_data_set(tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture):
    """`yolo-attn eval` on a data set with YOLO labels only (no coco_gt): an untrained 2-class YOLOv8n, plumbing."""
    import ultralytics

    from yolo_attn.cli import main
    from yolo_attn.evaluation import coco_metrics

    assert "coco_gt" not in yaml.safe_load(tiny_data.read_text())
    cfg = yaml.safe_load((Path(ultralytics.__file__).parent / "cfg/models/v8/yolov8.yaml").read_text())
    model_yaml = tmp_path / "yolov8n.yaml"
    model_yaml.write_text(yaml.safe_dump(cfg | {"nc": 2}, sort_keys=False))
    out = tmp_path / "eval"
    options = {
        "--weights": model_yaml,
        "--data": tiny_data,
        "--imgsz": 64,
        "--batch": 4,
        "--device": "cpu",
        "--out": out,
    }
    main(["eval", *(str(x) for pair in options.items() for x in pair)])
    assert "COCO metrics (pycocotools)" in capsys.readouterr().out
    report = json.loads((out / "metrics.json").read_text())
    gt_path = Path(report["gt_json"])
    assert gt_path.parent == cache_dir() and not gt_path.is_relative_to(tiny_data.parent)
    gt = load(gt_path)
    predictions = json.loads(Path(report["predictions_json"]).read_text())
    assert report["n_images"] == len(gt["images"]) == 4
    assert len(gt["annotations"]) == 8  # two rectangles per image, written by the fixture
    assert report["n_detections"] == len(predictions) > 0
    assert {p["category_id"] for p in predictions} <= {1, 2}
    assert report["coco"] == coco_metrics(gt, predictions)
    assert set(report["ultralytics"]) == {"mAP50-95", "mAP50"}
