"""COCO detection metrics with pycocotools (or faster-coco-eval), and the end-to-end ``evaluate`` of a YOLO model.

:func:`coco_metrics` is the pure metric part: a COCO ground truth and a list of COCO-format detections in, the 12
numbers COCOeval prints plus per-class AP out. :func:`evaluate` runs a model on the val images of a detection data set
(a subset built by ``yolo_attn.data.build_subset``, or any YOLO-label data set, whose ground truth is built from its
labels by ``yolo_attn.data.yolo_to_coco``), writes its detections as COCO json, scores them with
:func:`coco_metrics`, and also reports Ultralytics' own val mAP on the same data for comparison (the two differ
slightly: Ultralytics interpolates its PR curve on 101 points its own way, uses rectangular val batches, and does not
know crowd boxes).
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

METRIC_NAMES: tuple[str, ...] = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
BACKENDS: tuple[str, ...] = ("pycocotools", "faster-coco-eval")
_GT_ANNOTATION_KEYS = ("id", "image_id", "category_id", "bbox", "area", "iscrowd")


def _load_backend(backend: str) -> tuple[type, type]:
    """Return the (COCO, COCOeval) classes of a backend, importing it lazily.

    Args:
        backend (str): ``pycocotools`` or ``faster-coco-eval``.

    Returns:
        (tuple[type, type]): The backend's COCO API class and its evaluator class.

    Raises:
        ValueError: For an unknown backend name.
        ImportError: When faster-coco-eval is asked for but not installed.
    """
    if backend == "pycocotools":
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        return COCO, COCOeval
    if backend == "faster-coco-eval":
        try:
            from faster_coco_eval import COCO, COCOeval_faster
        except ImportError as error:
            raise ImportError(
                "backend='faster-coco-eval' needs the optional package faster-coco-eval: "
                "pip install 'yolo-attn[fast]' (or pip install faster-coco-eval), or use backend='pycocotools'"
            ) from error
        return COCO, COCOeval_faster
    raise ValueError(f"Unknown COCO evaluation backend {backend!r}; expected one of {list(BACKENDS)}")


def load_coco_json(source: str | Path | dict[str, Any]) -> dict[str, Any]:
    """Return a COCO ground-truth dict (a deep copy when a dict is given), checked for the fields bbox eval needs.

    Args:
        source (str | Path | dict): Path of a COCO json, or the dict itself.

    Returns:
        (dict): The ground truth, with ``images``, ``annotations`` and ``categories``.

    Raises:
        FileNotFoundError: If the path does not exist.
        ValueError: If a list is missing or an annotation lacks a field COCOeval reads.
    """
    if isinstance(source, dict):
        gt = copy.deepcopy(source)
    else:
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"COCO ground-truth file {path} not found")
        gt = json.loads(path.read_text(encoding="utf-8"))
    for key in ("images", "annotations", "categories"):
        if not isinstance(gt.get(key), list):
            raise ValueError(f"COCO ground truth has no '{key}' list")
    for annotation in gt["annotations"]:
        missing = [key for key in _GT_ANNOTATION_KEYS if key not in annotation]
        if missing:
            raise ValueError(f"Ground-truth annotation {annotation.get('id', '?')} lacks {missing}")
    return gt


def check_detections(detections: str | Path | list[dict[str, Any]], gt: dict[str, Any]) -> list[dict[str, Any]]:
    """Validate COCO-format detections against a ground truth and return clean copies.

    Args:
        detections (str | Path | list[dict]): Path of a COCO results json, or its list of
            ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}`` dicts (pixels, top-left corner).
        gt (dict): The ground truth they refer to.

    Returns:
        (list[dict]): New dicts with exactly those four fields.

    Raises:
        ValueError: For a detection on an unknown image or category, or a malformed box or score.
    """
    if not isinstance(detections, list):
        path = Path(detections)
        if not path.is_file():
            raise FileNotFoundError(f"Detections file {path} not found")
        detections = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(detections, list):
            raise ValueError(f"{path} must hold a JSON list of detections")
    image_ids = {image["id"] for image in gt["images"]}
    category_ids = {category["id"] for category in gt["categories"]}
    clean = []
    for index, detection in enumerate(detections):
        bbox, score = detection.get("bbox"), detection.get("score")
        if detection.get("image_id") not in image_ids:
            raise ValueError(f"Detection {index} is on image_id {detection.get('image_id')!r}, not in the ground truth")
        if detection.get("category_id") not in category_ids:
            raise ValueError(
                f"Detection {index} has category_id {detection.get('category_id')!r}; the ground truth has "
                f"{sorted(category_ids)} (map YOLO classes back with yolo_class_to_category_id)"
            )
        if not isinstance(bbox, (list, tuple)) or len(bbox) != 4 or not all(_is_number(v) for v in bbox):
            raise ValueError(f"Detection {index} bbox {bbox!r} must be 4 finite numbers [x, y, w, h]")
        if not _is_number(score):
            raise ValueError(f"Detection {index} score {score!r} must be a finite number")
        clean.append(
            {
                "image_id": detection["image_id"],
                "category_id": detection["category_id"],
                "bbox": [float(v) for v in bbox],
                "score": float(score),
            }
        )
    return clean


def _is_number(value: Any) -> bool:
    """Return True for a finite int or float (bools excluded)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _coco_api(coco_class: type, dataset: dict[str, Any]) -> Any:
    """Build a backend COCO API object from a dict (both backends accept an empty constructor plus ``dataset``)."""
    api = coco_class()
    api.dataset = dataset
    api.createIndex()
    return api


def coco_metrics(
    gt_json: str | Path | dict[str, Any],
    detections: str | Path | list[dict[str, Any]],
    backend: str = "pycocotools",
) -> dict[str, Any]:
    """Compute the 12 COCO box metrics and per-class AP.

    Standard COCOeval settings: IoU 0.50:0.05:0.95, 101 recall points, area ranges small < 32^2 <= medium < 96^2 <=
    large, at most 1/10/100 detections per image. Crowd ground truths are ignored (detections on them count neither
    way). A value of -1.0 means "undefined" (no ground truth in that area range or class), as in pycocotools.

    Args:
        gt_json (str | Path | dict): COCO ground truth (path or dict).
        detections (str | Path | list[dict]): COCO results (path or list); may be empty.
        backend (str): ``pycocotools`` (reference) or ``faster-coco-eval`` (same numbers, faster; optional package).

    Returns:
        (dict[str, Any]): ``AP, AP50, AP75, APs, APm, APl, AR1, AR10, AR100, ARs, ARm, ARl`` as floats in [0, 1] (or
            -1.0), and ``per_class_AP``: category name -> AP@[.50:.95] (area all, 100 detections), in category id order.

    Examples:
        >>> m = coco_metrics("annotations/instances_val.json", "predictions.json")
        >>> m["AP"], m["AR100"], m["per_class_AP"]["person"]
    """
    gt = load_coco_json(gt_json)
    clean = check_detections(detections, gt)
    coco_class, evaluator_class = _load_backend(backend)
    with contextlib.redirect_stdout(io.StringIO()):  # both backends print progress
        gt_api = _coco_api(coco_class, gt)
        if clean:
            dt_api = gt_api.loadRes(clean)
        else:  # pycocotools' loadRes cannot take an empty list
            dt_api = _coco_api(coco_class, {"images": gt["images"], "categories": gt["categories"], "annotations": []})
        kwargs = {"print_function": lambda *args, **kwargs: None} if backend == "faster-coco-eval" else {}
        evaluator = evaluator_class(gt_api, dt_api, "bbox", **kwargs)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    metrics: dict[str, Any] = {
        name: float(value) for name, value in zip(METRIC_NAMES, evaluator.stats[:12], strict=True)
    }
    precision = np.asarray(evaluator.eval["precision"])  # (T iou thresholds, R recall points, K classes, A areas, M)
    names = {category["id"]: category["name"] for category in gt["categories"]}
    per_class = {}
    for k, category_id in enumerate(evaluator.params.catIds):
        valid = precision[:, :, k, 0, -1]  # area "all", maxDets 100
        valid = valid[valid > -1]
        per_class[names[category_id]] = float(valid.mean()) if valid.size else -1.0
    metrics["per_class_AP"] = per_class
    return metrics


def evaluate(
    weights: str | Path,
    data: str | Path,
    imgsz: int = 640,
    batch: int = 16,
    device: str | None = None,
    conf: float = 0.001,
    iou: float = 0.7,
    backend: str = "pycocotools",
    out: str | Path | None = None,
    *,
    max_det: int = 300,
    ultralytics_val: bool = True,
) -> dict[str, Any]:
    """Evaluate a YOLO model on a data set's val images with COCO metrics, and with Ultralytics' val for comparison.

    ``data`` is any Ultralytics detection data YAML. One written by ``yolo_attn.data.build_subset`` has
    ``coco_gt: annotations/instances_val.json`` (relative to ``path``), the COCO ground truth of the val images, read
    from the YAML's ``val`` folder. For any other (YOLO labels only, e.g. a Roboflow export) the ground truth is built
    from the val labels and image sizes and cached (``yolo_attn.data.yolo_to_coco``: box areas, no crowd regions). In
    both, the ground truth's ``yolo_class_to_category_id`` list maps the model's classes to category ids, and the
    images evaluated are exactly those it lists.

    Files written to ``out``: ``predictions.json`` (COCO results: boxes in original-image pixels, 3 decimals; scores
    5 decimals), ``metrics.json`` (the returned dict), and ``ultralytics_val/`` (Ultralytics' val run).

    Args:
        weights (str | Path): Model weights (``best.pt``) or a model YAML (an untrained model; plumbing checks only).
        data (str | Path): Detection data YAML (with or without a ``coco_gt`` key).
        imgsz (int): Inference image size.
        batch (int): Inference batch size.
        device (str | None): Ultralytics device string (``cpu``, ``0``...), None for Ultralytics' default.
        conf (float): Confidence threshold; keep it low (0.001) for mAP.
        iou (float): NMS IoU threshold.
        backend (str): ``pycocotools`` or ``faster-coco-eval``.
        out (str | Path | None): Output folder; None for a new ``runs/coco_eval/exp*``.
        max_det (int): Most detections per image kept by NMS (COCOeval then scores the best 100).
        ultralytics_val (bool): Also run ``model.val`` on the data YAML and report its mAP50-95 and mAP50.

    Returns:
        (dict[str, Any]): ``coco`` (the :func:`coco_metrics` dict), ``ultralytics`` (``{"mAP50-95", "mAP50"}`` or
            None), ``backend``, ``n_images``, ``n_detections``, ``gt_json``, ``predictions_json``, ``weights``.

    Raises:
        ValueError: If the model's class count differs from the ground truth's, or a label file is wrong
            (``yolo_attn.data.yolo_to_coco.LabelError``, naming the file).
        FileNotFoundError: If the ground truth, a val image, or every val label file is missing.
    """
    from ultralytics import YOLO
    from ultralytics.data.utils import check_det_dataset
    from ultralytics.utils.files import increment_path

    from yolo_attn.data.subset import yolo_class_to_category_id
    from yolo_attn.data.yolo_to_coco import ground_truth_for, val_image_paths
    from yolo_attn.evaluation.predictions import predict_detections

    _load_backend(backend)  # fail before running the model
    info = check_det_dataset(str(data))
    gt_path = ground_truth_for(data)
    gt = load_coco_json(gt_path)
    class_to_category = yolo_class_to_category_id(gt)
    try:
        images = val_image_paths(info, gt)
    except ValueError as error:
        raise ValueError(f"{data}: {error}") from None
    missing = [path for path in images if not Path(path).is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} val image(s) of {gt_path} missing, e.g. {missing[0]}")

    out = Path(out) if out is not None else increment_path(Path("runs") / "coco_eval" / "exp", mkdir=False)
    out.mkdir(parents=True, exist_ok=True)
    model = YOLO(str(weights))
    if len(model.names) != len(class_to_category):
        raise ValueError(
            f"Model {weights} predicts {len(model.names)} classes but {gt_path} has {len(class_to_category)}: "
            "evaluate a model trained on this data set"
        )
    device_kwargs = {} if device is None else {"device": device}
    detections = predict_detections(
        model, images, class_to_category, imgsz=imgsz, batch=batch, conf=conf, iou=iou, max_det=max_det, **device_kwargs
    )
    predictions_json = out / "predictions.json"
    predictions_json.write_text(json.dumps(detections, separators=(",", ":")) + "\n", encoding="utf-8")
    coco = coco_metrics(gt, detections, backend=backend)

    ultralytics_metrics = None
    if ultralytics_val:
        result = model.val(
            data=str(data),
            imgsz=imgsz,
            batch=batch,
            conf=conf,
            iou=iou,
            max_det=max_det,
            plots=False,
            verbose=False,
            project=str(out.absolute()),
            name="ultralytics_val",
            exist_ok=True,
            **device_kwargs,
        )
        ultralytics_metrics = {"mAP50-95": float(result.box.map), "mAP50": float(result.box.map50)}

    report = {
        "weights": str(weights),
        "backend": backend,
        "gt_json": str(gt_path),
        "predictions_json": str(predictions_json),
        "n_images": len(images),
        "n_detections": len(detections),
        "coco": coco,
        "ultralytics": ultralytics_metrics,
    }
    (out / "metrics.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


def format_metrics(report: dict[str, Any]) -> str:
    """Render an :func:`evaluate` report as markdown: the 12 COCO metrics, per-class AP, Ultralytics' mAP beside them.

    Args:
        report (dict[str, Any]): The dict returned by :func:`evaluate`.

    Returns:
        (str): Markdown tables, ready to paste.
    """
    coco = report["coco"]
    lines = [
        f"COCO metrics ({report['backend']}) of {report['weights']} on {report['n_images']} val images",
        "",
        "| " + " | ".join(METRIC_NAMES) + " |",
        "|" + " --- |" * len(METRIC_NAMES),
        "| " + " | ".join(f"{coco[name]:.4f}" for name in METRIC_NAMES) + " |",
        "",
        "| class | AP |",
        "| --- | --- |",
        *(f"| {name} | {ap:.4f} |" for name, ap in coco["per_class_AP"].items()),
    ]
    if report.get("ultralytics"):
        u = report["ultralytics"]
        lines += [
            "",
            f"Ultralytics val: mAP50-95 {u['mAP50-95']:.4f}, mAP50 {u['mAP50']:.4f} (why they differ: docs/coco.md)",
        ]
    return "\n".join(lines)
