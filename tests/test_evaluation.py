"""Tests for COCO metrics (hand-computable cases, backend agreement) and the end-to-end evaluator."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from yolo_attn.evaluation.coco_eval import METRIC_NAMES, coco_metrics, evaluate

CAT_A, CAT_B = 5, 9  # non-contiguous ids, like COCO


def gt_dict(boxes: list[tuple[int, int, list[float], int]], n_images: int = 2) -> dict:
    """GT from (image_id, category_id, bbox, iscrowd) tuples on 200x200 images."""
    return {
        "images": [{"id": i, "file_name": f"{i}.jpg", "width": 200, "height": 200} for i in range(1, n_images + 1)],
        "annotations": [
            {"id": k, "image_id": im, "category_id": cat, "bbox": box, "area": box[2] * box[3], "iscrowd": crowd}
            for k, (im, cat, box, crowd) in enumerate(boxes, start=1)
        ],
        "categories": [{"id": CAT_A, "name": "a"}, {"id": CAT_B, "name": "b"}],
    }


def det(image_id: int, category_id: int, bbox: list[float], score: float) -> dict:
    return {"image_id": image_id, "category_id": category_id, "bbox": bbox, "score": score}


# Four medium boxes (40x40 = 1600 px, between 32^2 and 96^2), two per class.
FOUR = [
    (1, CAT_A, [10, 10, 40, 40], 0),
    (1, CAT_B, [100, 100, 40, 40], 0),
    (2, CAT_A, [20, 120, 40, 40], 0),
    (2, CAT_B, [120, 20, 40, 40], 0),
]


def test_perfect_prediction_scores_one() -> None:
    gt = gt_dict(FOUR)
    m = coco_metrics(gt, [det(im, cat, box, 0.9) for im, cat, box, _ in FOUR])
    for name in ("AP", "AP50", "AP75", "APm", "AR1", "AR10", "AR100", "ARm"):
        assert m[name] == pytest.approx(1.0), name
    for name in ("APs", "APl", "ARs", "ARl"):  # no small or large ground truth: undefined
        assert m[name] == -1.0, name
    assert m["per_class_AP"] == {"a": pytest.approx(1.0), "b": pytest.approx(1.0)}
    assert list(m)[:12] == list(METRIC_NAMES)


def test_two_of_four_found_gives_half_recall() -> None:
    found = [FOUR[0], FOUR[3]]  # one box of each class
    m = coco_metrics(gt_dict(FOUR), [det(im, cat, box, 0.9) for im, cat, box, _ in found])
    assert m["AR100"] == pytest.approx(0.5)
    assert m["AR1"] == pytest.approx(0.5)
    # precision 1 up to recall 0.5, nothing beyond: 51 of the 101 recall points (0.00 .. 0.50) have precision 1
    assert m["AP"] == pytest.approx(51 / 101)
    assert m["per_class_AP"]["a"] == pytest.approx(51 / 101)


def test_false_positive_ranked_first_halves_ap() -> None:
    gt = gt_dict([(1, CAT_A, [10, 10, 40, 40], 0)])
    m = coco_metrics(gt, [det(1, CAT_A, [100, 100, 40, 40], 0.9), det(1, CAT_A, [10, 10, 40, 40], 0.8)])
    assert m["AP"] == pytest.approx(0.5)  # one TP at rank 2: precision 1/2 at every recall point
    assert m["AR100"] == pytest.approx(1.0)
    assert m["AR1"] == pytest.approx(0.0)  # with one detection per image, only the false positive counts
    assert m["per_class_AP"]["b"] == -1.0  # class without ground truth


def test_iou_062_matches_three_of_ten_thresholds() -> None:
    gt = gt_dict([(1, CAT_A, [0, 0, 50, 50], 0)])
    m = coco_metrics(gt, [det(1, CAT_A, [0, 0, 50, 31], 0.9)])  # IoU = 31/50 = 0.62
    assert m["AP50"] == pytest.approx(1.0)
    assert m["AP75"] == pytest.approx(0.0)
    assert m["AP"] == pytest.approx(0.3)  # matched at IoU 0.50, 0.55, 0.60


def test_detection_on_crowd_box_is_ignored() -> None:
    crowd = [(1, CAT_A, [10, 10, 40, 40], 0), (1, CAT_A, [100, 100, 80, 80], 1)]
    dets = [det(1, CAT_A, [110, 110, 30, 30], 0.95), det(1, CAT_A, [10, 10, 40, 40], 0.9)]
    assert coco_metrics(gt_dict(crowd), dets)["AP"] == pytest.approx(1.0)
    not_crowd = [crowd[0], (1, CAT_A, [100, 100, 80, 80], 0)]  # same box, not a crowd: the small det is a FP
    assert coco_metrics(gt_dict(not_crowd), dets)["AP"] < 1.0


def test_area_ranges() -> None:
    boxes = [(1, CAT_A, [0, 0, 20, 20], 0), (1, CAT_A, [50, 50, 100, 100], 0)]  # 400 px small, 10000 px large
    m = coco_metrics(gt_dict(boxes), [det(1, CAT_A, [0, 0, 20, 20], 0.9)])
    assert m["APs"] == pytest.approx(1.0) and m["ARs"] == pytest.approx(1.0)
    assert m["APl"] == pytest.approx(0.0) and m["ARl"] == pytest.approx(0.0)
    assert m["APm"] == -1.0


def test_no_detections() -> None:
    m = coco_metrics(gt_dict(FOUR), [])
    assert m["AP"] == 0.0 and m["AR100"] == 0.0 and m["APl"] == -1.0


def test_file_input_equals_list_input_and_inputs_are_not_mutated(tmp_path: Path) -> None:
    gt = gt_dict(FOUR)
    dets = [det(im, cat, box, 0.5 + 0.1 * k) for k, (im, cat, box, _) in enumerate(FOUR[:3])]
    before = copy.deepcopy((gt, dets))
    from_list = coco_metrics(gt, dets)
    assert (gt, dets) == before
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dt.json").write_text(json.dumps(dets))
    assert coco_metrics(tmp_path / "gt.json", str(tmp_path / "dt.json")) == from_list


def test_invalid_detections_and_backend() -> None:
    gt = gt_dict(FOUR)
    with pytest.raises(ValueError, match=r"category_id 1; the ground truth has \[5, 9\]"):
        coco_metrics(gt, [det(1, 1, [0, 0, 5, 5], 0.5)])
    with pytest.raises(ValueError, match="image_id 7"):
        coco_metrics(gt, [det(7, CAT_A, [0, 0, 5, 5], 0.5)])
    with pytest.raises(ValueError, match="bbox"):
        coco_metrics(gt, [det(1, CAT_A, [0, 0, 5], 0.5)])
    with pytest.raises(ValueError, match="score"):
        coco_metrics(gt, [det(1, CAT_A, [0, 0, 5, 5], float("nan"))])
    with pytest.raises(ValueError, match="Unknown COCO evaluation backend"):
        coco_metrics(gt, [], backend="detectron")
    bad_gt = copy.deepcopy(gt)
    del bad_gt["annotations"][0]["iscrowd"]
    with pytest.raises(ValueError, match="lacks"):
        coco_metrics(bad_gt, [])


def test_missing_faster_coco_eval_gives_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "faster_coco_eval", None)  # makes the import fail
    with pytest.raises(ImportError, match=r"pip install 'yolo-attn\[fast\]'"):
        coco_metrics(gt_dict(FOUR), [], backend="faster-coco-eval")


def random_case(seed: int, n_images: int = 60) -> tuple[dict, list[dict]]:
    """Random GT of all sizes (some crowd) and noisy, partly wrong detections."""
    rng = np.random.default_rng(seed)
    boxes, dets = [], []
    for image_id in range(1, n_images + 1):
        for _ in range(int(rng.integers(0, 6))):
            w, h = (float(v) for v in np.exp(rng.uniform(np.log(4), np.log(150), size=2)).round(1))
            x, y = float(rng.uniform(0, 200 - w)), float(rng.uniform(0, 200 - h))
            cat = CAT_A if rng.random() < 0.5 else CAT_B
            boxes.append((image_id, cat, [x, y, w, h], int(rng.random() < 0.05)))
            if rng.random() < 0.8:  # found, with localisation noise
                noisy = [
                    x + rng.normal(0, 3),
                    y + rng.normal(0, 3),
                    w * rng.uniform(0.8, 1.2),
                    h * rng.uniform(0.8, 1.2),
                ]
                dets.append(det(image_id, cat, [float(v) for v in noisy], float(rng.random())))
        for _ in range(int(rng.integers(0, 4))):  # false positives
            fp = [float(v) for v in rng.uniform([0, 0, 5, 5], [150, 150, 60, 60])]
            dets.append(det(image_id, int(rng.choice([CAT_A, CAT_B])), fp, float(rng.random())))
    return gt_dict(boxes, n_images), dets


@pytest.mark.parametrize("seed", [0, 1])
def test_backends_give_identical_numbers(seed: int) -> None:
    pytest.importorskip("faster_coco_eval")
    gt, dets = random_case(seed)
    reference = coco_metrics(gt, dets, backend="pycocotools")
    fast = coco_metrics(gt, dets, backend="faster-coco-eval")
    assert 0.0 < reference["AP"] < 1.0
    # Same matching and accumulation; only the floating-point summation order may differ (last bit).
    assert [fast[k] for k in METRIC_NAMES] == pytest.approx([reference[k] for k in METRIC_NAMES], rel=0, abs=1e-12)
    assert fast["per_class_AP"] == pytest.approx(reference["per_class_AP"], rel=0, abs=1e-12)


def test_results_are_converted_to_coco_boxes_and_category_ids() -> None:
    import torch
    from ultralytics.engine.results import Results

    from yolo_attn.evaluation.predictions import result_to_detections

    boxes = torch.tensor([[10.0, 20.0, 50.0, 80.0, 0.9, 1.0], [0.0, 0.0, 5.5, 4.25, 0.25, 0.0]])  # x1 y1 x2 y2 conf cls
    result = Results(np.zeros((100, 120, 3), np.uint8), path="a.jpg", names={0: "a", 1: "b"}, boxes=boxes)
    assert result_to_detections(result, 42, [CAT_A, CAT_B]) == [
        {"image_id": 42, "category_id": CAT_B, "bbox": [10.0, 20.0, 40.0, 60.0], "score": 0.9},
        {"image_id": 42, "category_id": CAT_A, "bbox": [0.0, 0.0, 5.5, 4.25], "score": 0.25},
    ]


@pytest.mark.slow
def test_evaluate_end_to_end_on_untrained_model(tmp_path: Path) -> None:
    """Plumbing: an untrained YOLOv8n (nc from the subset) through predict, COCO json, COCOeval and Ultralytics val."""
    import ultralytics

    from yolo_attn.data import build_subset, make_synthetic_coco
    from yolo_attn.utils.offline import install_local_font

    install_local_font()
    source = make_synthetic_coco(tmp_path / "coco", n_train=4, n_val=6, imgsz=64, seed=2)
    data_yaml = build_subset(source, ["ring", "stripes"], None, None, seed=0, out=tmp_path / "subset")
    cfg = yaml.safe_load((Path(ultralytics.__file__).parent / "cfg/models/v8/yolov8.yaml").read_text())
    cfg["nc"] = 2
    model_yaml = tmp_path / "yolov8n.yaml"  # the "n" in the name selects the scale
    model_yaml.write_text(yaml.safe_dump(cfg, sort_keys=False))

    report = evaluate(model_yaml, data_yaml, imgsz=64, batch=4, device="cpu", out=tmp_path / "eval")

    gt = json.loads((data_yaml.parent / "annotations" / "instances_val.json").read_text())
    predictions = json.loads(Path(report["predictions_json"]).read_text())
    assert report["n_images"] == len(gt["images"]) == 6
    assert report["n_detections"] == len(predictions) > 0
    assert {p["category_id"] for p in predictions} <= {7, 20}
    assert {p["image_id"] for p in predictions} <= {im["id"] for im in gt["images"]}
    assert report["coco"] == coco_metrics(gt, predictions)
    assert set(report["ultralytics"]) == {"mAP50-95", "mAP50"}
    assert all(0.0 <= v <= 1.0 for v in report["ultralytics"].values())
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text()) == report
    with pytest.raises(ValueError, match="predicts 80 classes"):
        evaluate(Path(ultralytics.__file__).parent / "cfg/models/v8/yolov8.yaml", data_yaml, imgsz=64, out=tmp_path)
