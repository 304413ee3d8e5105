"""A small, deterministic image-classification set in ImageFolder layout, where location and context matter.

Each image shows the cluttered, textured background of the synthetic detection set (`yolo_attn.data.synthetic`), ONE
small object of its class somewhere, and 1-3 distractors: the unlabelled look-alikes of the classes, which differ
from the real objects only by context, orientation or a detail (a disc without its pole, a ring with a gap, a plus
turned into an X, vertical instead of horizontal stripes). The class is the kind of the one real object, so a
classifier has to find the small object that decides it among look-alikes and clutter: the case for attention.

| class     | the real object                 | a look-alike (distractor)     |
| --------- | ------------------------------- | ----------------------------- |
| ``cross`` | an upright plus sign            | the same sign turned 45 deg   |
| ``ring``  | a closed annulus                | an annulus with a gap         |
| ``sign``  | a disc standing on a pole       | the same disc without a pole  |
| ``stripes`` | a square, horizontal stripes  | the same square, vertical     |

Layout written (what Ultralytics' classify task and torchvision's ImageFolder read)::

    out/train/cross/00000.png ...   out/train/ring/...   out/train/sign/...   out/train/stripes/...
    out/val/cross/00000.png ...

Classes are balanced (image ``i`` of a split has class ``i % 4``). Every image is drawn from its own
``numpy.random.Generator`` seeded with ``(seed, split, index)``, and written as PNG, so the same arguments give
byte-identical files.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from yolo_attn.data.synthetic import _background, _draw_object, _place, _random_color

CLASSES: tuple[str, ...] = ("cross", "ring", "sign", "stripes")
SPLITS: tuple[str, ...] = ("train", "val")


def render_cls_image(rng: np.random.Generator, label: int, size: int, max_distractors: int = 3) -> np.ndarray:
    """Draw one image of class ``CLASSES[label]``: background, one real object, up to max_distractors look-alikes.

    Args:
        rng (np.random.Generator): The image's random generator.
        label (int): Class index into ``CLASSES``.
        size (int): Image side in pixels.
        max_distractors (int): Most look-alikes per image (1..max_distractors are tried; one that finds no room
            among the others is left out).

    Returns:
        (np.ndarray): A (size, size, 3) uint8 BGR image.
    """
    image = _background(rng, size)
    lo, hi = math.log(max(4.0, 0.11 * size)), math.log(0.2 * size)  # small objects: half-side 11-20% of the side
    taken: list = []
    n_distractors = int(rng.integers(min(1, max_distractors), max_distractors + 1))
    # The real object first, on the empty canvas, so it always fits; objects never overlap, so none hides another.
    plan = [(False, CLASSES[label])] + [(True, CLASSES[int(rng.integers(len(CLASSES)))]) for _ in range(n_distractors)]
    for distractor, name in plan:
        r = round(math.exp(rng.uniform(lo, hi)))
        boxes = _place(rng, size, r, taken, max_overlap=0.0, pole=name == "sign" and not distractor)
        if not boxes:
            if not distractor:
                raise RuntimeError(f"no room for the {name} object in a {size}px image; use a larger size")
            continue  # a distractor that finds no room is left out
        taken.extend(boxes)
        box = boxes[0]
        _draw_object(image, name, int(box.x + r), int(box.y + r), r, _random_color(rng, 30, 256), distractor)
    return image


def make_synthetic_cls(
    out: str | Path, n_train: int = 160, n_val: int = 80, imgsz: int = 64, seed: int = 0, *, max_distractors: int = 3
) -> Path:
    """Write the synthetic classification set (see the module docstring) and return its root.

    PNG files of an earlier, larger run in ``out/{train,val}/<class>/`` that these arguments would not write are
    deleted, so the folder matches the arguments.

    Args:
        out (str | Path): Output folder (created if missing); pass it as ``data=`` to Ultralytics' classify task.
        n_train (int): Training images (a multiple of 4 keeps the classes exactly balanced).
        n_val (int): Validation images.
        imgsz (int): Image side in pixels, at least 48.
        seed (int): Seed; the same arguments give byte-identical files.
        max_distractors (int): Most look-alikes per image (0 for none).

    Returns:
        (Path): ``out``, with ``train/`` and ``val/`` ImageFolder trees.

    Examples:
        >>> root = make_synthetic_cls("datasets/synthetic-cls", n_train=160, n_val=80, imgsz=64)
        >>> sorted(p.name for p in (root / "val").iterdir())
        ['cross', 'ring', 'sign', 'stripes']
    """
    for name, value, low in (("n_train", n_train, 1), ("n_val", n_val, 1), ("imgsz", imgsz, 48)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"make_synthetic_cls: {name}={value!r} must be an int >= {low}")
    if max_distractors < 0:
        raise ValueError(f"make_synthetic_cls: max_distractors={max_distractors} must be >= 0")
    out = Path(out)
    for split_index, (split, count) in enumerate(zip(SPLITS, (n_train, n_val), strict=True)):
        written = set()
        for index in range(count):
            label = index % len(CLASSES)
            rng = np.random.default_rng([seed, split_index, index])
            path = out / split / CLASSES[label] / f"{index:05d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            ok, encoded = cv2.imencode(".png", render_cls_image(rng, label, imgsz, max_distractors))
            if not ok:
                raise RuntimeError(f"OpenCV could not encode {path} as PNG")
            path.write_bytes(encoded.tobytes())
            written.add(path)
        for stale in (out / split).glob("*/[0-9][0-9][0-9][0-9][0-9].png"):
            if stale not in written:
                stale.unlink()
    return out
