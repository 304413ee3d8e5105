"""Tests for the COCO -> YOLO subset builder."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml

from yolo_attn.data.subset import build_subset, select_categories, yolo_class_to_category_id
from yolo_attn.data.synthetic import make_synthetic_coco


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic_coco(tmp_path_factory.mktemp("src") / "coco", n_train=24, n_val=16, imgsz=64, seed=1)


def load_source(source: Path, split: str) -> dict:
    return json.loads((source / "annotations" / f"instances_{split}2017.json").read_text())


def snapshot(root: Path) -> dict[str, bytes | str]:
    """Every file under root: symlinks by target, files by bytes; data.yaml without its root-specific path line."""
    result: dict[str, bytes | str] = {}
    for path in sorted(root.rglob("*")):
        key = path.relative_to(root).as_posix()
        if path.is_symlink():
            result[key] = os.readlink(path)
        elif path.is_file():
            data = path.read_bytes()
            if key == "data.yaml":
                data = data.replace(str(root).encode(), b"<out>")
            result[key] = data
    return result


def read_labels(out: Path, split: str) -> dict[str, list[list[float]]]:
    return {
        p.stem: [[float(v) for v in line.split()] for line in p.read_text().splitlines()]
        for p in sorted((out / "labels" / split).glob("*.txt"))
    }


def test_two_runs_are_byte_identical(source: Path, tmp_path: Path) -> None:
    a = build_subset(source, ["stripes", "ring"], 12, 8, seed=5, out=tmp_path / "a").parent
    b = build_subset(source, ["ring", "stripes"], 12, 8, seed=5, out=tmp_path / "b").parent
    snap_a = snapshot(a)
    assert snap_a == snapshot(b)
    assert sum(k.startswith("labels/") for k in snap_a) > 0
    build_subset(source, ["ring", "stripes"], 12, 8, seed=5, out=a)  # rebuild over the previous subset
    assert snapshot(a) == snap_a
    c = build_subset(source, ["ring", "stripes"], 12, 8, seed=6, out=tmp_path / "c").parent
    assert sorted(os.listdir(c / "images" / "val")) != sorted(os.listdir(a / "images" / "val"))


def test_rebuild_with_other_arguments_leaves_no_stale_files(source: Path, tmp_path: Path) -> None:
    out = tmp_path / "subset"
    build_subset(source, None, 20, 12, seed=0, out=out)
    build_subset(source, ["sign"], 3, 2, seed=0, out=out)
    assert snapshot(out) == snapshot(build_subset(source, ["sign"], 3, 2, seed=0, out=tmp_path / "fresh").parent)


def test_layout_counts_classes_and_remap(source: Path, tmp_path: Path) -> None:
    data_yaml = build_subset(source, ["stripes", "sign"], 10, 6, seed=0, out=tmp_path / "s")
    out = data_yaml.parent
    data = yaml.safe_load(data_yaml.read_text())
    assert list(data) == ["path", "train", "val", "names", "coco_gt"]
    assert data["names"] == {0: "sign", 1: "stripes"}  # COCO id order (3, 20), not the order asked for
    assert Path(data["path"]) == out.resolve()
    assert len(list((out / "images" / "train").iterdir())) == 10
    val_images = sorted(p.name for p in (out / "images" / "val").iterdir())
    assert len(val_images) == 6

    gt = json.loads((out / data["coco_gt"]).read_text())
    assert yolo_class_to_category_id(gt) == [3, 20]
    assert [c["id"] for c in gt["categories"]] == [3, 20]
    assert sorted(im["file_name"] for im in gt["images"]) == val_images

    src = load_source(source, "val")
    chosen_ids = {im["id"] for im in gt["images"]}
    expected = sorted(
        (a for a in src["annotations"] if a["image_id"] in chosen_ids and a["category_id"] in (3, 20)),
        key=lambda a: a["id"],
    )
    assert gt["annotations"] == expected  # untouched source annotations, crowd included

    annotated = {a["image_id"] for a in src["annotations"]}
    with_chosen = {a["image_id"] for a in src["annotations"] if a["category_id"] in (3, 20)}
    assert all(i in with_chosen or i not in annotated for i in chosen_ids)  # the candidate rule

    labels = read_labels(out, "val")
    by_id = {im["id"]: im for im in gt["images"]}
    for image_id, image in by_id.items():
        rows = labels.get(Path(image["file_name"]).stem, [])
        want = []
        for a in expected:
            if a["image_id"] == image_id and not a["iscrowd"]:
                x, y, w, h = a["bbox"]
                cls = [3, 20].index(a["category_id"])
                want.append([cls, (x + w / 2) / image["width"], (y + h / 2) / image["height"], w / image["width"],
                             h / image["height"]])  # fmt: skip
        assert len(rows) == len(want)
        for got, ref in zip(rows, want, strict=True):
            assert got == pytest.approx(ref, abs=1e-5)


def test_crowd_boxes_stay_in_gt_but_not_in_labels(source: Path, tmp_path: Path) -> None:
    out = build_subset(source, ["ring"], None, None, seed=0, out=tmp_path / "r").parent
    gt = json.loads((out / "annotations" / "instances_val.json").read_text())
    crowd = [a for a in gt["annotations"] if a["iscrowd"]]
    assert crowd, "the synthetic val split has crowds of rings"
    n_labels = sum(len(rows) for rows in read_labels(out, "val").values())
    assert n_labels == len(gt["annotations"]) - len(crowd)
    assert all(row[0] == 0 for rows in read_labels(out, "val").values() for row in rows)


def test_all_classes_all_images_keeps_negatives(source: Path, tmp_path: Path) -> None:
    out = build_subset(source, None, None, None, seed=0, out=tmp_path / "all").parent
    src = load_source(source, "val")
    gt = json.loads((out / "annotations" / "instances_val.json").read_text())
    assert len(gt["images"]) == len(src["images"])
    assert any(im["id"] not in {a["image_id"] for a in src["annotations"]} for im in gt["images"])
    assert len(gt["annotations"]) == len(src["annotations"])
    assert yolo_class_to_category_id(gt) == [3, 7, 12, 20]


def test_remap_of_coco_ids_matches_ultralytics_coco91_to_coco80() -> None:
    from ultralytics.data.converter import coco80_to_coco91_class, coco91_to_coco80_class

    coco91 = coco80_to_coco91_class()
    categories = [{"id": i, "name": f"c{i}"} for i in reversed(coco91)]
    chosen = select_categories(categories, None)
    assert [c["id"] for c in chosen] == coco91
    to80 = coco91_to_coco80_class()
    assert all(to80[c["id"] - 1] == index for index, c in enumerate(chosen))


def test_copy_fallback_when_symlinks_are_refused(source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("symlinks not supported")

    monkeypatch.setattr(os, "symlink", refuse)
    out = build_subset(source, ["cross"], 2, 2, seed=0, out=tmp_path / "copy").parent
    images = sorted((out / "images" / "val").iterdir())
    assert images and not any(p.is_symlink() for p in images)
    assert all(p.read_bytes() == (source / "val2017" / p.name).read_bytes() for p in images)


def test_errors(source: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"Unknown class name\(s\) \['dog'\]. Valid names: \['sign', 'ring'"):
        build_subset(source, ["dog", "ring"], 2, 2, seed=0, out=tmp_path / "e1")
    with pytest.raises(ValueError, match=r"n_val=999 but val2017 has only \d+ images"):
        build_subset(source, ["ring"], 2, 999, seed=0, out=tmp_path / "e2")
    with pytest.raises(ValueError, match="positive int"):
        build_subset(source, ["ring"], 0, 2, seed=0, out=tmp_path / "e3")
    with pytest.raises(ValueError, match="non-empty list"):
        build_subset(source, [], 2, 2, seed=0, out=tmp_path / "e4")
    with pytest.raises(FileNotFoundError, match=r"instances_train2017\.json"):
        build_subset(tmp_path / "nowhere", None, 2, 2, seed=0, out=tmp_path / "e5")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "precious.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not empty"):
        build_subset(source, ["ring"], 2, 2, seed=0, out=busy)
    assert (busy / "precious.txt").read_text() == "keep me"
    assert not any(p.name.startswith("e") for p in tmp_path.iterdir()), "errors must be raised before writing"


def test_missing_image_is_reported(source: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(source, broken)
    victim = sorted((broken / "val2017").iterdir())[0]
    victim.unlink()
    with pytest.raises(FileNotFoundError, match=victim.name):
        build_subset(broken, None, None, None, seed=0, out=tmp_path / "out")


def test_ultralytics_reads_the_data_yaml(source: Path, tmp_path: Path) -> None:
    from ultralytics.data.utils import check_det_dataset

    data_yaml = build_subset(source, ["ring", "cross"], 4, 4, seed=0, out=tmp_path / "u")
    info = check_det_dataset(str(data_yaml))
    assert info["nc"] == 2 and info["names"] == {0: "ring", 1: "cross"}
    assert Path(info["val"]) == data_yaml.parent / "images" / "val"
    assert info["coco_gt"] == "annotations/instances_val.json"
