"""``yolo-attn compare``: train and evaluate models x seeds, then report; its flags are made from `CompareSettings`.

Every setting of a comparison is a field of ``yolo_attn.experiments.compare.CompareSettings`` (type, default, help
text): `add_parser` makes one flag per field (`yolo_attn.utils.settings.add_arguments`) and `run` passes the parsed
values back by field name. Only what is the command line's own is written here: the placement grid options
(``--base``/``--blocks``/``--at``, which make a `PlacementGrid`), ``--parallel`` (``--executor parallel``),
``--report``, and ``key=value`` tokens (``train_overrides``). The comparison modules are imported inside the
functions that use them, so that other ``yolo-attn`` commands (``--help``, ``train``) do not load them.
"""

from __future__ import annotations

import argparse
import tempfile
from typing import TYPE_CHECKING, Any

from yolo_attn.utils.settings import add_arguments, from_arguments

if TYPE_CHECKING:
    from yolo_attn.experiments.placement import PlacementGrid

VERB = "compare"
TAKES_OVERRIDES = True


def add_parser(verbs: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``compare`` parser to ``verbs``: a flag per `CompareSettings` field, plus the command line's own."""
    from yolo_attn.experiments import compare as experiment

    p = verbs.add_parser(
        VERB,
        help="train and evaluate models x seeds; tables and a plot (key=value passes on)",
        description="Train and evaluate models x seeds under identical settings, then report. Ultralytics key=value "
        "train settings pass on to every run. Scale out with --parallel (one run per GPU) or --executor slurm.",
    )
    what, grid = p.add_argument_group(experiment.WHAT), p.add_argument_group("placement grid (instead of --models)")
    groups = add_arguments(p, experiment.CompareSettings, {experiment.WHAT: what})
    grid.add_argument(
        "--base",
        default=None,
        help="placement grid (instead of --models): the base model (yolo11n.yaml, yolo11n-seg, a YAML file), "
        "trained as the baseline and with each --blocks block at each --at site",
    )
    grid.add_argument(
        "--blocks",
        nargs="+",
        default=None,
        metavar="BLOCK",
        help="placement grid: block names (SE CBAM EMA), or NAME:ARG,ARG,key=value for YAML args (CBAM:8,k=3)",
    )
    grid.add_argument(
        "--at",
        nargs="+",
        default=None,
        metavar="SITE",
        help="placement grid: one variant per site (p3 p4 p5 sppf neck all, or a layer index); p4+p5 is one variant "
        "with the block at both",
    )
    groups[experiment.WHERE].add_argument(
        "--parallel",
        action="store_true",
        help="run cells side by side, one per --device GPU, each process seeing only its GPU (= --executor parallel)",
    )
    groups[experiment.REPORT].add_argument(
        "--report",
        action="store_true",
        help="only write the report of --out from the cells finished so far (any time, e.g. while Slurm jobs run)",
    )
    return p


def run(args: argparse.Namespace, overrides: dict[str, Any]) -> None:
    """Run the comparison (or with ``--report`` only its report), print the report, exit 1 naming failed cells."""
    from yolo_attn.experiments import compare as experiment

    if args.report:
        if args.out is None or overrides:
            raise SystemExit("compare --report needs --out DIR (a comparison folder) and takes no key=value settings")
        report = experiment.refresh_report(
            args.out, latency_runs=args.latency_runs, device=args.device, runtime=args.runtime
        )
        print(report.read_text())
        print(f"Report written to {report.parent}")
        return
    models = placement_models(args)
    if args.data is None or not models:
        raise SystemExit(
            "compare needs --data and --models, or --data and --base/--blocks/--at (a placement grid), or --out DIR "
            "--report to report a comparison folder"
        )
    settings = from_arguments(experiment.CompareSettings, args)
    settings.update(models=models, task=_task(args.task, models), executor=_executor(args), train_overrides=overrides)
    if args.slurm:
        from yolo_attn.experiments.submitit_executor import parse_slurm_options  # submitit is optional

        settings["slurm"] = parse_slurm_options(args.slurm)
    out = experiment.compare(
        settings.pop("data"), settings.pop("models"), settings.pop("seeds"), settings.pop("epochs"), **settings
    )
    if settings["executor"] == "slurm":  # submitted (the job ids were printed): the report comes with --report
        return
    if (out / "compare.md").exists():
        print((out / "compare.md").read_text())
        print(f"Comparison written to {out}")
    failed = experiment.failed_cells(out)
    if failed:
        raise SystemExit(f"{len(failed)} cell(s) failed: {', '.join(failed)}; see {out / 'runs'}/<cell>.json")


def _task(task: str | None, models: list[str] | PlacementGrid) -> str:
    """Return ``--task``, or the models' own task; a grid mixing tasks is refused (exit status 1)."""
    from yolo_attn.experiments.tasks import grid_task

    try:  # an explicit --task that the models lack is refused by the resume guard or the cells
        if isinstance(models, list):
            found = grid_task(models)
            return task or found
        return task or models.model_task()
    except ValueError as error:
        raise SystemExit(f"compare: {error}") from None


def _executor(args: argparse.Namespace) -> str:
    """Return ``--executor``, ``parallel`` for ``--parallel``, else ``sequential``; refuse a contradiction."""
    executor = args.executor or ("parallel" if args.parallel else "sequential")
    if args.parallel and executor != "parallel":
        raise SystemExit(f"--parallel and --executor {executor} contradict each other: choose one")
    return executor


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
    grid = PlacementGrid(args.base, [block_choice(text) for text in args.blocks], list(args.at))
    with tempfile.TemporaryDirectory() as folder:  # a block, args or site the base lacks: refused before anything runs
        try:
            grid.write(folder)
        except (UnknownBlockError, SiteError, ValueError, FileNotFoundError) as error:
            raise SystemExit(f"compare: {error}") from None
    return grid


def block_choice(text: str) -> str | tuple[str, list[Any], dict[str, Any]]:
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
