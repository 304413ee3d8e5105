"""A small, deterministic, COCO-format detection data set drawn on the fly.

It stands in for COCO in tests and demos (no download, trains on 2 CPU cores in minutes) yet exercises everything the
real data set does: non-contiguous category ids, crowd boxes, images without annotations, objects from tiny to large.
The task is chosen so that attention has something to do: cluttered textured backgrounds, and for every class an
unlabelled distractor that differs from it only by context, orientation or a detail:

| class (id)      | labelled object                              | unlabelled distractor                  |
| --------------- | -------------------------------------------- | -------------------------------------- |
| ``sign`` (3)    | a disc standing on a pole (box: disc only)   | the same disc without a pole (context) |
| ``ring`` (7)    | a closed annulus                             | an annulus with a gap (detail)         |
| ``cross`` (12)  | an upright plus sign                         | the same sign turned 45 degrees        |
| ``stripes`` (20) | a square with horizontal stripes            | the same square, vertical stripes      |

Layout written (standard COCO 2017 names)::

    out/annotations/instances_train2017.json
    out/annotations/instances_val2017.json
    out/train2017/000000000001.jpg ...
    out/val2017/000000000097.jpg ...

Every image is drawn from its own ``numpy.random.Generator`` seeded with ``(seed, split, index)``, so the same arguments
give byte-identical files, and adding images never changes the existing ones.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

CATEGORIES: tuple[dict[str, int | str], ...] = (
    {"id": 3, "name": "sign", "supercategory": "context"},
    {"id": 7, "name": "ring", "supercategory": "shape"},
    {"id": 12, "name": "cross", "supercategory": "orientation"},
    {"id": 20, "name": "stripes", "supercategory": "texture"},
)
SPLITS: tuple[str, ...] = ("train2017", "val2017")
EMPTY_EVERY, EMPTY_OFFSET = 8, 5  # image i has no labelled object when i % 8 == 5
CROWD_EVERY, CROWD_OFFSET = 8, 2  # image i holds a crowd of rings (one iscrowd=1 box) when i % 8 == 2
_OUR_IMAGE = re.compile(r"^\d{12}\.jpg$")


@dataclass(frozen=True)
class _Box:
    """An axis-aligned box in pixels: top-left corner (x, y), width w and height h."""

    x: float
    y: float
    w: float
    h: float

    def overlap_fraction(self, other: _Box) -> float:
        """Return the intersection area divided by the smaller box's area (0 when disjoint)."""
        iw = min(self.x + self.w, other.x + other.w) - max(self.x, other.x)
        ih = min(self.y + self.h, other.y + other.h) - max(self.y, other.y)
        if iw <= 0 or ih <= 0:
            return 0.0
        return iw * ih / min(self.w * self.h, other.w * other.h)


def _random_color(rng: np.random.Generator, low: int = 0, high: int = 256) -> tuple[int, int, int]:
    """Return a random BGR colour with each channel in [low, high)."""
    return tuple(int(c) for c in rng.integers(low, high, size=3))


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Draw a cluttered, textured background.

    Low-frequency colour noise, fine grain, and random strokes and blobs smaller than most objects.

    Args:
        rng (np.random.Generator): The image's random generator.
        size (int): Image side in pixels.

    Returns:
        (np.ndarray): A (size, size, 3) uint8 BGR image.
    """
    coarse = rng.uniform(40, 215, size=(6, 6, 3)).astype(np.float32)
    image = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    image += rng.normal(0.0, 14.0, size=(size, size, 3)).astype(np.float32)
    image = np.clip(image, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(6, 16))):  # strokes
        p1 = tuple(int(v) for v in rng.integers(0, size, size=2))
        p2 = tuple(int(v) for v in rng.integers(0, size, size=2))
        cv2.line(image, p1, p2, _random_color(rng), int(rng.integers(1, 3)), cv2.LINE_AA)
    for _ in range(int(rng.integers(4, 12))):  # blobs
        center = tuple(int(v) for v in rng.integers(0, size, size=2))
        axes = tuple(int(v) for v in rng.integers(1, max(2, size // 24), size=2))
        angle = float(rng.uniform(0, 180))
        cv2.ellipse(image, center, axes, angle, 0, 360, _random_color(rng), -1, cv2.LINE_AA)
    return image


def _draw_disc(image: np.ndarray, cx: int, cy: int, r: int, color: tuple[int, int, int]) -> None:
    """Draw a filled disc with a dark rim."""
    cv2.circle(image, (cx, cy), r, color, -1, cv2.LINE_AA)
    cv2.circle(image, (cx, cy), r, (20, 20, 20), max(1, r // 8), cv2.LINE_AA)


def _draw_sign(image: np.ndarray, cx: int, cy: int, r: int, color: tuple[int, int, int], pole: bool) -> None:
    """Draw a disc, standing on a pole down to the image bottom when ``pole`` is True."""
    if pole:
        box = _pole_box(cx, cy, r, image.shape[0])
        cv2.rectangle(image, (int(box.x), int(box.y)), (int(box.x + box.w - 1), image.shape[0] - 1), (35, 55, 75), -1)
    _draw_disc(image, cx, cy, r, color)


def _draw_ring(image: np.ndarray, cx: int, cy: int, r: int, color: tuple[int, int, int], gap: bool) -> None:
    """Draw an annulus of outer radius r; ``gap`` leaves a 70-degree opening."""
    thickness = max(2, r // 3)
    radius = max(1, r - thickness // 2)
    start, end = (35, 325) if gap else (0, 360)
    cv2.ellipse(image, (cx, cy), (radius, radius), 0, start, end, color, thickness, cv2.LINE_AA)


def _draw_cross(image: np.ndarray, cx: int, cy: int, r: int, color: tuple[int, int, int], turned: bool) -> None:
    """Draw a plus sign with arms of length r; ``turned`` rotates it 45 degrees (an X)."""
    half_width = max(1.0, r / 4)
    arm = np.array([[-r, -half_width], [r, -half_width], [r, half_width], [-r, half_width]], dtype=np.float64)
    angle = math.pi / 4 if turned else 0.0
    for theta in (angle, angle + math.pi / 2):
        rotation = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
        corners = arm @ rotation.T + (cx, cy)
        cv2.fillPoly(image, [np.round(corners).astype(np.int32)], color, cv2.LINE_AA)


def _draw_stripes(image: np.ndarray, cx: int, cy: int, r: int, color: tuple[int, int, int], vertical: bool) -> None:
    """Draw a square of half-side r with alternating stripes, horizontal unless ``vertical``."""
    x0, y0, x1, y1 = cx - r, cy - r, cx + r, cy + r
    cv2.rectangle(image, (x0, y0), (x1, y1), (235, 235, 235), -1)
    period = max(2, (2 * r) // 6)
    for offset in range(0, 2 * r + 1, 2 * period):
        if vertical:
            cv2.rectangle(image, (x0 + offset, y0), (min(x1, x0 + offset + period - 1), y1), color, -1)
        else:
            cv2.rectangle(image, (x0, y0 + offset), (x1, min(y1, y0 + offset + period - 1)), color, -1)


def _draw_object(image: np.ndarray, name: str, cx: int, cy: int, r: int, color: tuple, distractor: bool) -> None:
    """Draw one object of class ``name``, or its unlabelled look-alike when ``distractor`` is True."""
    if name == "sign":
        _draw_sign(image, cx, cy, r, color, pole=not distractor)
    elif name == "ring":
        _draw_ring(image, cx, cy, r, color, gap=distractor)
    elif name == "cross":
        _draw_cross(image, cx, cy, r, color, turned=distractor)
    else:
        _draw_stripes(image, cx, cy, r, color, vertical=distractor)


def _pole_box(cx: int, cy: int, r: int, size: int) -> _Box:
    """Return the box of a sign's pole: from the disc centre down to the image bottom."""
    half = max(1, r // 5)
    return _Box(cx - half, cy, 2 * half + 1, size - cy)


def _place(
    rng: np.random.Generator, size: int, r: int, taken: list[_Box], max_overlap: float, pole: bool = False
) -> list[_Box]:
    """Find room for an object of half-side r (and its pole) that overlaps no taken box by more than ``max_overlap``.

    Args:
        rng (np.random.Generator): The image's random generator.
        size (int): Image side in pixels.
        r (int): Half-side of the object's box.
        taken (list[_Box]): Boxes already occupied.
        max_overlap (float): Largest allowed intersection / smaller-box area with any taken box.
        pole (bool): Also reserve the sign's pole below the box.

    Returns:
        (list[_Box]): [object box] or [object box, pole box]; empty when 30 tries found no room.
    """
    for _ in range(30):
        cx, cy = (int(v) for v in rng.integers(r + 1, size - r - 1, size=2))
        boxes = [_Box(cx - r, cy - r, 2 * r, 2 * r)]
        if pole:
            boxes.append(_pole_box(cx, cy, r, size))
        if all(b.overlap_fraction(t) <= max_overlap for b in boxes for t in taken):
            return boxes
    return []


def _box_annotation(box: _Box, size: int, category_id: int, iscrowd: int) -> dict:
    """Return the COCO fields of a box annotation (clipped to the image, area = box area, box polygon)."""
    x0, y0 = max(0.0, box.x), max(0.0, box.y)
    x1, y1 = min(float(size), box.x + box.w), min(float(size), box.y + box.h)
    x0, y0, w, h = round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)
    return {
        "category_id": category_id,
        "bbox": [x0, y0, w, h],
        "area": round(w * h, 2),
        "iscrowd": iscrowd,
        "segmentation": [[x0, y0, x0 + w, y0, x0 + w, y0 + h, x0, y0 + h]],
    }


def _draw_crowd(image: np.ndarray, rng: np.random.Generator, taken: list[_Box]) -> _Box | None:
    """Draw a tight cluster of small rings and return the one box that covers it (None if no room)."""
    size = image.shape[0]
    placed = _place(rng, size, max(8, size // 7), taken, max_overlap=0.0)
    if not placed:
        return None
    region = placed[0]
    r = max(3, size // 40)
    xs, ys = [], []
    for _ in range(int(rng.integers(5, 10))):
        cx = int(rng.integers(region.x + r, region.x + region.w - r + 1))
        cy = int(rng.integers(region.y + r, region.y + region.h - r + 1))
        _draw_ring(image, cx, cy, r, _random_color(rng, 60, 256), gap=False)
        xs += [cx - r, cx + r]
        ys += [cy - r, cy + r]
    return _Box(min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys))


def _render_image(rng: np.random.Generator, index: int, size: int, max_objects: int, max_distractors: int):
    """Draw one image and return it with its annotations (without ids).

    Args:
        rng (np.random.Generator): The image's random generator.
        index (int): Index of the image in its split; fixes whether it is empty or holds a crowd.
        size (int): Image side in pixels.
        max_objects (int): Most labelled objects per image.
        max_distractors (int): Most unlabelled look-alikes per image.

    Returns:
        (tuple[np.ndarray, list[dict]]): The (size, size, 3) uint8 BGR image and its annotation dicts.
    """
    image = _background(rng, size)
    names = [str(c["name"]) for c in CATEGORIES]
    ids = {str(c["name"]): int(c["id"]) for c in CATEGORIES}
    empty = index % EMPTY_EVERY == EMPTY_OFFSET
    n_objects = 0 if empty else int(rng.integers(1, max_objects + 1))
    n_distractors = int(rng.integers(0 if not empty else 1, max_distractors + 1))
    # Draw distractors first so labelled objects are never hidden behind them.
    plan = [(True, names[int(rng.integers(len(names)))]) for _ in range(n_distractors)]
    plan += [(False, names[int(rng.integers(len(names)))]) for _ in range(n_objects)]
    taken: list[_Box] = []
    annotations = []
    if index % CROWD_EVERY == CROWD_OFFSET:
        crowd = _draw_crowd(image, rng, taken)
        if crowd is not None:
            taken.append(crowd)
            annotations.append(_box_annotation(crowd, size, ids["ring"], iscrowd=1))
    lo, hi = math.log(max(4.0, 0.04 * size)), math.log(0.38 * size)  # half-sizes: tiny to large, log-uniform
    for distractor, name in plan:
        r = round(math.exp(rng.uniform(lo, hi)))
        boxes = _place(rng, size, r, taken, max_overlap=0.15, pole=name == "sign" and not distractor)
        if not boxes:
            continue
        taken.extend(boxes)
        box = boxes[0]
        _draw_object(image, name, int(box.x + r), int(box.y + r), r, _random_color(rng, 30, 256), distractor)
        if not distractor:
            annotations.append(_box_annotation(box, size, ids[name], iscrowd=0))
    return image, annotations


def _write_json(path: Path, payload: dict) -> None:
    """Write JSON with sorted keys and fixed separators, so equal content gives equal bytes."""
    path.write_text(json.dumps(payload, sort_keys=True, separators=(",", ":")) + "\n", encoding="utf-8")


def make_synthetic_coco(
    out: str | Path,
    n_train: int = 96,
    n_val: int = 32,
    imgsz: int = 128,
    seed: int = 0,
    *,
    max_objects: int = 4,
    max_distractors: int = 3,
    jpeg_quality: int = 90,
) -> Path:
    """Write a synthetic COCO-format detection data set (see the module docstring for the task).

    Image ids run 1..n_train for train2017 and n_train+1..n_train+n_val for val2017; file names are the id with 12
    digits, as in COCO. Annotation ``area`` is the box area; ``segmentation`` is the box polygon. Every 8th image
    (index % 8 == 5) has no labelled object, and every 8th (index % 8 == 2) holds a crowd of small rings annotated as a
    single ``iscrowd=1`` box of category ``ring``. Existing files of this layout in ``out`` are replaced; ``*.jpg``
    files named like ours that a previous, larger run left behind are deleted so the folder matches the arguments.

    Args:
        out (str | Path): Output folder (created if missing).
        n_train (int): Number of training images.
        n_val (int): Number of validation images.
        imgsz (int): Image side in pixels (square images), at least 32.
        seed (int): Seed; the same arguments give byte-identical files.
        max_objects (int): Most labelled objects per image (at least 1).
        max_distractors (int): Most unlabelled look-alikes per image.
        jpeg_quality (int): JPEG quality, 1..100.

    Returns:
        (Path): ``out``, the data set root.

    Examples:
        >>> root = make_synthetic_coco("datasets/synthetic-coco", n_train=96, n_val=32, imgsz=128)
        >>> (root / "annotations" / "instances_val2017.json").exists()
        True
    """
    for name, value, low in (("n_train", n_train, 0), ("n_val", n_val, 0), ("imgsz", imgsz, 32)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name}={value!r} must be an int >= {low}")
    if max_objects < 1 or max_distractors < 0 or not 1 <= jpeg_quality <= 100:
        raise ValueError(
            f"max_objects={max_objects} must be >= 1, max_distractors={max_distractors} >= 0 and "
            f"jpeg_quality={jpeg_quality} in 1..100"
        )
    out = Path(out)
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    next_image_id, next_annotation_id = 1, 1
    for split_index, (split, count) in enumerate(zip(SPLITS, (n_train, n_val), strict=True)):
        folder = out / split
        folder.mkdir(exist_ok=True)
        for stale in folder.iterdir():
            if _OUR_IMAGE.match(stale.name):
                stale.unlink()
        images, annotations = [], []
        for index in range(count):
            rng = np.random.default_rng([seed, split_index, index])
            pixels, image_annotations = _render_image(rng, index, imgsz, max_objects, max_distractors)
            file_name = f"{next_image_id:012d}.jpg"
            ok, encoded = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
            if not ok:
                raise RuntimeError(f"OpenCV could not encode {file_name} as JPEG")
            (folder / file_name).write_bytes(encoded.tobytes())
            images.append({"id": next_image_id, "file_name": file_name, "height": imgsz, "width": imgsz})
            for annotation in image_annotations:
                annotations.append({"id": next_annotation_id, "image_id": next_image_id, **annotation})
                next_annotation_id += 1
            next_image_id += 1
        payload = {
            "info": {"description": f"yolo_attn synthetic COCO (seed={seed}, imgsz={imgsz})", "version": "1.0"},
            "licenses": [],
            "images": images,
            "annotations": annotations,
            "categories": [dict(c) for c in CATEGORIES],
        }
        _write_json(out / "annotations" / f"instances_{split}.json", payload)
    return out


def synthetic_detection_case(
    n_images: int = 5000, seed: int = 0, imgsz: int = 640, recall: float = 0.8
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Generate a COCO ground truth and matching noisy detections, boxes only (no pixels), for metric tests/benchmarks.

    Each image has 0-9 ground-truth boxes of the :data:`CATEGORIES`, sides log-uniform from 4 px to 60% of the image
    (so small, medium and large areas all occur), 3% of them crowd boxes. A box is detected with probability
    ``recall``, with position/size noise and a random score; 0-4 false positives per image are added, some with the
    wrong class.

    Args:
        n_images (int): Number of images.
        seed (int): Seed (``numpy.random.default_rng``).
        imgsz (int): Image side in pixels.
        recall (float): Probability that a ground-truth box gets a detection.

    Returns:
        (tuple[dict, list[dict]]): The ground-truth COCO dict and the COCO results list.
    """
    rng = np.random.default_rng(seed)
    category_ids = [int(c["id"]) for c in CATEGORIES]
    images, annotations, detections = [], [], []
    for image_id in range(1, n_images + 1):
        images.append({"id": image_id, "file_name": f"{image_id:012d}.jpg", "height": imgsz, "width": imgsz})
        for _ in range(int(rng.integers(0, 10))):
            w, h = np.exp(rng.uniform(math.log(4), math.log(0.6 * imgsz), size=2))
            x, y = rng.uniform(0, imgsz - w), rng.uniform(0, imgsz - h)
            category_id = category_ids[int(rng.integers(len(category_ids)))]
            bbox = [round(float(v), 2) for v in (x, y, w, h)]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": category_id,
                    "bbox": bbox,
                    "area": round(bbox[2] * bbox[3], 2),
                    "iscrowd": int(rng.random() < 0.03),
                }
            )
            if rng.random() < recall:
                noisy = (x + rng.normal(0, 0.06 * w), y + rng.normal(0, 0.06 * h), w * rng.uniform(0.85, 1.15),
                         h * rng.uniform(0.85, 1.15))  # fmt: skip
                detections.append(
                    {
                        "image_id": image_id,
                        "category_id": category_id,
                        "bbox": [round(float(v), 2) for v in noisy],
                        "score": round(float(rng.random()), 5),
                    }
                )
        for _ in range(int(rng.integers(0, 5))):
            w, h = np.exp(rng.uniform(math.log(4), math.log(0.5 * imgsz), size=2))
            x, y = rng.uniform(0, imgsz - w), rng.uniform(0, imgsz - h)
            detections.append(
                {
                    "image_id": image_id,
                    "category_id": category_ids[int(rng.integers(len(category_ids)))],
                    "bbox": [round(float(v), 2) for v in (x, y, w, h)],
                    "score": round(float(rng.random()) * 0.7, 5),
                }
            )
    gt = {"images": images, "annotations": annotations, "categories": [dict(c) for c in CATEGORIES]}
    return gt, detections
