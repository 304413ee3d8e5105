"""Classification: top-1 / top-5 from Ultralytics' own validator, and the data layouts it reads.

Ultralytics' classify task reads an ImageFolder-style directory: ``root/train/<class>/*.jpg`` plus ``root/val/`` (or
``validation/``, ``valid/``) and/or ``root/test/``; the class names come from ``train/``'s subfolders. Given a folder
without ``train/``, Ultralytics would split the images into a new folder on its own; we refuse that with a clear
error instead. Its classify task does not read a data YAML; for convenience `resolve_cls_data` accepts one whose
``path:`` names such a directory (with ``train``/``val``/``test`` keys, if present, naming its own subfolders).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

VAL_FOLDERS = ("val", "validation", "valid", "test")  # what Ultralytics' check_cls_dataset looks for, in order


def resolve_cls_data(data: str | Path) -> str:
    """Check a classification data argument and return what to pass to Ultralytics as ``data=``.

    Args:
        data (str | Path): An ImageFolder root with ``train/`` and ``val/`` (or ``validation/``, ``valid/``,
            ``test/``), a data YAML whose ``path:`` is such a root, or an ``.ndjson`` file (passed on unchanged).

    Returns:
        (str): The root directory (or the ndjson file) as a string.

    Raises:
        FileNotFoundError: If the folder, the YAML or a split folder is missing.
        ValueError: If a YAML has no ``path`` or names splits that are not subfolders of it.
    """
    path = Path(data)
    if path.suffix == ".ndjson":
        return str(data)
    if path.suffix in {".yaml", ".yml"}:
        if not path.is_file():
            raise FileNotFoundError(f"classification data YAML {path} does not exist")
        from ultralytics.utils import YAML

        spec = YAML.load(path)
        if not spec.get("path"):
            raise ValueError(f"{path}: a classification data YAML needs `path:` naming an ImageFolder root")
        root = Path(spec["path"])
        root = root if root.is_absolute() else (path.parent / root)
        for key in ("train", "val", "test"):
            if spec.get(key) is not None and str(spec[key]).removeprefix("./").strip("/") != key:
                raise ValueError(
                    f"{path}: {key}: {spec[key]!r} — Ultralytics' classify task reads the fixed subfolders "
                    f"train/, val/ and test/ of `path`; expected {key}: {key} or no {key} key"
                )
        path = root
    if not path.is_dir():
        raise FileNotFoundError(
            f"classification data {path} is not a folder; expected an ImageFolder root with train/<class>/ and "
            f"val/<class>/ (or test/), or a data YAML whose `path:` names one"
        )
    if not (path / "train").is_dir():
        raise FileNotFoundError(f"{path} has no train/ folder (Ultralytics takes the class names from its subfolders)")
    if not any((path / name).is_dir() for name in VAL_FOLDERS):
        raise FileNotFoundError(f"{path} has no val/ (or validation/, valid/, test/) folder to evaluate on")
    return str(path.resolve())


def checkpoint_task(weights: str | Path) -> str:
    """Return the Ultralytics task of a checkpoint or model YAML (``"detect"``, ``"classify"``, ...).

    Args:
        weights (str | Path): ``.pt`` checkpoint or model YAML.

    Returns:
        (str): The task Ultralytics assigns to it.
    """
    from ultralytics import YOLO

    return YOLO(str(weights)).task


def evaluate_classifier(
    weights: str | Path,
    data: str | Path,
    imgsz: int = 224,
    batch: int = 64,
    device: str | None = None,
    split: str = "val",
) -> dict[str, Any]:
    """Top-1 and top-5 accuracy of a classification checkpoint, from Ultralytics' own ``val``.

    Args:
        weights (str | Path): Classification ``.pt`` checkpoint.
        data (str | Path): See `resolve_cls_data`.
        imgsz (int): Validation image size.
        batch (int): Batch size.
        device (str | None): Ultralytics device string (``"cpu"``, ``"0"``...); None lets Ultralytics choose.
        split (str): ``"val"`` or ``"test"`` (Ultralytics falls back to the other when one is missing).

    Returns:
        (dict[str, Any]): ``top1`` and ``top5`` (fractions in [0, 1]), ``nc``, ``split``, ``imgsz``, ``weights``,
            ``data``.

    Raises:
        ValueError: If the checkpoint is not a classifier.
    """
    from ultralytics import YOLO

    model = YOLO(str(weights))
    if model.task != "classify":
        raise ValueError(f"{weights} is a {model.task} model; evaluate_classifier expects a classify checkpoint")
    root = resolve_cls_data(data)
    metrics = model.val(data=root, imgsz=imgsz, batch=batch, device=device, split=split, plots=False, verbose=False)
    return {
        "top1": float(metrics.top1),
        "top5": float(metrics.top5),
        "nc": len(model.names),
        "split": split,
        "imgsz": imgsz,
        "weights": str(weights),
        "data": root,
    }


def format_classify_metrics(metrics: dict[str, Any]) -> str:
    """Format `evaluate_classifier`'s result as two lines of text."""
    top5_note = " (top-5 is 1 by definition with <= 5 classes)" if metrics["nc"] <= 5 else ""
    where = f"{metrics['split']}, {metrics['nc']} classes, {metrics['imgsz']} px"
    return (
        f"{metrics['weights']} on {metrics['data']} ({where})"
        f"\ntop-1 {100 * metrics['top1']:.2f}%   top-5 {100 * metrics['top5']:.2f}%{top5_note}"
    )
