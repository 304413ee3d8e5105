"""Compare models x seeds under identical settings: plan -> cells (by an executor) -> files -> costs -> report.

``compare(...)`` is the ``yolo-attn compare`` command. It writes the plan, runs the pending cells with the chosen
executor, measures the costs once (latency of all models together, on one device) and writes the report. See
``yolo_attn.experiments.files`` for the folder layout. Interrupt it at any point and run the same command with the same
``out`` to finish: finished cells are skipped, failed and missing ones are run again, an interrupted training continues
from its ``last.pt``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ultralytics.utils import LOGGER, colorstr

from yolo_attn.experiments.cell import pending_cells
from yolo_attn.experiments.claims import report_lock
from yolo_attn.experiments.costs import LATENCY_THREADS, measure_costs, measure_runtime
from yolo_attn.experiments.executors import EXECUTORS
from yolo_attn.experiments.files import FAILED, CellRecord, default_out, load_records, load_runs
from yolo_attn.experiments.placement import PlacementGrid
from yolo_attn.experiments.plan import Plan, load_plan, make_plan, save_plan
from yolo_attn.experiments.report import write_report
from yolo_attn.experiments.tasks import TASKS
from yolo_attn.utils.settings import NO_FLAG, document, setting, settings_fields

PREFIX = colorstr("compare: ")
# --help sections of the settings (yolo_attn.cli.compare adds the placement grid options after the first)
WHAT, TRAIN, WHERE, REPORT = "what to compare", "training and evaluation", "where the cells run", "report"

__all__ = (
    "EXECUTORS",
    "CompareSettings",
    "PlacementGrid",
    "compare",
    "failed_cells",
    "load_runs",
    "refresh_report",
    "run_comparison",
)


@document
@dataclass(frozen=True)
class CompareSettings:
    """Every setting of one comparison, declared once: the Python `compare` keywords, the CLI flags, ``plan.json``.

    Each field is a `yolo_attn.utils.settings.setting`: its type, its default, its help text (``yolo-attn compare
    --help`` prints it, and the ``Attributes`` below are written from it) and its command-line flag. The fields with
    ``plan=True`` are what `make_plan` records in ``plan.json``: the grid (``models``, ``seeds``), the settings every
    cell shares (guarded on resume) and the device and latency runs. The others say where and how the cells run and
    the report is measured. A new setting is one more field here: `compare` takes it as a keyword, the CLI as a flag.
    """

    data: str | Path = setting(
        help="data.yaml, or for classify an ImageFolder root (required unless --report)",
        group=WHAT,
        plan=True,
        cli_default=None,
    )
    models: Sequence[str | Path] | PlacementGrid = setting(
        help="model YAMLs or weights; the first is the baseline. Or (Python) a PlacementGrid, the --base/--blocks/--at "
        "grid, whose YAMLs are written to <out>/models/",
        group=WHAT,
        plan=True,
        cli_default=None,
        nargs="+",
    )
    seeds: Sequence[int] = setting(
        help="training seeds; every model is trained once per seed", group=WHAT, plan=True, cli_default=[0]
    )
    epochs: int = setting(help="training epochs of every run", group=WHAT, plan=True, cli_default=100)
    imgsz: int | None = setting(
        None,
        help="train, evaluation and profiling image size (default: the task's, 640; 224 for classify)",
        group=TRAIN,
        plan=True,
    )
    batch: int = setting(16, help="batch size for training and evaluation", group=TRAIN, plan=True)
    device: str | int | None = setting(
        None, help="cpu, 0, or 0,1,2,3 (Ultralytics syntax; default: automatic)", group=TRAIN, plan=True
    )
    out: str | Path | None = setting(
        None,
        help="output folder (default: a new runs/compare/exp*); pass an interrupted comparison's folder to resume it",
        group=WHERE,
        type=Path,
    )
    train_overrides: dict[str, Any] = setting(
        help="more Ultralytics train settings, identical for every run (key=value on the command line)",
        factory=dict,
        flag=NO_FLAG,
        plan=True,
    )
    backend: str = setting(
        "pycocotools",
        help="COCO evaluation backend of detection",
        group=TRAIN,
        plan=True,
        choices=("pycocotools", "faster-coco-eval"),
    )
    latency_runs: int = setting(50, help="timed batch-1 passes per model (0: skip)", group=REPORT, plan=True)
    pretrained: str | Path | None = setting(
        None,
        help="weights every model (baseline included) is fine-tuned from, e.g. yolov8n.pt (default: from scratch)",
        group=TRAIN,
        plan=True,
    )
    executor: str = setting(
        "sequential",
        help="where cells run: in this process one after another (default), local processes (parallel), submitit's "
        "local executor (local) or a Slurm job array (slurm)",
        group=WHERE,
        cli_default=None,
        choices=tuple(EXECUTORS),
    )
    per_device: int = setting(1, help="cells at once per device with --parallel / --executor local", group=WHERE)
    slurm: dict[str, Any] = setting(
        help="Slurm options for --executor slurm, e.g. partition=gpu,time=720,gpus_per_task=1,cpus_per_task=8,"
        "account=ACC,mem_gb=32; any other key passes to sbatch as is (reservation=r1)",
        factory=dict,
        group=WHERE,
        action="append",
        metavar="KEY=VALUE,...",
    )
    array_parallelism: int | None = setting(None, help="most Slurm array tasks running at once", group=WHERE)
    runtime: str | None = setting(
        None,
        help="also time the models in this runtime (CPU, --latency-runs paired shuffled rounds): a second table",
        group=REPORT,
        choices=("torch", "onnxruntime"),
    )
    task: str = setting(
        "detect",
        help="detect (COCO mAP), classify (top-1/top-5), segment (mask + box mAP), pose (pose + box mAP) or obb "
        "(rotated-box mAP); default: the first model's task. Every model must be of it",
        group=TRAIN,
        plan=True,
        cli_default=None,
        choices=tuple(TASKS),
    )
    wait: bool = setting(
        True,
        help="wait (default) for the cells that another run of this folder is training, taking over the claim of one "
        "whose runner dies; --no-wait leaves them to it and reports what has finished",
        group=WHERE,
    )

    def __post_init__(self) -> None:
        """Refuse an unknown executor; a dict setting given as None is empty (a copy of the one given otherwise)."""
        for f in settings_fields(self):
            if f.default_factory is dict:
                object.__setattr__(self, f.name, dict(getattr(self, f.name) or {}))
        if self.executor not in EXECUTORS:
            raise ValueError(f"executor must be one of {', '.join(EXECUTORS)}, got {self.executor!r}")

    def plan(self) -> Plan:
        """Return the validated plan of the ``plan=True`` settings (`make_plan`); a placement grid needs `resolved`."""
        if isinstance(self.models, PlacementGrid):
            raise ValueError("a placement grid's models are written into its comparison folder: use resolved(out)")
        return make_plan(**{f.name: getattr(self, f.name) for f in settings_fields(self) if f.metadata["plan"]})

    def resolved(self, out: Path) -> tuple[CompareSettings, list[dict[str, str]] | None]:
        """Return these settings with a placement grid's YAMLs written into ``out/models`` and named as models.

        Args:
            out (Path): The comparison folder.

        Returns:
            (tuple[CompareSettings, list[dict[str, str]] | None]): The settings with a model list, and for a
                placement grid its variants (``label``, ``block``, ``site``; the plan's ``placement``), else None.
        """
        if not isinstance(self.models, PlacementGrid):
            return self, None
        variants = self.models.write(out / "models")
        placement = [{"label": v.label, "block": v.block, "site": v.site} for v in variants[1:]]
        return replace(self, models=[str(v.path) for v in variants]), placement


def compare(
    data: str | Path, models: Sequence[str | Path] | PlacementGrid, seeds: Sequence[int], epochs: int, **settings: Any
) -> Path:
    """Train every model with every seed under identical settings, evaluate each, and report.

    The arguments become one `CompareSettings` run by `run_comparison` (use those two directly to build settings
    once and run them again, e.g. with more seeds). Every keyword is a field of `CompareSettings`, documented there
    (the ``yolo-attn compare`` flags are made from the same fields); any other is refused with a ``TypeError``.

    Detection (``task="detect"``) is evaluated with COCO mAP; classification (``task="classify"``) with top-1 / top-5
    from Ultralytics' classification validator (``evaluate_classifier``), and its report adds ``accuracy.png``, the
    val top-1 curve of every run; ``"segment"``, ``"pose"`` and ``"obb"`` with Ultralytics' own validator of the task
    (mask + box, pose + box, rotated-box mAP50-95 and mAP50). What each task evaluates and reports is its entry of
    `yolo_attn.experiments.tasks.TASKS`.

    Each cell is ``YOLO(model).train(data, epochs, imgsz, batch, seed=s, deterministic=True, device, plots=False,
    pretrained, **train_overrides)`` followed by ``evaluate(best.pt, data, imgsz, batch, device, backend)`` (see
    ``yolo_attn.experiments.cell``). The first model is the baseline of the paired deltas.

    Executors (where the cells run; the cells are the same):

    - ``"sequential"``: one after another in this process. ``device="0,1,2,3"`` makes each run ONE Ultralytics DDP
      job over all the listed GPUs (``batch`` is the total batch).
    - ``"parallel"``: one cell per device slot at a time, each in its own process pinned to one GPU
      (``CUDA_VISIBLE_DEVICES``), ``per_device`` cells per GPU; ``device="cpu"`` gives ``per_device`` CPU slots.
      Logs in ``out/logs/``, one progress line per running cell on the console.
    - ``"local"``: the same through submitit's local executor, at most ``per_device`` jobs per device at once.
    - ``"slurm"``: the pending cells as one Slurm job array (``slurm`` options, ``array_parallelism``); returns once
      submitted. Run ``compare --out DIR --report`` (``report(out)``) for the table, any time.

    Output folder: ``out``, or by default ``runs/compare/exp``, ``runs/compare/exp2``, ... (a new one per call,
    relative to the working directory). A resume with other settings (data, epochs, imgsz, batch, overrides,
    backend, pretrained, task) is refused; more seeds or models extend the grid.

    Args:
        data (str | Path): Detection: data set YAML (COCO ground truth for the val split, see
            ``yolo_attn.evaluation``). Classification: an ImageFolder root (``train/``, ``val/`` or ``test/``) or a
            data YAML whose ``path:`` names one.
        models (Sequence[str | Path] | PlacementGrid): Model YAMLs or weights; the first is the baseline. File stems
            must be unique. Or a `PlacementGrid` (``PlacementGrid("yolo11n.yaml", ["SE", "EMA"], ["p3", "p4+p5"])``):
            its baseline and each block at each site, written to ``out/models/`` as ``yolo11n+EMA@p4.yaml``...; the
            report adds the block x site heat map (``placement_<metric>.png``).
        seeds (Sequence[int]): Training seeds; every model is trained once per seed.
        epochs (int): Training epochs of every run.
        **settings (Any): The other `CompareSettings` fields by name. ``train_overrides`` are Ultralytics train
            settings (``workers=0``, ``lr0=0.005``...): ``data``, ``epochs``, ``imgsz``, ``batch``, ``device``,
            ``pretrained`` are settings here; ``seed``, ``project``, ``name``, ``exist_ok`` are set per run and
            cannot be overridden. ``slurm``: ``SlurmExecutor`` parameters (``submitit_executor.parse_slurm_options``).

    Returns:
        (Path): The comparison folder, holding ``plan.json``, ``runs/*.json`` and (unless Slurm jobs are still
            pending) ``compare.csv``, ``compare.md``, ``compare.png`` (and ``accuracy.png`` for classify).
    """
    return run_comparison(CompareSettings(data, models, seeds, epochs, **settings))


def run_comparison(settings: CompareSettings) -> Path:
    """Run the comparison ``settings`` describe: plan, pending cells by the executor, costs, report (see `compare`).

    Args:
        settings (CompareSettings): The comparison.

    Returns:
        (Path): The comparison folder.
    """
    grid = settings.models
    check = replace(settings, models=[str(grid.base)]) if isinstance(grid, PlacementGrid) else settings
    check.plan()  # a bad grid or setting is refused before any folder is made
    out = (default_out() if settings.out is None else Path(settings.out)).resolve()
    settings, placement = settings.resolved(out)
    plan = replace(settings.plan(), placement=placement)
    executor = EXECUTORS[settings.executor](plan, out, settings)
    save_plan(out, plan)
    cells = pending_cells(plan, out)
    LOGGER.info(
        f"{PREFIX}{len(plan.models)} models x {len(plan.seeds)} seeds -> {out}; {len(plan.cells) - len(cells)} "
        f"finished before, {len(cells)} to run ({executor.name}). Resume with out={out}"
    )

    def partial_report(record: CellRecord) -> None:  # a table to look at while cells run; never stops them
        try:
            finish(out, plan, measure_latency=False)
        except Exception as error:
            LOGGER.warning(f"{PREFIX}partial report failed ({error}); the cells go on, the final report retries")

    if executor.run(cells, on_done=partial_report) is None:  # submitted, not waited for: report with --report
        return out
    failed = failed_cells(out, plan)
    if failed:
        LOGGER.warning(f"{PREFIX}{len(failed)} cell(s) failed: {', '.join(failed)}; rerun the command to redo them")
    if len(failed) < len(plan.cells):
        LOGGER.info(f"{PREFIX}report written: {finish(out, plan, runtime=settings.runtime)}")
    return out


def finish(out: Path, plan: Plan, measure_latency: bool = True, runtime: str | None = None) -> Path:
    """Measure what the report needs (costs of the models with a finished cell, latency once) and write the report.

    Args:
        out (Path): Comparison folder.
        plan (Plan): Its plan.
        measure_latency (bool): False leaves latency empty (partial reports while cells still run).
        runtime (str | None): Also time the models in this runtime (``measure_runtime``), with ``latency_runs``
            paired rounds.

    Returns:
        (Path): Path of ``compare.md``.
    """
    with report_lock(out):  # two runners finishing at once measure latency once and write one report
        return _finish(out, plan, measure_latency, runtime)


def _finish(out: Path, plan: Plan, measure_latency: bool, runtime: str | None) -> Path:
    runs = load_runs(out)
    done = [(m, s) for m, s in zip(plan.models, plan.stems, strict=True) if any(r["stem"] == s for r in runs)]
    measure_costs(
        out,
        [m for m, _ in done],
        [s for _, s in done],
        plan.settings["imgsz"],
        plan.device,
        plan.latency_runs,
        LATENCY_THREADS,
        measure_latency=measure_latency,
    )
    if runtime and measure_latency and plan.latency_runs and done:
        models, stems = zip(*done, strict=True)
        measure_runtime(out, models, stems, plan.settings["imgsz"], runtime, plan.latency_runs, LATENCY_THREADS)
    return write_report(out)


def refresh_report(
    out: str | Path, latency_runs: int | None = None, device: str | None = None, runtime: str | None = None
) -> Path:
    """Write the report of a comparison folder from whatever has finished (the ``--report`` command).

    Latency is measured (once, for the models with a finished cell, cached) unless ``latency_runs`` is 0.

    Args:
        out (str | Path): Comparison folder.
        latency_runs (int | None): Timed passes per model; None uses the plan's.
        device (str | None): Device for the latency; None uses the plan's.
        runtime (str | None): Also time the models in this deployment runtime (see `compare`).

    Returns:
        (Path): Path of ``compare.md``.
    """
    out = Path(out).resolve()
    plan = load_plan(out)
    if latency_runs is not None:
        plan.latency_runs = int(latency_runs)
    if device is not None:
        plan.device = str(device)
    return finish(out, plan, runtime=runtime)


def failed_cells(out: Path, plan: Plan | None = None) -> list[str]:
    """Return the names of the failed cells of a comparison folder (of its plan's grid)."""
    plan = plan or load_plan(out)
    keys = [cell.key for cell in plan.cells]
    failed = {f"{r['stem']}_seed{r['seed']}" for r in load_records(out) if r["status"] == FAILED}
    return [key for key in keys if key in failed]
