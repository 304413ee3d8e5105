"""``yolo-attn subset``: a YOLO data set and its COCO ground truth from a subset of COCO."""

from __future__ import annotations

import argparse
from pathlib import Path

VERB = "subset"
TAKES_OVERRIDES = False


def add_parser(verbs: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``subset`` parser to ``verbs`` and return it."""
    p = verbs.add_parser(VERB, help="build a YOLO data set + COCO ground truth from a COCO subset")
    p.add_argument("--coco", type=Path, required=True, help="COCO root with annotations/ and train2017/ val2017/")
    p.add_argument("--classes", type=csv_list, default=None, help="comma-separated category names (default: all)")
    p.add_argument("--train", type=count, required=True, help="number of training images, or 'all'")
    p.add_argument("--val", type=count, required=True, help="number of validation images, or 'all'")
    p.add_argument("--seed", type=int, default=0, help="seed of the image draw")
    p.add_argument("--out", type=Path, required=True, help="output folder (data.yaml is written there)")
    return p


def run(args: argparse.Namespace, overrides: dict) -> None:
    """Write the subset and print where its ``data.yaml`` is."""
    from yolo_attn.data.subset import build_subset

    data = build_subset(args.coco, args.classes, args.train, args.val, args.seed, args.out)
    print(f"Subset written: {data}")


def count(text: str) -> int | None:
    """An image count; ``all`` (None) takes every image that qualifies."""
    return None if text == "all" else int(text)


def csv_list(text: str) -> list[str]:
    """Comma-separated names, stripped, empty ones dropped."""
    return [name.strip() for name in text.split(",") if name.strip()]
