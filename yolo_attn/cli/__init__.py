"""The ``yolo-attn`` command: Ultralytics' ``yolo`` grammar with the attention blocks registered, plus our verbs.

Examples:
    yolo-attn train model=model_yamls/yolov8n-cbam.yaml data=coco8.yaml epochs=100 imgsz=640
    yolo-attn predict model=runs/detect/train/weights/best.pt source=images/
    yolo-attn subset --coco /data/coco --classes person,car,dog --train 5000 --val 500 --seed 0 --out subsets/pcd
    yolo-attn eval --weights runs/detect/train/weights/best.pt --data subsets/pcd/data.yaml
    yolo-attn compare --data subsets/pcd/data.yaml --models yolov8n.yaml model_yamls/yolov8n-cbam.yaml --seeds 0 1 2
    yolo-attn visualize --weights runs/detect/train/weights/best.pt --source images/
    yolo-attn demo
    yolo-attn check-block CBAM r=8          # or mypkg.attn:SimAM; the block contract, non-zero exit on a failure
    yolo-attn train model=yolo11n-cbam.yaml data=coco8.yaml  # {family}{scale}[-{task}]-{block}.yaml: any block
    yolo-attn yaml yolo11n-seg CBAM 8 k=3   # writes yolo11n-seg-cbam.yaml (CBAM [8, 3] at the standard sites)
    yolo-attn yaml yolo11n-pose --block EMA --at p4 p5 -o yolo11n-pose-ema-p45.yaml  # named sites
    yolo-attn migrate fork/yolov8-se.yaml   # a fork's rows -> ours (channel args dropped, names mapped)

Anything that is not one of our verbs goes to ``ultralytics.cfg.entrypoint`` unchanged, so ``train``, ``val``,
``predict``, ``export``, ``settings`` and every ``key=value`` behave exactly as with ``yolo``; ``train`` also takes the
fine-tuning protocol's ``attn_*=value`` settings (`yolo_attn.finetune.protocol`), which are kept from Ultralytics.
It runs offline by default (``YOLO_OFFLINE=1``, ``YOLO_AUTOINSTALL=0`` unless you set them, and a local font), see
``yolo_attn.utils.offline``.

Each of our verbs is one module of this package (`VERBS`): ``VERB`` (its name), ``TAKES_OVERRIDES`` (whether it takes
``key=value`` tokens), ``add_parser(verbs)`` and ``run(args, overrides)``. A verb module imports what it runs inside
``run`` (and ``compare``'s parser its settings inside ``add_parser``): every ``yolo-attn`` command imports all verb
modules, and ``--help`` or ``train`` should not pay for loading the comparison, profiling (torch's FLOP counter
loads triton), demo and visualization modules. Ultralytics and torch are loaded by ``import yolo_attn`` anyway.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from types import ModuleType

from ultralytics.cfg import entrypoint, smart_value

from yolo_attn.cli import check_block, compare, demo, evaluate, migrate, profile, subset, visualize, yaml
from yolo_attn.finetune.protocol import install_default, split_protocol
from yolo_attn.utils.offline import apply_offline_env, install_local_font

VERBS: dict[str, ModuleType] = {
    module.VERB: module for module in (subset, evaluate, compare, profile, visualize, demo, check_block, yaml, migrate)
}
KEY_VALUE = re.compile(r"^[A-Za-z_]\w*=")
KEY_VALUE_OPTIONS = {"--slurm"}  # options whose own value is key=value text (not an Ultralytics setting)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the ``yolo-attn`` command line.

    Args:
        argv (Sequence[str] | None): Arguments after the program name; defaults to ``sys.argv[1:]``.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    apply_offline_env()  # no-op for variables already set (by the user, or on import by the console script)
    install_local_font()  # the blocks are registered: importing this module imported the yolo_attn package
    if argv and argv[0] in VERBS:
        args, overrides = parse_verb(build_parser(), argv)
        args.run(args, overrides)
        return
    if not argv or argv[0] in {"-h", "--help", "help"}:
        build_parser().print_help()
        argv = ["help"]
    argv = take_protocol(argv)
    sys.argv[:] = ["yolo", *argv]  # in place: Ultralytics captured this very list as its ARGV
    entrypoint()


def take_protocol(argv: list[str]) -> list[str]:
    """Take the fine-tuning protocol's ``attn_*=value`` settings out of a ``yolo`` command and apply them to training.

    ``yolo-attn train`` (``yolo-attn detect train`` ...) trains new attention blocks with the default protocol of
    `yolo_attn.finetune.protocol`, changed by any ``attn_*`` setting given (installed as Ultralytics default callbacks
    for this process); Ultralytics never sees those keys. Other modes take no ``attn_*`` setting.

    Args:
        argv (list[str]): The command's arguments.

    Returns:
        (list[str]): The arguments for Ultralytics' own entry point.
    """
    mine = [a for a in argv if a.startswith("attn_") and "=" in a]
    if "train" not in argv:
        if mine:
            raise SystemExit(f"{' '.join(mine)}: attn_* settings (the fine-tuning protocol) are for train only")
        return argv
    protocol, _ = split_protocol({k: smart_value(v) for k, v in (a.split("=", 1) for a in mine)})
    install_default(protocol)
    install_engagement_summary()
    return [a for a in argv if a not in mine]


def install_engagement_summary() -> None:
    """Print each new attention block's engagement at the end of ``yolo-attn train`` (`print_at_train_end`)."""
    from ultralytics.utils.callbacks import base

    from yolo_attn.finetune.engagement import print_at_train_end

    base.default_callbacks.setdefault("on_train_end", []).append(print_at_train_end)


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of our verbs, one subparser per module of `VERBS` (Ultralytics parses the ``yolo`` grammar)."""
    parser = argparse.ArgumentParser(
        prog="yolo-attn",
        description="Ultralytics YOLO with attention blocks. Every `yolo` command works here "
        "(yolo-attn train|val|predict|export|settings key=value ...), plus these verbs:",
    )
    verbs = parser.add_subparsers(dest="verb", metavar="{" + ",".join(VERBS) + "}")
    for module in VERBS.values():
        module.add_parser(verbs).set_defaults(run=module.run, takes_overrides=module.TAKES_OVERRIDES)
    return parser


def parse_verb(parser: argparse.ArgumentParser, argv: list[str]) -> tuple[argparse.Namespace, dict]:
    """Parse one of our verbs; Ultralytics-style ``key=value`` tokens may stand anywhere and are returned apart.

    Args:
        parser (argparse.ArgumentParser): The parser from :func:`build_parser`.
        argv (list[str]): Arguments, starting with the verb.

    Returns:
        args (argparse.Namespace): The verb's options, with ``run`` the function that carries it out.
        overrides (dict): ``key=value`` settings with values typed as Ultralytics types them.
    """
    # A key=value token is an Ultralytics setting, unless it is the value of an option that takes key=value text.
    after = [None, *argv[:-1]]
    is_pair = [bool(KEY_VALUE.match(a)) and b not in KEY_VALUE_OPTIONS for a, b in zip(argv, after, strict=True)]
    pairs = [a for a, pair in zip(argv, is_pair, strict=True) if pair]
    args = parser.parse_args([a for a, pair in zip(argv, is_pair, strict=True) if not pair])
    if pairs and not args.takes_overrides:
        parser.error(f"{args.verb} takes no key=value settings: {' '.join(pairs)}")
    return args, {k: smart_value(v) for k, v in (a.split("=", 1) for a in pairs)}
