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
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from yolo_attn.utils.offline import apply_offline_env, install_local_font

if TYPE_CHECKING:
    from yolo_attn.experiments.placement import PlacementGrid

VERBS = ("subset", "eval", "compare", "profile", "visualize", "demo", "check-block", "yaml", "migrate")
KEY_VALUE = re.compile(r"^[A-Za-z_]\w*=")
KEY_VALUE_OPTIONS = {"--slurm"}  # options whose own value is key=value text (not an Ultralytics setting)


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
    from ultralytics.cfg import smart_value

    from yolo_attn.finetune.protocol import install_default, split_protocol

    mine = [a for a in argv if a.startswith("attn_") and "=" in a]
    if "train" not in argv:
        if mine:
            raise SystemExit(f"{' '.join(mine)}: attn_* settings (the fine-tuning protocol) are for train only")
        return argv
    protocol, _ = split_protocol({k: smart_value(v) for k, v in (a.split("=", 1) for a in mine)})
    install_default(protocol)
    return [a for a in argv if a not in mine]


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of our verbs (the ``yolo`` grammar is parsed by Ultralytics itself)."""
    parser = argparse.ArgumentParser(
        prog="yolo-attn",
        description="Ultralytics YOLO with attention blocks. Every `yolo` command works here "
        "(yolo-attn train|val|predict|export|settings key=value ...), plus these verbs:",
    )
    from yolo_attn.experiments.tasks import TASKS

    verbs = parser.add_subparsers(dest="verb", metavar="{" + ",".join(VERBS) + "}")

    p = verbs.add_parser("subset", help="build a YOLO data set + COCO ground truth from a COCO subset")
    p.add_argument("--coco", type=Path, required=True, help="COCO root with annotations/ and train2017/ val2017/")
    p.add_argument("--classes", type=_csv, default=None, help="comma-separated category names (default: all)")
    p.add_argument("--train", type=_count, required=True, help="number of training images, or 'all'")
    p.add_argument("--val", type=_count, required=True, help="number of validation images, or 'all'")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True, help="output folder (data.yaml is written there)")
    _runs(p, _run_subset)

    p = verbs.add_parser(
        "eval",
        help="COCO mAP (pycocotools) of a detector, top-1/top-5 of a classifier, Ultralytics' validator mAP of a "
        "segment / pose / obb model (task read from --weights)",
    )
    p.add_argument("--weights", required=True)
    p.add_argument(
        "--data",
        required=True,
        help="detect: any YOLO-label data.yaml (COCO GT built when it has no coco_gt); classify: ImageFolder root; "
        "segment / pose / obb: the task's data.yaml",
    )
    _add_run_options(p)
    p.set_defaults(imgsz=None)  # the task's own default: 640 for detection, 224 for classification
    p.add_argument("--conf", type=float, default=0.001)
    p.add_argument("--iou", type=float, default=0.7)
    p.add_argument("--out", type=Path, default=None, help="where to write detections and metrics JSON")
    _runs(p, _run_eval)

    p = verbs.add_parser(
        "compare",
        help="train and evaluate models x seeds; tables and a plot (key=value passes on)",
        description="Train and evaluate models x seeds under identical settings, then report. Ultralytics key=value "
        "train settings pass on to every run. Scale out with --parallel (one run per GPU) or --executor slurm.",
    )
    p.add_argument(
        "--data", default=None, help="data.yaml, or for classify an ImageFolder root (required unless --report)"
    )
    p.add_argument("--models", nargs="+", default=None, help="model YAMLs or weights; the first is the baseline")
    p.add_argument(
        "--base",
        default=None,
        help="placement grid (instead of --models): the base model (yolo11n.yaml, yolo11n-seg, a YAML file), "
        "trained as the baseline and with each --blocks block at each --at site",
    )
    p.add_argument(
        "--blocks",
        nargs="+",
        default=None,
        metavar="BLOCK",
        help="placement grid: block names (SE CBAM EMA), or NAME:ARG,ARG,key=value for YAML args (CBAM:8,k=3)",
    )
    p.add_argument(
        "--at",
        nargs="+",
        default=None,
        metavar="SITE",
        help="placement grid: one variant per site (p3 p4 p5 sppf neck all, or a layer index); p4+p5 is one variant "
        "with the block at both",
    )
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--epochs", type=int, default=100)
    _add_run_options(p)
    p.set_defaults(imgsz=None)  # the task's own default: 640 for detection, 224 for classification
    p.add_argument(
        "--task",
        choices=tuple(TASKS),
        default=None,
        help="detect (COCO mAP), classify (top-1/top-5), segment (mask + box mAP), pose (pose + box mAP) or obb "
        "(rotated-box mAP); default: the first model's task. Every model must be of it",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output folder (default: a new runs/compare/exp*); pass an interrupted comparison's folder to resume it",
    )
    p.add_argument("--latency-runs", type=int, default=50, help="timed batch-1 passes per model (0: skip)")
    p.add_argument(
        "--pretrained",
        default=None,
        help="weights every model (baseline included) is fine-tuned from, e.g. yolov8n.pt (default: from scratch)",
    )
    p.add_argument(
        "--parallel",
        action="store_true",
        help="run cells side by side, one per --device GPU, each process seeing only its GPU (= --executor parallel)",
    )
    p.add_argument(
        "--executor",
        choices=("sequential", "parallel", "local", "slurm"),
        default=None,
        help="where cells run: in this process one after another (default), local processes (parallel), submitit's "
        "local executor (local) or a Slurm job array (slurm)",
    )
    p.add_argument(
        "--per-device", type=int, default=1, help="cells at once per device with --parallel / --executor local"
    )
    p.add_argument(
        "--slurm",
        action="append",
        default=None,
        metavar="KEY=VALUE,...",
        help="Slurm options for --executor slurm, e.g. partition=gpu,time=720,gpus_per_task=1,cpus_per_task=8,"
        "account=ACC,mem_gb=32; any other key passes to sbatch as is (reservation=r1)",
    )
    p.add_argument("--array-parallelism", type=int, default=None, help="most Slurm array tasks running at once")
    p.add_argument(
        "--no-wait",
        dest="wait",
        action="store_false",
        help="leave cells that another run of this folder is training to it and report what has finished; by "
        "default compare waits for them (and takes over the claim of one whose runner died)",
    )
    p.add_argument(
        "--runtime",
        choices=("torch", "onnxruntime"),
        default=None,
        help="also time the models in this runtime (CPU, --latency-runs paired shuffled rounds): a second table",
    )
    p.add_argument(
        "--report",
        action="store_true",
        help="only write the report of --out from the cells finished so far (any time, e.g. while Slurm jobs run)",
    )
    _runs(p, _run_compare, takes_overrides=True)

    p = verbs.add_parser(
        "profile", help="params, GFLOPs and batch-1 CPU latency of models against the first (paired shuffled rounds)"
    )
    p.add_argument("--models", nargs="+", default=None, help="model YAMLs or weights; the first is the baseline")
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument(
        "--update-headers",
        nargs="*",
        metavar="YAML",
        default=None,
        help="instead: rewrite the cost table (scale n vs the Ultralytics baseline, params and GFLOPs) in the header "
        "of these unscaled shipped YAMLs (none given: all of them) and print it",
    )
    p.add_argument("--runtime", default="torch", choices=("torch", "onnxruntime"), help="PyTorch eager or ONNX Runtime")
    p.add_argument("--rounds", type=int, default=60, help="timed rounds, each running every model once, shuffled")
    p.add_argument("--warmup", type=int, default=5, help="untimed runs of each model first")
    p.add_argument("--threads", type=int, default=2, help="CPU threads (0: keep the current setting)")
    p.add_argument("--device", default="cpu", help="cpu (paired rounds above), or a GPU such as 0 (torch runtime)")
    _runs(p, _run_profile)

    p = verbs.add_parser("visualize", help="attention maps of every block, overlaid on images (PNG grids)")
    p.add_argument("--weights", required=True, help="best.pt, or a model YAML (untrained)")
    p.add_argument("--source", type=Path, required=True, help="an image or a folder of images")
    p.add_argument("--imgsz", type=int, default=None, help="letterbox side (default 640; 224 for classifiers)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: a new runs/visualize/exp*)")
    p.add_argument(
        "--features",
        default=None,
        metavar="2,4,6",
        help="layer indices: strongest channels of each beside the attention maps (+ Grad-CAM for classifiers)",
    )
    _runs(p, _run_visualize)

    p = verbs.add_parser("demo", help="the whole pipeline on embedded synthetic data, CPU, no downloads")
    p.add_argument(
        "--task",
        choices=tuple(TASKS),
        default="detect",
        help="detect: YOLOv8n vs CBAM vs ECA on synthetic COCO; classify: yolov8n-cls vs SE vs CBAM; segment, pose, "
        "obb: yolov8n-{seg,pose,obb} vs CBAM vs ECA on synthetic polygons, keypoints, rotated boxes",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output folder (default: a new runs/demo/exp*); pass an interrupted demo's folder to resume it",
    )
    _runs(p, _run_demo)

    p = verbs.add_parser(
        "check-block",
        help="the block contract (shape, YAML rows, errors, identity start, round trips, fuse, ONNX, transfer)",
        description="Check a block against the contract every yolo_attn block passes; one row per property, exit "
        "status 1 when one fails. key=value settings are the block's constructor arguments, e.g. r=8.",
    )
    p.add_argument("block", help="module:Class (imported, registered for the check) or a registered YAML name")
    p.add_argument("--compile", action="store_true", help="also check torch.compile (an inductor build: slow on CPU)")
    p.add_argument("--no-onnx", action="store_true", help="skip the ONNX export check")
    p.add_argument("--imgsz", type=int, default=320, help="image size of the yolov8n P3/P4/P5 shapes checked")
    _runs(p, _run_check_block, takes_overrides=True)

    p = verbs.add_parser(
        "yaml",
        help="write a model YAML to edit: a base with a block at named sites (--at p4 p5) or the standard sites",
        description="Write BASE with a block at --at (named sites of the base: p3 p4 p5 (end of each backbone "
        "stage), sppf, neck (each head input), all; or layer indices; separate words or joined by , or +) or at the "
        "standard sites (yolo_attn.cfg.sites), every later `from` renumbered, and print the rows added. BASE: yolo11n, "
        "yolov8s-seg, yolo26 (family, optional scale and task), any Ultralytics model YAML name (yolov8-p2, yolov9t, "
        "yolo12n-pose), or a YAML file. The block: --block NAME [ARG ...] or the word after BASE; a registered name "
        "or alias, case-insensitive. ARG ... and key=value: the block's YAML args (YAML values; keywords go to their "
        "place in the signature, defaults before them). Without -o the file is {BASE}[-{task}]-{block}.yaml here, "
        "the file that name then loads. Defaults need no file: model=yolo11n-ema.yaml is generated by name. A site "
        "the base lacks is refused (exit status 2) with the sites it has.",
    )
    p.add_argument("base", help="yolo11n | yolov8s-seg | yolo26-pose | yolov8-p2 | path/to/model.yaml")
    p.add_argument(
        "words", nargs="*", metavar="[BLOCK] ARG", help="the block (unless --block) and its positional YAML args"
    )
    p.add_argument(
        "--block",
        nargs="+",
        default=None,
        metavar=("NAME", "ARG"),
        help="registered YAML name or alias, case-insensitive (cbam, CoordAtt), then its positional YAML args",
    )
    p.add_argument("--task", choices=("seg", "pose", "obb", "cls"), default=None, help="task of a family base")
    p.add_argument(
        "--at",
        nargs="+",
        default=None,
        metavar="SITE",
        help="sites of the base: p3 p4 p5 sppf neck all, or layer indices (4,6 or 4 6 or p4+p5); default: the "
        "standard sites. A block goes after each, an extends block replaces the row",
    )
    p.add_argument("-o", "--out", type=Path, default=None, help="output file (default: {BASE}[-{task}]-{block}.yaml)")
    p.add_argument(
        "--inside",
        action="store_true",
        help="put the block inside the CSP rows at the sites (C3k2_EMA replaces C3k2; its args as key=value)",
    )
    _runs(p, _run_yaml, takes_overrides=True)

    p = verbs.add_parser(
        "migrate",
        help="rewrite a fork's YOLOv8/YOLO11 YAML (cv-attention, YOLOAir, tasks.py forks) into yolo_attn rows",
        description="Drop the channel-count first args of attention rows (unscaled or scaled, as the forks write "
        "them), map fork class names to ours (SEAttention -> SE, CoordAttention -> CoordAtt, ...), print each "
        "change. A row that cannot be mapped is refused with its reason: exit status 1, nothing written.",
    )
    p.add_argument("src", type=Path, help="the fork's model YAML")
    p.add_argument("-o", "--out", type=Path, default=None, help="output file (default: {src stem}-migrated.yaml)")
    _runs(p, _run_migrate)
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

    # A key=value token is an Ultralytics setting, unless it is the value of an option that takes key=value text.
    after = [None, *argv[:-1]]
    is_pair = [bool(KEY_VALUE.match(a)) and b not in KEY_VALUE_OPTIONS for a, b in zip(argv, after, strict=True)]
    pairs = [a for a, pair in zip(argv, is_pair, strict=True) if pair]
    args = parser.parse_args([a for a, pair in zip(argv, is_pair, strict=True) if not pair])
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


def _ints(text: str) -> list[int]:
    return [int(x) for x in _csv(text)]


def _csv(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def _run_subset(args: argparse.Namespace, overrides: dict) -> None:
    from yolo_attn.data.subset import build_subset

    data = build_subset(args.coco, args.classes, args.train, args.val, args.seed, args.out)
    print(f"Subset written: {data}")


def _run_eval(args: argparse.Namespace, overrides: dict) -> None:
    from yolo_attn.evaluation.classify_eval import checkpoint_task
    from yolo_attn.experiments.tasks import get_task

    spec = get_task(checkpoint_task(args.weights))  # the evaluator of the checkpoint's own task
    settings = {
        "task": spec.name,
        "data": spec.resolve_data(args.data),
        "imgsz": args.imgsz or spec.default_imgsz,
        "batch": args.batch,
        "backend": args.backend,
        "conf": args.conf,
        "iou": args.iou,
    }
    metrics = spec.evaluate(Path(args.weights), settings, args.device, args.out)
    print(spec.format(metrics))
    if args.out is not None and not spec.uses_backend:  # the COCO evaluator writes its own files there
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")


def _run_compare(args: argparse.Namespace, overrides: dict) -> None:
    from yolo_attn.experiments.compare import compare, failed_cells, refresh_report
    from yolo_attn.experiments.tasks import grid_task

    if args.report:
        if args.out is None or overrides:
            raise SystemExit("compare --report needs --out DIR (a comparison folder) and takes no key=value settings")
        report = refresh_report(args.out, latency_runs=args.latency_runs, device=args.device, runtime=args.runtime)
        print(report.read_text())
        print(f"Report written to {report.parent}")
        return
    models = placement_models(args)
    if args.data is None or not models:
        raise SystemExit(
            "compare needs --data and --models, or --data and --base/--blocks/--at (a placement grid), or --out DIR "
            "--report to report a comparison folder"
        )
    try:  # a grid mixing tasks is refused here; an explicit --task that the models lack, by the resume guard or cells
        if isinstance(models, list):
            task = args.task or grid_task(models)
            if args.task:
                grid_task(models)
        else:
            task = args.task or models.model_task()
    except ValueError as error:
        raise SystemExit(f"compare: {error}") from None
    executor = args.executor or ("parallel" if args.parallel else "sequential")
    if args.parallel and executor != "parallel":
        raise SystemExit(f"--parallel and --executor {executor} contradict each other: choose one")
    slurm = None
    if args.slurm:
        from yolo_attn.experiments.submitit_executor import parse_slurm_options

        slurm = parse_slurm_options(args.slurm)
    out = compare(
        args.data,
        models,
        args.seeds,
        args.epochs,
        imgsz=args.imgsz,
        batch=args.batch,
        device=args.device,
        out=args.out,
        train_overrides=overrides,
        backend=args.backend,
        latency_runs=args.latency_runs,
        pretrained=args.pretrained,
        executor=executor,
        per_device=args.per_device,
        slurm=slurm,
        array_parallelism=args.array_parallelism,
        runtime=args.runtime,
        task=task,
        wait=args.wait,
    )
    if executor == "slurm":  # submitted (the job ids were printed): the report comes with --report
        return
    if (out / "compare.md").exists():
        print((out / "compare.md").read_text())
        print(f"Comparison written to {out}")
    failed = failed_cells(out)
    if failed:
        raise SystemExit(f"{len(failed)} cell(s) failed: {', '.join(failed)}; see {out / 'runs'}/<cell>.json")


def placement_models(args: argparse.Namespace) -> list[str] | PlacementGrid | None:
    """Return ``--models``, or the `PlacementGrid` of ``--base``/``--blocks``/``--at`` (refusing a mix of the two).

    Args:
        args (argparse.Namespace): The ``compare`` options.

    Returns:
        (list[str] | PlacementGrid | None): The models to compare; None when neither was given.
    """
    from yolo_attn.cfg.generated import UnknownBlockError
    from yolo_attn.cfg.sites import SiteError
    from yolo_attn.experiments.placement import PlacementGrid

    grid = {"--base": args.base, "--blocks": args.blocks, "--at": args.at}
    given = [name for name, value in grid.items() if value]
    if not given:
        return list(args.models) if args.models else None
    if args.models:
        raise SystemExit(
            f"compare: --models and {'/'.join(given)} are two ways to name the grid: give --models M1 M2 ..., or "
            "--base B --blocks ... --at ... (a placement grid), not both"
        )
    missing = [name for name, value in grid.items() if not value]
    if missing:
        raise SystemExit(f"compare: a placement grid needs --base, --blocks and --at; missing {', '.join(missing)}")
    grid = PlacementGrid(args.base, [_block_choice(text) for text in args.blocks], list(args.at))
    with tempfile.TemporaryDirectory() as folder:  # a block, args or site the base lacks: refused before anything runs
        try:
            grid.write(folder)
        except (UnknownBlockError, SiteError, ValueError, FileNotFoundError) as error:
            raise SystemExit(f"compare: {error}") from None
    return grid


def _block_choice(text: str) -> str | tuple[str, list[Any], dict[str, Any]]:
    """One ``--blocks`` word: ``EMA``, or ``CBAM:8,k=3`` (positional YAML args, then keywords; YAML values)."""
    if ":" not in text:
        return text
    import yaml

    name, _, rest = text.partition(":")
    args, keywords = [], {}
    for token in filter(None, (t.strip() for t in rest.split(","))):
        key, eq, value = token.partition("=")
        if eq:
            keywords[key] = yaml.safe_load(value)
        else:
            args.append(yaml.safe_load(token))
    return name, args, keywords


def _run_profile(args: argparse.Namespace, overrides: dict) -> None:
    from yolo_attn.profiling.cost import print_cost_table
    from yolo_attn.profiling.runtime import runtime_costs, runtime_table

    if args.update_headers is not None:
        from yolo_attn.profiling.headers import update_headers

        for path, lines in update_headers(args.update_headers or None).items():
            print(f"{path.name}:", *lines, sep="\n", end="\n\n")
        return
    if not args.models:
        raise SystemExit("profile: --models is required (or --update-headers)")
    if str(args.device) != "cpu":  # interleaved, synchronised GPU timing of the fused models (PyTorch only)
        if args.runtime != "torch":
            raise SystemExit(f"profile --device {args.device}: only --runtime torch runs on a GPU here")
        print_cost_table(args.models, imgsz=args.imgsz, device=args.device)
        return

    rows = runtime_costs(
        args.models, args.imgsz, args.runtime, rounds=args.rounds, warmup=args.warmup, threads=args.threads or None
    )
    print(runtime_table(rows))


def _run_visualize(args: argparse.Namespace, overrides: dict) -> None:
    from yolo_attn.visualize import attention_maps, feature_maps

    if args.features is not None:
        paths = feature_maps(
            args.weights, args.source, args.features, imgsz=args.imgsz, out=args.out, device=args.device
        )
    else:
        paths = attention_maps(args.weights, args.source, imgsz=args.imgsz or 640, out=args.out, device=args.device)
    for path in paths:
        print(path)


def _run_demo(args: argparse.Namespace, overrides: dict) -> None:
    if args.task in {"segment", "pose", "obb"}:
        from yolo_attn.demos.tasks import run_task_demo

        run_task_demo(args.task, args.out)
        return
    if args.task == "classify":
        from yolo_attn.demos.classify import run_classify_demo

        run_classify_demo(args.out)
        return
    from yolo_attn.demos.detect import run_demo

    run_demo(args.out)


def _run_check_block(args: argparse.Namespace, overrides: dict) -> None:
    from yolo_attn.testing import check_block, resolve

    try:
        block = resolve(args.block)
    except ValueError as e:
        raise SystemExit(f"yolo-attn check-block: {e}") from None
    report = check_block(block, compile=args.compile, onnx=not args.no_onnx, imgsz=args.imgsz, **overrides)
    print(report.table())
    if not report.ok:
        raise SystemExit(1)


def _run_yaml(args: argparse.Namespace, overrides: dict) -> None:
    from yolo_attn.cfg.generated import UnknownBlockError
    from yolo_attn.cfg.sites import SiteError
    from yolo_attn.cfg.yaml_command import parse_values, write_yaml_rows

    words = list(args.words)
    if args.block is not None:
        block, tokens = args.block[0], [*args.block[1:], *words]
    elif words:
        block, tokens = words[0], words[1:]
    else:
        _yaml_error("no block given: --block NAME [ARG ...] (or the block's name after BASE)")
    try:
        written = write_yaml_rows(
            args.base, block, parse_values(tokens), overrides, args.task, args.at, args.out, inside=args.inside
        )
    except (UnknownBlockError, SiteError, ValueError, FileNotFoundError, IndexError) as e:
        _yaml_error(str(e))
    import yaml

    for i, row in written.rows:
        print(f"  layer {i}: {yaml.safe_dump(row, default_flow_style=True, width=10**6).strip()}")
    out = written.path
    scaled = out.name if re.search(r"\d[nslmx]", out.name) else re.sub(r"^(yolo\w*?\d+)", r"\1n", out.name)
    print(f"Wrote {out}: edit it, then train with model={out.parent / scaled if out.parent != Path() else scaled}")


def _yaml_error(message: str) -> NoReturn:
    """Refuse a ``yaml`` command as argparse refuses a bad command line: the reason on stderr, exit status 2."""
    print(f"yolo-attn yaml: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def _run_migrate(args: argparse.Namespace, overrides: dict) -> None:
    from yolo_attn.cfg.migrate import MigrationError, migrate_file

    try:
        out = migrate_file(args.src, args.out)
    except MigrationError as e:
        raise SystemExit(f"yolo-attn migrate {args.src}: {e}\nNothing written.") from None
    print(f"Wrote {out}")


if __name__ == "__main__":
    main()
