"""COCO ground truth for any Ultralytics detection data set: built from the val split's YOLO labels, cached, resolved.

:func:`ground_truth_for` is the one resolver that ``yolo-attn eval`` and ``compare`` call. A data YAML written by
``yolo-attn subset`` names its ground truth with a ``coco_gt`` key; any other detection data YAML (``path``, ``train``,
``val`` as a folder, a list of folders or a ``.txt`` image list, ``names`` as a list or a dict: a Roboflow export, for
instance) gets one built by :func:`build_coco_gt` from its val labels and image sizes.

How the YOLO labels become COCO annotations:

- Images: exactly those Ultralytics' own val loader lists (its ``BaseDataset.get_img_files``: every image file under the
  folders, or the paths of a ``.txt`` list), sorted by path as Ultralytics sorts them, with ids 1..N in that order.
  ``file_name`` is the path relative to the data set root (``path``), or absolute for an image outside it. Width and
  height come from the image header, turned by the EXIF orientation tag as Ultralytics' ``exif_size`` turns them (YOLO
  labels, and Ultralytics' predictions, are in that upright frame). Nothing is decoded.
- Labels: the file Ultralytics' ``img2label_paths`` names for each image (``.../images/x.jpg`` ->
  ``.../labels/x.txt``). A missing label file is an image without objects, as in Ultralytics; a val split where no
  image has a label file is an error. Rows ``class cx cy w h`` (normalised) become boxes; polygon rows
  ``class x1 y1 x2 y2 ...`` (segment labels) become their enclosing box, as Ultralytics trains on them; a data set with
  ``kpt_shape`` keeps each pose row's box. Exact duplicate rows are counted once, as Ultralytics drops them.
- Boxes: ``bbox = [x, y, w, h]`` in pixels of the upright image, clipped to the image (as Ultralytics' val clips),
  rounded to 3 decimals; ``area = w * h``, the box area; ``iscrowd = 0``.
- Categories: YOLO class ``c`` -> ``category_id = c + 1``, named by ``names[c]``, the mapping Ultralytics' own
  ``save_json`` uses for data sets that are not COCO (and COCO annotation tools avoid id 0). The ground truth records it
  under ``yolo_class_to_category_id``, the key ``build_subset`` writes, so detections are mapped back the same way for
  both kinds of data set.

Unlike real COCO: areas are box areas, not mask areas, so an object lands in a larger S/M/L bucket than COCO's own
annotation of it would put it (a box is never smaller than the mask it encloses); and there are no crowd regions, so
every detection on an unlabelled crowd counts as a false positive.

Cache: ``$YOLO_ATTN_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/yolo_attn`` or ``~/.cache/yolo_attn``; never the user's
data folder. The file is named after the data YAML and a SHA-256 of the names, every image's path and size, and every
label file's path and bytes, so it is rebuilt whenever a label, an image or a class name changes.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from yolo_attn.data.subset import MAPPING_KEY

FORMAT_VERSION = 1  # bump when the conversion changes, so old cache files are not reused
CACHE_ENV = "YOLO_ATTN_CACHE_DIR"
COORD_TOLERANCE = 0.01  # Ultralytics accepts normalised coordinates up to 1.01 and down to -0.01


class LabelError(ValueError):
    """A YOLO label file, or the image it belongs to, cannot be turned into COCO ground truth; names the file."""


def cache_dir() -> Path:
    """Return the folder of cached ground truths: ``$YOLO_ATTN_CACHE_DIR``, else the user's cache folder.

    Returns:
        (Path): ``$YOLO_ATTN_CACHE_DIR`` or ``$XDG_CACHE_HOME/yolo_attn`` or ``~/.cache/yolo_attn``, plus ``coco_gt``.
    """
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override).expanduser() / "coco_gt"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "yolo_attn" / "coco_gt"


def ground_truth_for(data: str | Path) -> Path:
    """Return the COCO ground-truth json of a detection data set's val split, building it when the YAML names none.

    Args:
        data (str | Path): Ultralytics detection data YAML. With a ``coco_gt`` key (``yolo-attn subset``) that file is
            returned; otherwise the val split's YOLO labels are converted (see the module docstring) and cached.

    Returns:
        (Path): The ground-truth json.

    Raises:
        FileNotFoundError: If ``coco_gt`` names a missing file, or the val split has no label files.
        LabelError: For an unreadable image, a malformed label row or a class id outside ``names``.
    """
    from ultralytics.data.utils import check_det_dataset

    info = check_det_dataset(str(data))
    if info.get("coco_gt"):
        path = Path(info["path"]) / info["coco_gt"]
        if not path.is_file():
            raise FileNotFoundError(f"{data}: coco_gt file {path} not found")
        return path
    return build_coco_gt(info, name=Path(str(data)).stem)


def val_image_paths(data_info: dict[str, Any], gt: dict[str, Any]) -> dict[str, int]:
    """Return ``{absolute image path: image id}`` for the images a ground truth lists.

    Args:
        data_info (dict): The data set as ``check_det_dataset`` returns it (``path``, ``val``...).
        gt (dict): Its ground truth from :func:`ground_truth_for`.

    Returns:
        (dict[str, int]): For a ``coco_gt`` subset, ``file_name`` inside the ``val`` folder; for a built ground truth,
            ``file_name`` relative to the data set root (or absolute).

    Raises:
        ValueError: If a ``coco_gt`` data set's ``val`` is not one image folder.
    """
    if data_info.get("coco_gt"):
        val = data_info["val"]
        if not isinstance(val, str) or not Path(val).is_dir():
            raise ValueError(f"'val' must be one image folder for a data set with coco_gt, got {val!r}")
        root = Path(val)
    else:
        root = Path(data_info["path"])
    return {str((root / image["file_name"]).absolute()): image["id"] for image in gt["images"]}


def build_coco_gt(data_info: dict[str, Any], name: str = "data") -> Path:
    """Build (or reuse from the cache) the COCO ground truth of a data set's val split from its YOLO labels.

    Args:
        data_info (dict): The data set as ``check_det_dataset`` returns it: absolute ``path``, ``val`` (a folder, a
            ``.txt`` list, or a list of them), ``names`` as ``{class: name}``, optional ``kpt_shape``.
        name (str): Readable prefix of the cache file name (the data YAML's stem).

    Returns:
        (Path): The cached json, in :func:`cache_dir`.

    Raises:
        FileNotFoundError: If the val split has no label files at all.
        LabelError: For an unreadable image, a malformed label row or a class id outside ``names``.
    """
    root = Path(data_info["path"]).absolute()
    names = [str(data_info["names"][c]) for c in range(len(data_info["names"]))]
    images = _val_image_files(data_info["val"])
    label_files = _label_files(images)
    if not any(Path(label).is_file() for label in label_files):
        raise FileNotFoundError(
            f"The val split {data_info['val']} has no YOLO label files: looked for {label_files[0]} and "
            f"{len(label_files) - 1} more (Ultralytics puts labels in a 'labels' folder beside 'images', one "
            "'<image stem>.txt' per image). Add the labels, or give the YAML a 'coco_gt' COCO json."
        )
    entries = []
    digest = hashlib.sha256(json.dumps({"format": FORMAT_VERSION, "names": names}).encode())
    for image, label in zip(images, label_files, strict=True):
        width, height = image_size(image)
        content = Path(label).read_bytes() if Path(label).is_file() else None
        file_name = _relative(Path(image), root)
        entries.append((file_name, width, height, label, content))
        digest.update(json.dumps([file_name, width, height, label]).encode())
        digest.update(b"\0" if content is None else hashlib.sha256(content).digest())
    out = cache_dir() / f"{_safe(name)}-{digest.hexdigest()[:20]}.json"
    if out.is_file():
        return out
    gt = coco_from_labels(entries, names, kpt_shape=data_info.get("kpt_shape"))
    gt["info"] = {"description": f"COCO ground truth of {data_info['val']}, built by yolo_attn from YOLO labels"}
    _write_atomic(out, gt)
    return out


def coco_from_labels(
    entries: list[tuple[str, int, int, str, bytes | None]], names: list[str], kpt_shape: list[int] | None = None
) -> dict[str, Any]:
    """Convert images and their YOLO label contents to a COCO ground-truth dict (pure, no file access).

    Args:
        entries (list[tuple]): Per image, in id order: ``(file_name, width, height, label path, label bytes or None)``;
            the label path only names the file in errors.
        names (list[str]): Class names, index = YOLO class.
        kpt_shape (list[int] | None): ``[keypoints, dims]`` of a pose data set, whose rows then carry keypoints.

    Returns:
        (dict): ``images``, ``annotations``, ``categories`` and ``yolo_class_to_category_id``.

    Raises:
        LabelError: For a malformed row, coordinates that are not normalised, or a class id outside ``names``.
    """
    pose_columns = 5 + int(np.prod(kpt_shape)) if kpt_shape else None
    images, annotations = [], []
    for image_id, (file_name, width, height, label, content) in enumerate(entries, 1):
        images.append({"id": image_id, "file_name": file_name, "width": width, "height": height})
        rows = _parse_label(label, content, len(names), pose_columns) if content is not None else []
        for cls, (x, y, w, h) in rows:
            x1, y1 = max(0.0, (x - w / 2) * width), max(0.0, (y - h / 2) * height)
            x2, y2 = min(float(width), (x + w / 2) * width), min(float(height), (y + h / 2) * height)
            box = [round(x1, 3), round(y1, 3), round(max(0.0, x2 - x1), 3), round(max(0.0, y2 - y1), 3)]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": cls + 1,
                    "bbox": box,
                    "area": round(box[2] * box[3], 3),
                    "iscrowd": 0,
                }
            )
    return {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": c + 1, "name": n} for c, n in enumerate(names)],
        MAPPING_KEY: [c + 1 for c in range(len(names))],
    }


def image_size(path: str | Path) -> tuple[int, int]:
    """Return an image's upright ``(width, height)`` from its header, EXIF orientation applied as Ultralytics does.

    Args:
        path (str | Path): Image file.

    Returns:
        (tuple[int, int]): Width and height in pixels.

    Raises:
        LabelError: If the file cannot be read as an image.
    """
    from PIL import Image
    from ultralytics.data.utils import exif_size

    try:
        with Image.open(path) as image:
            image.verify()  # structure check without decoding the pixels, as Ultralytics' check_image does
            width, height = exif_size(image)
    except Exception as error:
        raise LabelError(f"Cannot read image {path}: {error}") from None
    return int(width), int(height)


def _parse_label(label: str, content: bytes, nc: int, pose_columns: int | None) -> list[tuple[int, list[float]]]:
    """Return the unique ``(class, [cx, cy, w, h])`` rows of one YOLO label file, in file order."""
    from ultralytics.utils.ops import segments2boxes

    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise LabelError(f"{label}: not UTF-8 text ({error})") from None
    rows, seen, kinds = [], set(), set()
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        where = f"{label}, line {number} {line.strip()!r}"
        try:
            values = [float(v) for v in fields]
        except ValueError:
            values = []
        if not values or not all(math.isfinite(v) for v in values):
            raise LabelError(f"{where}: not numbers; expected 'class cx cy w h', normalised to 0-1")
        if pose_columns and len(values) == pose_columns:
            values = values[:5]
        if len(values) == 5:
            kinds.add("box")
            box = values[1:]
        elif len(values) >= 7 and len(values) % 2 == 1:
            kinds.add("polygon")
            box = segments2boxes([np.array(values[1:], dtype=np.float64).reshape(-1, 2)])[0].tolist()
        else:
            raise LabelError(
                f"{where}: {len(values)} values; expected 'class cx cy w h' (5) or a polygon 'class x1 y1 x2 y2 ...' "
                "(an odd count of 7 or more)"
            )
        cls = values[0]
        if cls != int(cls) or not 0 <= cls < nc:
            raise LabelError(f"{where}: class {fields[0]} is outside names (0-{nc - 1}, {nc} classes)")
        coords = values[1:]
        if max(coords) > 1 + COORD_TOLERANCE or min(coords) < -COORD_TOLERANCE or min(box[2:]) < 0:
            raise LabelError(
                f"{where}: coordinates must be normalised to 0-1 (pixels divided by the image size), sizes >= 0"
            )
        key = tuple(values)
        if key not in seen:
            seen.add(key)
            rows.append((int(cls), [float(v) for v in box]))
    if len(kinds) > 1:
        raise LabelError(f"{label}: mixes box rows and polygon rows; Ultralytics rejects such a file")
    return rows


def _val_image_files(val: str | list[str]) -> list[str]:
    """List the val images exactly as Ultralytics' loader does (``BaseDataset.get_img_files``: folders, .txt lists)."""
    from ultralytics.data.base import BaseDataset

    loader = SimpleNamespace(prefix="", fraction=1.0)  # the two attributes the method reads
    return BaseDataset.get_img_files(loader, val)


def _label_files(images: list[str]) -> list[str]:
    """Label path of each image, by Ultralytics' own rule."""
    from ultralytics.data.utils import img2label_paths

    return img2label_paths(images)


def _relative(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` with forward slashes, or absolute when it lies outside ``root``."""
    path = path.absolute()
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def _safe(name: str) -> str:
    """A file-name-safe version of a data set name."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "data"


def _write_atomic(path: Path, payload: dict[str, Any]) -> None:
    """Write JSON (sorted keys, fixed separators: equal content gives equal bytes) through a temporary file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(json.dumps(payload, sort_keys=True, separators=(",", ":")) + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


__all__ = ("LabelError", "build_coco_gt", "cache_dir", "ground_truth_for", "val_image_paths")
