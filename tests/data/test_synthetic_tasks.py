"""The synthetic segmentation, pose and OBB sets: deterministic, in the label formats Ultralytics reads."""

from __future__ import annotations

import math

import pytest
import yaml

from yolo_attn.data.synthetic_tasks import FLIP_IDX, KPT_SHAPE, NAMES, TASKS, make_synthetic_yolo

COLUMNS = {"pose": 1 + 4 + KPT_SHAPE[0] * KPT_SHAPE[1], "obb": 9}  # segment: 1 + 2 x (3 or more points)


def label_rows(root, split="train") -> dict[str, list[list[float]]]:
    return {
        path.stem: [[float(v) for v in line.split()] for line in path.read_text().splitlines()]
        for path in sorted((root / "labels" / split).glob("*.txt"))
    }


@pytest.mark.parametrize("task", TASKS)
def test_labels_have_the_task_format_and_the_same_arguments_give_the_same_files(task, tmp_path):
    data = make_synthetic_yolo(tmp_path / "a", task, n_train=8, n_val=2, imgsz=64)
    again = make_synthetic_yolo(tmp_path / "b", task, n_train=8, n_val=2, imgsz=64)
    for split in ("train", "val"):
        for file in sorted((data.parent / "labels" / split).iterdir()):
            assert file.read_bytes() == (again.parent / "labels" / split / file.name).read_bytes()
            image = data.parent / "images" / split / f"{file.stem}.jpg"
            assert image.read_bytes() == (again.parent / "images" / split / image.name).read_bytes()
    rows = label_rows(data.parent)
    assert rows["000005"] == [] and sum(map(len, rows.values())) >= 6  # index 5 is empty, the others are not
    for row in (r for image in rows.values() for r in image):
        coordinates = [v for k, v in enumerate(row[5:]) if k % 3 != 2] if task == "pose" else row[1:]
        assert row[0] in range(len(NAMES)) and all(0.0 <= v <= 1.0 for v in coordinates), row
        if task == "segment":
            assert len(row) >= 7 and len(row) % 2 == 1
        else:
            assert len(row) == COLUMNS[task]
        if task == "pose":
            cx, cy, w, h = row[1:5]
            points = [row[5 + 3 * k : 8 + 3 * k] for k in range(KPT_SHAPE[0])]
            assert all(v == 2 for _, _, v in points)  # every keypoint visible, inside the box (1 px of slack)
            assert all(abs(x - cx) <= w / 2 + 1 / 64 and abs(y - cy) <= h / 2 + 1 / 64 for x, y, _ in points)
    spec = yaml.safe_load(data.read_text())
    assert spec["names"] == dict(enumerate(NAMES)) and spec["path"] == str(data.parent)
    assert (spec.get("kpt_shape"), spec.get("flip_idx")) == (
        (list(KPT_SHAPE), list(FLIP_IDX)) if task == "pose" else (None, None)
    )


def test_obb_objects_are_turned(tmp_path):
    data = make_synthetic_yolo(tmp_path, "obb", n_train=16, n_val=1, imgsz=128)
    angles = []
    for row in (r for image in label_rows(data.parent).values() for r in image):
        (x1, y1), (x2, y2) = row[1:3], row[3:5]
        angles.append(abs(math.degrees(math.atan2(y2 - y1, x2 - x1))) % 90)
    turned = [a for a in angles if 2 < a < 88]
    assert len(turned) >= len(angles) // 2, angles  # most boxes are not axis-aligned


@pytest.mark.seam
@pytest.mark.parametrize("task", TASKS)
def test_ultralytics_label_checker_accepts_every_file(task, tmp_path):
    from ultralytics.data.utils import verify_image_label

    data = make_synthetic_yolo(tmp_path, task, n_train=8, n_val=1, imgsz=64)
    nkpt, ndim = KPT_SHAPE if task == "pose" else (0, 0)
    for label in sorted((data.parent / "labels" / "train").glob("*.txt")):
        image = data.parent / "images" / "train" / f"{label.stem}.jpg"
        result = verify_image_label((str(image), str(label), "", task == "pose", len(NAMES), nkpt, ndim, False))
        missing, _, empty, corrupt, message = result[-5:]
        assert corrupt == 0 and missing == 0, message
        assert (empty == 1) == (not label.read_text().strip()) and (empty == 1 or label.stem != "000005")
