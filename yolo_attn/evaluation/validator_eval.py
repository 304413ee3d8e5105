"""Segmentation, pose and OBB metrics from Ultralytics' own validator of the task (``model.val``), not re-implemented.

The result keeps every number of the validator's ``results_dict`` under ``"ultralytics"``, keyed as Ultralytics names
them: ``metrics/mAP50-95(B)`` (box), ``metrics/mAP50-95(M)`` (mask, segment), ``metrics/mAP50-95(P)`` (pose keypoints,
OKS), and the same for ``mAP50``, precision and recall; for OBB the ``(B)`` keys are the rotated boxes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

VALIDATOR_TASKS = ("segment", "pose", "obb")


def evaluate_with_validator(
    weights: str | Path,
    data: str | Path,
    task: str | None = None,
    imgsz: int = 640,
    batch: int = 16,
    device: str | None = None,
    split: str = "val",
    conf: float | None = None,
    iou: float | None = None,
) -> dict[str, Any]:
    """Evaluate a segmentation, pose or OBB checkpoint with Ultralytics' validator of its task.

    Args:
        weights (str | Path): ``.pt`` checkpoint.
        data (str | Path): Data YAML of the task (for pose with ``kpt_shape``).
        task (str | None): Expected task; None accepts the checkpoint's own (one of ``VALIDATOR_TASKS``).
        imgsz (int): Validation image size.
        batch (int): Batch size.
        device (str | None): Ultralytics device string; None lets Ultralytics choose.
        split (str): Data split to validate on.
        conf (float | None): Confidence threshold (None: the validator's default).
        iou (float | None): NMS IoU threshold (None: the validator's default).

    Returns:
        (dict[str, Any]): ``ultralytics`` (the validator's ``results_dict``, floats), ``task``, ``nc``, ``split``,
            ``imgsz``, ``weights``, ``data``.

    Raises:
        ValueError: If the checkpoint is not of ``task`` or not of a task this evaluator handles.
    """
    from ultralytics import YOLO

    model = YOLO(str(weights))
    if model.task not in VALIDATOR_TASKS or (task is not None and model.task != task):
        wanted = task or " / ".join(VALIDATOR_TASKS)
        raise ValueError(f"{weights} is a {model.task} model; expected a {wanted} checkpoint")
    options: dict[str, Any] = {"conf": conf, "iou": iou}
    options = {k: v for k, v in options.items() if v is not None}
    metrics = model.val(
        data=str(data), imgsz=imgsz, batch=batch, device=device, split=split, plots=False, verbose=False, **options
    )
    return {
        "ultralytics": {k: float(v) for k, v in metrics.results_dict.items()},
        "task": model.task,
        "nc": len(model.names),
        "split": split,
        "imgsz": imgsz,
        "weights": str(weights),
        "data": str(data),
    }


def format_validator_metrics(metrics: dict[str, Any]) -> str:
    """Format `evaluate_with_validator`'s result: one header line, then each mAP of the validator."""
    where = f"{metrics['task']}, {metrics['split']}, {metrics['nc']} classes, {metrics['imgsz']} px"
    lines = [f"{metrics['weights']} on {metrics['data']} ({where})"]
    lines += [f"{k:<24} {v:.4f}" for k, v in metrics["ultralytics"].items() if "mAP" in k]
    return "\n".join(lines)
