"""Synthetic segmentation, pose and OBB data sets in YOLO label format, drawn like the detection set.

The images are those of `yolo_attn.data.synthetic` (cluttered textured backgrounds, the four classes ``sign``,
``ring``, ``cross``, ``stripes`` and their unlabelled look-alikes); what changes is the label each object gets. Every
label is taken from the pixels of the object as drawn (its mask, minus whatever a later object covers):

- ``segment``: the outline polygon of the object (``cls x1 y1 x2 y2 ...``; a sign's pole is not part of it);
- ``pose``: the box and ``KPT_SHAPE`` = 4 keypoints, the object's topmost, rightmost, bottommost and leftmost pixel
  (``cls cx cy w h x y v ...``, all visible); ``FLIP_IDX`` swaps right and left under a horizontal flip;
- ``obb``: the object is drawn turned by up to ``MAX_TURN`` degrees either way (so the classes whose cue is an
  orientation keep it), and labelled with the smallest rotated rectangle around it, Ultralytics' ``xyxyxyxy``
  format (``cls x1 y1 x2 y2 x3 y3 x4 y4``).

Layout written (Ultralytics' YOLO layout)::

    out/data.yaml                          path, train, val, names (+ kpt_shape, flip_idx for pose)
    out/images/{train,val}/000000.jpg ...
    out/labels/{train,val}/000000.txt ...

Every image is drawn from its own ``numpy.random.Generator`` seeded with ``(seed, split, index)``: the same arguments
give byte-identical files. Every 8th image (index % 8 == 5) has no labelled object (an empty label file).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from yolo_attn.data.synthetic import (
    CATEGORIES,
    EMPTY_EVERY,
    EMPTY_OFFSET,
    _background,
    _draw_object,
    _place,
    _random_color,
)

TASKS = ("segment", "pose", "obb")
KPT_SHAPE = (4, 3)  # top, right, bottom, left extreme points; x, y, visibility
FLIP_IDX = (0, 3, 2, 1)  # a horizontal flip swaps the right and the left point
MAX_TURN = 20.0  # degrees an OBB object is turned at most (a cross turned 45 degrees is the distractor)
SPLITS = ("train", "val")
NAMES = tuple(str(c["name"]) for c in CATEGORIES)


@dataclass
class _Drawn:
    """One object as drawn: its class index (None for a distractor) and the pixels that show it."""

    cls: int | None
    mask: np.ndarray  # (size, size) bool


def _draw(image: np.ndarray, name: str, cx: int, cy: int, r: int, color: tuple, distractor: bool, turn: float):
    """Draw one object onto ``image`` (turned by ``turn`` degrees about its centre) and return its label mask.

    The mask is the object itself, a sign without its pole (the pole is context, not the object).
    """
    size = image.shape[0]
    shape = np.zeros((size, size), np.uint8)
    _draw_object(shape, name, cx, cy, r, (255, 255, 255), distractor=distractor or name == "sign")
    if turn == 0.0:
        _draw_object(image, name, cx, cy, r, color, distractor)
        return shape > 0
    canvas, alpha = np.zeros_like(image), np.zeros((size, size), np.uint8)
    _draw_object(canvas, name, cx, cy, r, color, distractor)
    _draw_object(alpha, name, cx, cy, r, (255, 255, 255), distractor)
    rotation = cv2.getRotationMatrix2D((float(cx), float(cy)), turn, 1.0)
    canvas = cv2.warpAffine(canvas, rotation, (size, size), flags=cv2.INTER_LINEAR)
    alpha = cv2.warpAffine(alpha, rotation, (size, size), flags=cv2.INTER_NEAREST)
    shape = cv2.warpAffine(shape, rotation, (size, size), flags=cv2.INTER_NEAREST)
    image[alpha > 0] = canvas[alpha > 0]
    return shape > 0


def _render(rng: np.random.Generator, index: int, size: int, task: str, max_objects: int, max_distractors: int):
    """Draw one image; return it and the visible mask of each labelled object, as ``(class index, mask)``."""
    image = _background(rng, size)
    empty = index % EMPTY_EVERY == EMPTY_OFFSET
    n_objects = 0 if empty else int(rng.integers(1, max_objects + 1))
    n_distractors = int(rng.integers(0 if not empty else 1, max_distractors + 1))
    plan = [(True, int(rng.integers(len(NAMES)))) for _ in range(n_distractors)]  # distractors first, never on top
    plan += [(False, int(rng.integers(len(NAMES)))) for _ in range(n_objects)]
    lo, hi = math.log(max(4.0, 0.05 * size)), math.log(0.3 * size)
    taken, drawn = [], []
    for distractor, cls in plan:
        name = NAMES[cls]
        r = round(math.exp(rng.uniform(lo, hi)))
        boxes = _place(rng, size, r, taken, max_overlap=0.1, pole=name == "sign" and not distractor)
        if not boxes:
            continue
        taken.extend(boxes)
        turn = float(rng.uniform(-MAX_TURN, MAX_TURN)) if task == "obb" else 0.0
        cx, cy = int(boxes[0].x + r), int(boxes[0].y + r)
        mask = _draw(image, name, cx, cy, r, _random_color(rng, 30, 256), distractor, turn)
        for earlier in drawn:  # what this object covers is no longer part of the earlier ones
            earlier.mask &= ~mask
        drawn.append(_Drawn(None if distractor else cls, mask))
    return image, [(d.cls, d.mask) for d in drawn if d.cls is not None]


def _outline(mask: np.ndarray) -> np.ndarray | None:
    """Return the largest outer contour of a mask as an (N, 2) float array of pixel corners (None if too small)."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return None
    contour = max(contours, key=cv2.contourArea)
    if cv2.contourArea(contour) < 4.0:
        return None
    return contour.reshape(-1, 2).astype(np.float64)


def label_line(task: str, cls: int, mask: np.ndarray) -> str | None:
    """Return one object's YOLO label line of ``task`` from its mask (None when too little of it is visible).

    Args:
        task (str): ``"segment"``, ``"pose"`` or ``"obb"``.
        cls (int): Class index.
        mask (np.ndarray): (size, size) bool mask of the object's visible pixels.

    Returns:
        (str | None): The label line, coordinates normalised to [0, 1].
    """
    points = _outline(mask)
    if points is None:
        return None
    size = float(mask.shape[0])
    if task == "segment":
        approx = cv2.approxPolyDP(points.astype(np.float32).reshape(-1, 1, 2), 0.01 * size, True).reshape(-1, 2)
        polygon = approx if len(approx) >= 3 else points
        values = (polygon / size).clip(0, 1).ravel()
    elif task == "obb":
        corners = cv2.boxPoints(cv2.minAreaRect(points.astype(np.float32)))
        values = (corners / size).clip(0, 1).ravel()
    else:  # pose: the box, then the top, right, bottom and left extreme points, visible
        x, y, w, h = cv2.boundingRect(points.astype(np.int32))
        extremes = [points[points[:, 1].argmin()], points[points[:, 0].argmax()]]
        extremes += [points[points[:, 1].argmax()], points[points[:, 0].argmin()]]
        box = [(x + w / 2) / size, (y + h / 2) / size, w / size, h / size]
        keypoints = [f"{min(1.0, (px + 0.5) / size):.6f} {min(1.0, (py + 0.5) / size):.6f} 2" for px, py in extremes]
        return f"{cls} " + " ".join([*(f"{v:.6f}" for v in box), *keypoints])
    return f"{cls} " + " ".join(f"{v:.6f}" for v in values)


def make_synthetic_yolo(
    out: str | Path,
    task: str,
    n_train: int = 64,
    n_val: int = 16,
    imgsz: int = 128,
    seed: int = 0,
    *,
    max_objects: int = 3,
    max_distractors: int = 2,
    jpeg_quality: int = 90,
) -> Path:
    """Write a synthetic segmentation, pose or OBB data set (see the module docstring) and return its data YAML.

    Args:
        out (str | Path): Output folder (created if missing); earlier images and labels there are replaced.
        task (str): One of ``TASKS``.
        n_train (int): Training images.
        n_val (int): Validation images.
        imgsz (int): Image side in pixels (square images), at least 32.
        seed (int): Seed; the same arguments give byte-identical files.
        max_objects (int): Most labelled objects per image (at least 1).
        max_distractors (int): Most unlabelled look-alikes per image.
        jpeg_quality (int): JPEG quality, 1..100.

    Returns:
        (Path): ``out/data.yaml``.

    Examples:
        >>> data = make_synthetic_yolo("datasets/synthetic-pose", "pose", n_train=64, n_val=16, imgsz=128)
        >>> data.name
        'data.yaml'
    """
    import yaml

    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    for name, value, low in (("n_train", n_train, 1), ("n_val", n_val, 1), ("imgsz", imgsz, 32)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name}={value!r} must be an int >= {low}")
    if max_objects < 1 or max_distractors < 0:
        raise ValueError(f"max_objects={max_objects} must be >= 1 and max_distractors={max_distractors} >= 0")
    out = Path(out).resolve()
    for split_index, (split, count) in enumerate(zip(SPLITS, (n_train, n_val), strict=True)):
        images, labels = out / "images" / split, out / "labels" / split
        for folder, suffix in ((images, ".jpg"), (labels, ".txt")):
            folder.mkdir(parents=True, exist_ok=True)
            for stale in folder.glob(f"*{suffix}"):
                stale.unlink()
        for index in range(count):
            rng = np.random.default_rng([seed, split_index, index])
            pixels, objects = _render(rng, index, imgsz, task, max_objects, max_distractors)
            ok, encoded = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
            if not ok:
                raise RuntimeError(f"OpenCV could not encode image {index} of {split} as JPEG")
            (images / f"{index:06d}.jpg").write_bytes(encoded.tobytes())
            lines = [line for cls, mask in objects if (line := label_line(task, cls, mask)) is not None]
            (labels / f"{index:06d}.txt").write_text("".join(f"{line}\n" for line in lines))
    spec: dict = {"path": str(out), "train": "images/train", "val": "images/val", "names": dict(enumerate(NAMES))}
    if task == "pose":
        spec |= {"kpt_shape": list(KPT_SHAPE), "flip_idx": list(FLIP_IDX)}
    data = out / "data.yaml"
    data.write_text(yaml.safe_dump(spec, sort_keys=False))
    return data
