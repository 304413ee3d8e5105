"""``yolo-attn migrate``: a fork's model YAML (cv-attention, YOLOAir, tasks.py forks) rewritten into yolo_attn rows."""

from __future__ import annotations

import argparse
from pathlib import Path

VERB = "migrate"
TAKES_OVERRIDES = False


def add_parser(verbs: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``migrate`` parser to ``verbs`` and return it."""
    p = verbs.add_parser(
        VERB,
        help="rewrite a fork's YOLOv8/YOLO11 YAML (cv-attention, YOLOAir, tasks.py forks) into yolo_attn rows",
        description="Drop the channel-count first args of attention rows (unscaled or scaled, as the forks write "
        "them), map fork class names to ours (SEAttention -> SE, CoordAttention -> CoordAtt, ...), print each "
        "change. A row that cannot be mapped is refused with its reason: exit status 1, nothing written.",
    )
    p.add_argument("src", type=Path, help="the fork's model YAML")
    p.add_argument("-o", "--out", type=Path, default=None, help="output file (default: {src stem}-migrated.yaml)")
    return p


def run(args: argparse.Namespace, overrides: dict) -> None:
    """Write the migrated YAML; exit status 1 naming the row that cannot be mapped."""
    from yolo_attn.cfg.migrate import MigrationError, migrate_file

    try:
        out = migrate_file(args.src, args.out)
    except MigrationError as e:
        raise SystemExit(f"yolo-attn migrate {args.src}: {e}\nNothing written.") from None
    print(f"Wrote {out}")
