"""The ``yolo-attn`` command: Ultralytics' ``yolo`` grammar with the attention blocks registered, plus our verbs.

Examples:
    yolo-attn train model=model_yamls/yolov8n-cbam.yaml data=coco8.yaml epochs=100 imgsz=640
    yolo-attn predict model=runs/detect/train/weights/best.pt source=images/
    yolo-attn subset --coco /data/coco --classes person,car,dog --train 5000 --val 500 --seed 0 --out subsets/pcd
    yolo-attn eval --weights runs/detect/train/weights/best.pt --data subsets/pcd/data.yaml
    yolo-attn compare --data subsets/pcd/data.yaml --models yolov8n.yaml model_yamls/yolov8n-cbam.yaml --seeds 0 1 2
    yolo-attn visualize --weights runs/detect/train/weights/best.pt --source images/
    yolo-attn demo

Anything that is not one of our verbs goes to ``ultralytics.cfg.entrypoint`` unchanged, so ``train``, ``val``,
``predict``, ``export``, ``settings`` and every ``key=value`` behave exactly as with ``yolo``. It runs offline by
default (``YOLO_OFFLINE=1``, ``YOLO_AUTOINSTALL=0`` unless you set them, and a local font), see ``yolo_attn.offline``.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from yolo_attn.offline import apply_offline_env, install_local_font

VERBS = ("subset", "eval", "compare", "profile", "visualize", "demo")
KEY_VALUE = re.compile(r"^[A-Za-z_]\w*=")


def main(argv: Sequence[str] | None = None) -> None:
    """Run the ``yolo-attn`` command line.

    Args:
        argv (Sequence[str] | None): Arguments after the program name; defaults to ``sys.argv[1:]``.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    apply_offline_env()  # no-op for variables already set (by the user, or on import by the console script)
    import yolo_attn  # noqa: F401  (registers the blocks)

    install_local_font()
    if argv and argv[0] in VERBS:
        parser = build_parser()
        args, overrides = parse_verb(parser, argv)
        args.run(args, overrides)
        return
    if not argv or argv[0] in {"-h", "--help", "help"}:
        build_parser().print_help()
        argv = ["help"]
    from ultralytics.cfg import entrypoint

    sys.argv[:] = ["yolo", *argv]  # in place: Ultralytics captured this very list as its ARGV
    entrypoint()


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of our verbs (the ``yolo`` grammar is parsed by Ultralytics itself)."""
    parser = argparse.ArgumentParser(
        prog="yolo-attn",
        description="Ultralytics YOLO with attention blocks. Every `yolo` command works here "
        "(yolo-attn train|val|predict|export|settings key=value ...), plus these verbs:",
    )
    verbs = parser.add_subparsers(dest="verb", metavar="{" + ",".join(VERBS) + "}")

    p = verbs.add_parser("subset", help="build a YOLO data set + COCO ground truth from a COCO subset")
    p.add_argument("--coco", type=Path, required=True, help="COCO root with annotations/ and train2017/ val2017/")
    p.add_argument("--classes", type=_csv, default=None, help="comma-separated category names (default: all)")
    p.add_argument("--train", type=_count, required=True, help="number of training images, or 'all'")
    p.add_argument("--val", type=_count, required=True, help="number of validation images, or 'all'")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True, help="output folder (data.yaml is written there)")
    _runs(p, _run_subset)

    p = verbs.add_parser("eval", help="COCO mAP (pycocotools) of a trained model on a subset's val images")
    p.add_argument("--weights", required=True)
    p.add_argument("--data", required=True, help="data.yaml written by `yolo-attn subset`")
    _add_run_options(p)
    p.add_argument("--conf", type=float, default=0.001)
    p.add_argument("--iou", type=float, default=0.7)
    p.add_argument("--out", type=Path, default=None, help="where to write detections and metrics JSON")
    _runs(p, _run_eval)

    p = verbs.add_parser("compare", help="train and evaluate models x seeds; tables and a plot (key=value passes on)")
    p.add_argument("--data", required=True)
    p.add_argument("--models", nargs="+", required=True, help="model YAMLs or weights; the first is the baseline")
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--epochs", type=int, default=100)
    _add_run_options(p)
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output folder (default: a new runs/compare/exp*); pass an interrupted comparison's folder to resume it",
    )
    p.add_argument("--latency-runs", type=int, default=50, help="timed batch-1 passes per model (0: skip)")
    _runs(p, _run_compare, takes_overrides=True)

    p = verbs.add_parser(
        "profile", help="params, GFLOPs and batch-1 CPU latency of models against the first (paired shuffled rounds)"
    )
    p.add_argument("--models", nargs="+", required=True, help="model YAMLs or weights; the first is the baseline")
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("--runtime", default="torch", choices=("torch", "onnxruntime"), help="PyTorch eager or ONNX Runtime")
    p.add_argument("--rounds", type=int, default=60, help="timed rounds, each running every model once, shuffled")
    p.add_argument("--warmup", type=int, default=5, help="untimed runs of each model first")
    p.add_argument("--threads", type=int, default=2, help="CPU threads (0: keep the current setting)")
    _runs(p, _run_profile)

    p = verbs.add_parser("visualize", help="attention maps of every block, overlaid on images (PNG grids)")
    p.add_argument("--weights", required=True, help="best.pt, or a model YAML (untrained)")
    p.add_argument("--source", type=Path, required=True, help="an image or a folder of images")
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: a new runs/visualize/exp*)")
    _runs(p, _run_visualize)

    p = verbs.add_parser("demo", help="the whole pipeline on embedded synthetic data, CPU, no downloads")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output folder (default: a new runs/demo/exp*); pass an interrupted demo's folder to resume it",
    )
    _runs(p, _run_demo)
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
    from ultralytics.cfg import smart_value

    pairs = [a for a in argv if KEY_VALUE.match(a)]
    args = parser.parse_args([a for a in argv if not KEY_VALUE.match(a)])
    if pairs and not args.takes_overrides:
        parser.error(f"{args.verb} takes no key=value settings: {' '.join(pairs)}")
    return args, {k: smart_value(v) for k, v in (a.split("=", 1) for a in pairs)}


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--device", default=None, help="cpu, 0, or 0,1,2,3 (Ultralytics syntax)")
    p.add_argument("--backend", default="pycocotools", choices=("pycocotools", "faster-coco-eval"))


def _runs(p: argparse.ArgumentParser, run: Callable, takes_overrides: bool = False) -> None:
    p.set_defaults(run=run, takes_overrides=takes_overrides)


def _count(text: str) -> int | None:
    """An image count; ``all`` (None) takes every image that qualifies."""
    return None if text == "all" else int(text)


def _csv(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def _run_subset(args: argparse.Namespace, overrides: dict) -> None:
    from yolo_attn.data.subset import build_subset

    data = build_subset(args.coco, args.classes, args.train, args.val, args.seed, args.out)
    print(f"Subset written: {data}")


def _run_eval(args: argparse.Namespace, overrides: dict) -> None:
    from yolo_attn.evaluation.coco_eval import evaluate, format_metrics

    metrics = evaluate(
        args.weights,
        args.data,
        imgsz=args.imgsz,
        batch=args.batch,
        device=args.device,
        conf=args.conf,
        iou=args.iou,
        backend=args.backend,
        out=args.out,
    )
    print(format_metrics(metrics))


def _run_compare(args: argparse.Namespace, overrides: dict) -> None:
    from yolo_attn.experiments.compare import compare

    out = compare(
        args.data,
        args.models,
        args.seeds,
        args.epochs,
        imgsz=args.imgsz,
        batch=args.batch,
        device=args.device,
        out=args.out,
        train_overrides=overrides,
        backend=args.backend,
        latency_runs=args.latency_runs,
    )
    print((out / "compare.md").read_text())
    print(f"Comparison written to {out}")


def _run_profile(args: argparse.Namespace, overrides: dict) -> None:
    from yolo_attn.profiling.runtime import runtime_costs, runtime_table

    rows = runtime_costs(
        args.models, args.imgsz, args.runtime, rounds=args.rounds, warmup=args.warmup, threads=args.threads or None
    )
    print(runtime_table(rows))


def _run_visualize(args: argparse.Namespace, overrides: dict) -> None:
    from yolo_attn.visualize import attention_maps

    for path in attention_maps(args.weights, args.source, imgsz=args.imgsz, out=args.out, device=args.device):
        print(path)


def _run_demo(args: argparse.Namespace, overrides: dict) -> None:
    from yolo_attn.demo import run_demo

    run_demo(args.out)


if __name__ == "__main__":
    main()
