"""A tiny YOLO data set written on the fly: the tests never download one."""

from __future__ import annotations

from pathlib import Path


def write_tiny_yolo_dataset(root: Path, n_train: int = 8, n_val: int = 4, imgsz: int = 64) -> Path:
    """Write a tiny two-class YOLO data set of coloured rectangles on noise and return its data.yaml.

    Args:
        root (Path): Folder to write into.
        n_train (int): Training images.
        n_val (int): Validation images.
        imgsz (int): Image side in pixels.

    Returns:
        (Path): The data.yaml path.
    """
    import cv2
    import numpy as np
    import yaml

    rng = np.random.default_rng(0)
    for split, count in (("train", n_train), ("val", n_val)):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        for k in range(count):
            image = rng.integers(0, 80, (imgsz, imgsz, 3), dtype=np.uint8)
            lines = []
            for cls in (0, 1):
                w, h = rng.integers(imgsz // 5, imgsz // 2, 2)
                x0, y0 = rng.integers(0, imgsz - w), rng.integers(0, imgsz - h)
                colour = (0, 0, 255) if cls == 0 else (255, 255, 0)
                cv2.rectangle(image, (int(x0), int(y0)), (int(x0 + w), int(y0 + h)), colour, -1)
                cx, cy = (x0 + w / 2) / imgsz, (y0 + h / 2) / imgsz
                lines.append(f"{cls} {cx:.6f} {cy:.6f} {w / imgsz:.6f} {h / imgsz:.6f}")
            cv2.imwrite(str(root / "images" / split / f"{k:03d}.jpg"), image)
            (root / "labels" / split / f"{k:03d}.txt").write_text("\n".join(lines) + "\n")
    data = root / "data.yaml"
    spec = {"path": str(root), "train": "images/train", "val": "images/val", "names": {0: "red", 1: "cyan"}}
    data.write_text(yaml.safe_dump(spec, sort_keys=False))
    return data
