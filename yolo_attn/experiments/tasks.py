"""One description per Ultralytics task: what a comparison of that task evaluates, reports and defaults to.

Every stage of a comparison reads its task here and nowhere else: the plan (default image size, how the data argument
is checked, whether the COCO backend applies), the cell (which evaluator scores ``best.pt``), the executors (the
headline metric of a progress line) and the report (metric columns, labels, header sentence, plot label, curve
figure). Adding a task is one more entry of `TASKS`; no other module branches on the task's name.

Metrics are addressed by a path into the cell's ``metrics`` record (the evaluator's result):

- detect: ``yolo_attn.evaluation.coco_eval.evaluate`` (pycocotools / faster-coco-eval, ``("coco", "AP")``);
- classify: ``evaluate_classifier`` (Ultralytics' classification validator, ``("top1",)``);
- segment, pose, obb: ``evaluate_with_validator`` (Ultralytics' own validator of the task; the keys of its
  ``results_dict``, e.g. ``("ultralytics", "metrics/mAP50-95(M)")``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MetricColumns = dict[str, tuple[tuple[str, ...], str]]  # column prefix -> (path in the cell's metrics, label)
Evaluator = Callable[[Path, dict[str, Any], "str | None", "Path | None"], dict[str, Any]]


def _keep(data: str | Path) -> str | Path:
    return data


def _no_note(runs: Sequence[dict[str, Any]]) -> str:
    return ""


def _top5_note(runs: Sequence[dict[str, Any]]) -> str:
    few = sorted({int(r["metrics"]["nc"]) for r in runs if r["metrics"].get("nc", 6) <= 5})
    return f" Top-5 is 1 by definition with {' or '.join(map(str, few))} classes." if few else ""


def _resolve_cls_data(data: str | Path) -> str:
    from yolo_attn.evaluation.classify_eval import resolve_cls_data

    return resolve_cls_data(data)


def _evaluate_coco(weights: Path, settings: dict[str, Any], device: str | None, folder: Path) -> dict[str, Any]:
    from yolo_attn.evaluation.coco_eval import evaluate

    return evaluate(
        str(weights),
        settings["data"],
        imgsz=settings["imgsz"],
        batch=settings["batch"],
        device=device,
        backend=settings["backend"],
        out=folder,
        **_thresholds(settings),
    )


def _evaluate_classify(weights: Path, settings: dict[str, Any], device: str | None, folder: Path) -> dict[str, Any]:
    from yolo_attn.evaluation.classify_eval import evaluate_classifier

    return evaluate_classifier(
        weights, settings["data"], imgsz=settings["imgsz"], batch=settings["batch"], device=device
    )


def _evaluate_validator(weights: Path, settings: dict[str, Any], device: str | None, folder: Path) -> dict[str, Any]:
    from yolo_attn.evaluation.validator_eval import evaluate_with_validator

    return evaluate_with_validator(
        weights,
        settings["data"],
        task=settings["task"],
        imgsz=settings["imgsz"],
        batch=settings["batch"],
        device=device,
        **_thresholds(settings),
    )


def _thresholds(settings: dict[str, Any]) -> dict[str, float]:
    """Return the ``conf`` / ``iou`` that ``yolo-attn eval`` passes in ``settings`` (compare keeps the defaults)."""
    return {k: settings[k] for k in ("conf", "iou") if settings.get(k) is not None}


def _format_coco(metrics: dict[str, Any]) -> str:
    from yolo_attn.evaluation.coco_eval import format_metrics

    return format_metrics(metrics)


def _format_classify(metrics: dict[str, Any]) -> str:
    from yolo_attn.evaluation.classify_eval import format_classify_metrics

    return format_classify_metrics(metrics)


def _format_validator(metrics: dict[str, Any]) -> str:
    from yolo_attn.evaluation.validator_eval import format_validator_metrics

    return format_validator_metrics(metrics)


def _validator_columns(suffix: str, kind: str) -> MetricColumns:
    """Return the mAP50-95 and mAP50 columns of one Ultralytics metric family (``B`` box, ``M`` mask, ``P`` pose)."""
    prefix = {"B": "box", "M": "mask", "P": "pose"}[suffix]
    return {
        f"{prefix}_map50_95": (("ultralytics", f"metrics/mAP50-95({suffix})"), f"{kind} mAP50-95"),
        f"{prefix}_map50": (("ultralytics", f"metrics/mAP50({suffix})"), f"{kind} mAP50"),
    }


@dataclass(frozen=True)
class Task:
    """What a comparison of one Ultralytics task evaluates and reports; everything else is shared by all tasks.

    Attributes:
        name (str): Ultralytics' task name (``YOLO(model).task``).
        metrics (MetricColumns): Table columns: prefix -> (path in the cell's ``metrics``, label). The first one is
            the headline: plotted in ``compare.png`` and printed in progress lines.
        csv_metrics (MetricColumns): More metrics, in ``compare.csv`` only.
        source (str): Header sentence naming where the metrics come from (``{backend}`` is filled in).
        plot_label (str): Y label of ``compare.png``.
        default_imgsz (int): Ultralytics' default image size of the task, used when the caller gives none.
        evaluate (Evaluator): ``(weights, settings, device, folder) -> metrics`` of one trained checkpoint
            (``settings``: ``task``, ``data``, ``imgsz``, ``batch``, ``backend``, optionally ``conf`` and ``iou``;
            ``folder``: where an evaluator that writes files puts them, or None).
        format (Callable[[dict[str, Any]], str]): The evaluator's result as text (``yolo-attn eval``).
        uses_backend (bool): Whether the COCO ``backend`` setting applies (recorded as None otherwise); such an
            evaluator writes its own files (detections, metrics JSON) into its folder.
        data_is_folder (bool): Whether the data argument is an ImageFolder root (True) or a data YAML.
        resolve_data (Callable[[str | Path], str | Path]): Checks the data argument and returns what Ultralytics gets.
        curve (tuple[str, str, str] | None): ``results.csv`` column, y label and file name of the per-epoch curves of
            all runs, or None for no curve figure.
        note (Callable[[Sequence[dict[str, Any]]], str]): Extra header text from the finished runs.
    """

    name: str
    metrics: MetricColumns
    csv_metrics: MetricColumns
    source: str
    plot_label: str
    default_imgsz: int
    evaluate: Evaluator
    format: Callable[[dict[str, Any]], str]
    uses_backend: bool = False
    data_is_folder: bool = False
    resolve_data: Callable[[str | Path], str | Path] = field(default=_keep)
    curve: tuple[str, str, str] | None = None
    note: Callable[[Sequence[dict[str, Any]]], str] = field(default=_no_note)

    def data_name(self, data: str | Path) -> str:
        """Return the data set's name for titles: the folder itself (ImageFolder) or the YAML's folder."""
        return Path(data).name if self.data_is_folder else Path(data).parent.name

    def headline(self, metrics: dict[str, Any] | None) -> tuple[str, float | None]:
        """Return the label and value of the task's first metric in a cell's ``metrics`` (None when absent)."""
        key, label = next(iter(self.metrics.values()))
        value: Any = metrics or {}
        for part in key:
            value = value.get(part) if isinstance(value, dict) else None
        return label, None if value is None else float(value)


_VALIDATOR_SOURCE = "{kind} by Ultralytics' {name} validator (`model.val`) on the val split."
TASKS: dict[str, Task] = {
    "detect": Task(
        name="detect",
        metrics={"map50_95": (("coco", "AP"), "mAP50-95"), "map50": (("coco", "AP50"), "mAP50")},
        # also in the CSV: Ultralytics' own val mAP of the same checkpoints, for readers who compare with `yolo val`
        csv_metrics={
            "ultralytics_map50_95": (("ultralytics", "mAP50-95"), "Ultralytics mAP50-95"),
            "ultralytics_map50": (("ultralytics", "mAP50"), "Ultralytics mAP50"),
        },
        source="COCO metrics by {backend} on the val split.",
        plot_label="COCO mAP50-95",
        default_imgsz=640,
        evaluate=_evaluate_coco,
        format=_format_coco,
        uses_backend=True,
    ),
    "classify": Task(
        name="classify",
        metrics={"top1": (("top1",), "top-1"), "top5": (("top5",), "top-5")},
        csv_metrics={},
        source="Top-1 and top-5 accuracy by Ultralytics' classification validator on the val split (test/ if no val/).",
        plot_label="top-1 accuracy",
        default_imgsz=224,
        evaluate=_evaluate_classify,
        format=_format_classify,
        data_is_folder=True,
        resolve_data=_resolve_cls_data,
        curve=("metrics/accuracy_top1", "val top-1 accuracy", "accuracy.png"),
        note=_top5_note,
    ),
    "segment": Task(
        name="segment",
        metrics={**_validator_columns("M", "mask"), **_validator_columns("B", "box")},
        csv_metrics={},
        source=_VALIDATOR_SOURCE.format(kind="Mask and box mAP", name="segmentation"),
        plot_label="mask mAP50-95",
        default_imgsz=640,
        evaluate=_evaluate_validator,
        format=_format_validator,
    ),
    "pose": Task(
        name="pose",
        metrics={**_validator_columns("P", "pose"), **_validator_columns("B", "box")},
        csv_metrics={},
        source=_VALIDATOR_SOURCE.format(kind="Pose (keypoint OKS) and box mAP", name="pose"),
        plot_label="pose mAP50-95",
        default_imgsz=640,
        evaluate=_evaluate_validator,
        format=_format_validator,
    ),
    "obb": Task(
        name="obb",
        metrics=_validator_columns("B", "rotated-box"),
        csv_metrics={},
        source=_VALIDATOR_SOURCE.format(kind="Rotated-box (OBB) mAP", name="OBB"),
        plot_label="OBB mAP50-95",
        default_imgsz=640,
        evaluate=_evaluate_validator,
        format=_format_validator,
    ),
}


def get_task(name: str | None) -> Task:
    """Return the description of a task (None: detection, as folders written before tasks existed).

    Args:
        name (str | None): Ultralytics task name.

    Returns:
        (Task): Its description.

    Raises:
        ValueError: If no comparison can run that task.
    """
    name = "detect" if name is None else name
    if name not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}, got {name!r}")
    return TASKS[name]


def model_task(model: str | Path) -> str:
    """Return the Ultralytics task of a model YAML or checkpoint (``YOLO(model).task``)."""
    from ultralytics import YOLO

    return YOLO(str(model)).task


def grid_task(models: Sequence[str | Path], task: str | None = None) -> str:
    """Return the one task of a grid of models, refusing a grid that mixes tasks.

    Args:
        models (Sequence[str | Path]): Model YAMLs or weights; the first is the baseline.
        task (str | None): The task asked for (``--task``); None takes the first model's.

    Returns:
        (str): The task every model has.

    Raises:
        ValueError: If the models are of different tasks, or not of ``task``.
    """
    tasks = {str(m): model_task(m) for m in models}
    wanted = task or tasks[str(models[0])]
    get_task(wanted)
    others = {m: t for m, t in tasks.items() if t != wanted}
    if others:
        listed = ", ".join(f"{Path(m).name} is {t}" for m, t in tasks.items())
        where = f"--task {task}" if task else f"the baseline {Path(str(models[0])).name} is {wanted}"
        raise ValueError(f"a comparison runs one task and {where}, but the grid mixes tasks ({listed})")
    return wanted
