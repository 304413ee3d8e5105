"""``yolo-attn check-block``: a block against the contract every yolo_attn block passes, one row per property."""

from __future__ import annotations

import argparse

VERB = "check-block"
TAKES_OVERRIDES = True  # key=value: the block's constructor arguments


def add_parser(verbs: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``check-block`` parser to ``verbs`` and return it."""
    p = verbs.add_parser(
        VERB,
        help="the block contract (shape, YAML rows, errors, identity start, round trips, fuse, ONNX, transfer)",
        description="Check a block against the contract every yolo_attn block passes; one row per property, exit "
        "status 1 when one fails. key=value settings are the block's constructor arguments, e.g. r=8.",
    )
    p.add_argument("block", help="module:Class (imported, registered for the check) or a registered YAML name")
    p.add_argument("--compile", action="store_true", help="also check torch.compile (an inductor build: slow on CPU)")
    p.add_argument("--no-onnx", action="store_true", help="skip the ONNX export check")
    p.add_argument("--imgsz", type=int, default=320, help="image size of the yolov8n P3/P4/P5 shapes checked")
    return p


def run(args: argparse.Namespace, overrides: dict) -> None:
    """Print the contract table; exit status 1 when a property fails."""
    from yolo_attn.testing import check_block, resolve

    try:
        block = resolve(args.block)
    except ValueError as e:
        raise SystemExit(f"yolo-attn check-block: {e}") from None
    report = check_block(block, compile=args.compile, onnx=not args.no_onnx, imgsz=args.imgsz, **overrides)
    print(report.table())
    if not report.ok:
        raise SystemExit(1)
