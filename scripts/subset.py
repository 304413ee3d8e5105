"""Build a YOLO subset of a COCO-layout data set: python scripts/subset.py datasets/coco out --classes person car."""

from __future__ import annotations

import argparse
from pathlib import Path

from yolo_attn.data import build_subset


def count(text: str) -> int | None:
    """Parse an image count; 'all' means every candidate image."""
    return None if text == "all" else int(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("coco", type=Path, help="COCO root (annotations/, train2017/, val2017/)")
    parser.add_argument("out", type=Path, help="output folder (new, empty, or a previous subset)")
    parser.add_argument("--classes", nargs="+", default=None, help="category names (default: all)")
    parser.add_argument("--n-train", type=count, default=1000, help="training images, or 'all'")
    parser.add_argument("--n-val", type=count, default=250, help="validation images, or 'all'")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--copy", action="store_true", help="copy images instead of symlinking them")
    args = parser.parse_args()
    data_yaml = build_subset(
        args.coco, args.classes, args.n_train, args.n_val, args.seed, args.out, copy_images=args.copy
    )
    print(data_yaml)


if __name__ == "__main__":
    main()
