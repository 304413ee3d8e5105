"""Compare models x seeds under identical settings: plan -> cells (by an executor) -> files -> costs -> report.

``compare(...)`` is the ``yolo-attn compare`` command. It writes the plan, runs the pending cells with the chosen
executor, measures the costs once (latency of all models together, on one device) and writes the report. See
``yolo_attn.experiments.files`` for the folder layout. Interrupt it at any point and run the same command with the same
``out`` to finish: finished cells are skipped, failed and missing ones are run again, an interrupted training continues
from its ``last.pt``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ultralytics.utils import LOGGER, colorstr

from yolo_attn.experiments.cell import pending_cells
from yolo_attn.experiments.claims import is_free, report_lock
from yolo_attn.experiments.costs import LATENCY_THREADS, measure_costs, measure_runtime
from yolo_attn.experiments.executors import device_slots, run_parallel, run_sequential
from yolo_attn.experiments.files import FAILED, CellRecord, default_out, load_records, load_runs
from yolo_attn.experiments.placement import PlacementGrid
from yolo_attn.experiments.plan import Plan, load_plan, make_plan, save_plan
from yolo_attn.experiments.report import write_report

PREFIX = colorstr("compare: ")
EXECUTORS = ("sequential", "parallel", "local", "slurm")

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


@dataclass(frozen=True)
class CompareSettings:
    """Every setting of one ``compare`` call (see `compare` for what each does).

    The first group is the plan (`make_plan`: what every cell shares, guarded on resume), the second where and how
    the cells run and the report is measured.

    Attributes:
        data (str | Path): Data set (data YAML, or an ImageFolder root for classify).
        models (Sequence[str | Path] | PlacementGrid): Model YAMLs or weights, the first is the baseline; or a
            placement grid, whose YAMLs are written to ``<out>/models/`` when the comparison runs.
        seeds (Sequence[int]): Training seeds.
        epochs (int): Training epochs of every run.
        imgsz (int | None): Image size; None: the task's default.
        batch (int): Batch size.
        train_overrides (dict[str, Any]): More Ultralytics train settings, identical for every run.
        backend (str): COCO evaluation backend (detection).
        pretrained (str | Path | None): Source weights of every model, or None.
        task (str): Ultralytics task of every model.
        device (str | int | None): Ultralytics device.
        latency_runs (int): Timed batch-1 passes per model at report time (0 skips latency).
        out (str | Path | None): Comparison folder; None makes a new ``runs/compare/exp*``.
        executor (str): One of ``EXECUTORS``.
        per_device (int): Cells at once per device (``"parallel"``, ``"local"``).
        slurm (dict[str, Any]): ``SlurmExecutor`` parameters.
        array_parallelism (int | None): Most Slurm array tasks at once.
        runtime (str | None): Deployment runtime also timed in the report, or None.
        wait (bool): Wait for cells another runner holds.
    """

    data: str | Path
    models: Sequence[str | Path] | PlacementGrid
    seeds: Sequence[int]
    epochs: int
    imgsz: int | None = None
    batch: int = 16
    train_overrides: dict[str, Any] = field(default_factory=dict)
    backend: str = "pycocotools"
    pretrained: str | Path | None = None
    task: str = "detect"
    device: str | int | None = None
    latency_runs: int = 50
    out: str | Path | None = None
    executor: str = "sequential"
    per_device: int = 1
    slurm: dict[str, Any] = field(default_factory=dict)
    array_parallelism: int | None = None
    runtime: str | None = None
    wait: bool = True

    def __post_init__(self) -> None:
        if self.executor not in EXECUTORS:
            raise ValueError(f"executor must be one of {', '.join(EXECUTORS)}, got {self.executor!r}")

    def plan(self) -> Plan:
        """Return the validated plan of these settings (`make_plan`); a placement grid needs `resolved` first."""
        if isinstance(self.models, PlacementGrid):
            raise ValueError("a placement grid's models are written into its comparison folder: use resolved(out)")
        return make_plan(
            data=self.data,
            models=self.models,
            seeds=self.seeds,
            epochs=self.epochs,
            imgsz=self.imgsz,
            batch=self.batch,
            device=self.device,
            train_overrides=dict(self.train_overrides),
            backend=self.backend,
            latency_runs=self.latency_runs,
            pretrained=self.pretrained,
            task=self.task,
        )

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
    data: str | Path,
    models: Sequence[str | Path] | PlacementGrid,
    seeds: Sequence[int],
    epochs: int,
    imgsz: int | None = None,
    batch: int = 16,
    device: str | int | None = None,
    out: str | Path | None = None,
    train_overrides: dict[str, Any] | None = None,
    backend: str = "pycocotools",
    latency_runs: int = 50,
    pretrained: str | Path | None = None,
    executor: str = "sequential",
    per_device: int = 1,
    slurm: dict[str, Any] | None = None,
    array_parallelism: int | None = None,
    runtime: str | None = None,
    task: str = "detect",
    wait: bool = True,
) -> Path:
    """Train every model with every seed under identical settings, evaluate each, and report.

    The arguments become one `CompareSettings` run by `run_comparison` (use those two directly to build settings
    once and run them again, e.g. with more seeds).

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
        imgsz (int | None): Train, evaluation and profiling image size; None: 640 (detect) or 224 (classify).
        batch (int): Batch size for training and evaluation.
        device (str | int | None): Ultralytics device: None (auto), ``"cpu"``, ``0`` or ``"0,1,2,3"``.
        out (str | Path | None): Comparison folder; None makes a new ``runs/compare/exp*``.
        train_overrides (dict[str, Any] | None): More Ultralytics train settings (``workers=0``, ``lr0=0.005``...),
            identical for every run. ``data``, ``epochs``, ``imgsz``, ``batch``, ``device``, ``pretrained`` are
            arguments here; ``seed``, ``project``, ``name``, ``exist_ok`` are set per run and cannot be overridden.
        backend (str): COCO evaluation backend, ``"pycocotools"`` or ``"faster-coco-eval"`` (ignored for classify).
        latency_runs (int): Timed forward passes per model for the batch-1 latency (0 skips latency).
        pretrained (str | Path | None): Source weights every model (baseline included) is fine-tuned from; None
            trains YAML models from scratch.
        executor (str): One of ``EXECUTORS``.
        per_device (int): Cells at once per device (``"parallel"`` and ``"local"``).
        slurm (dict[str, Any] | None): ``SlurmExecutor`` parameters (``submitit_executor.parse_slurm_options``).
        array_parallelism (int | None): Most Slurm array tasks at once.
        runtime (str | None): Also time the models in this deployment runtime (``"torch"`` or ``"onnxruntime"``,
            CPU, paired shuffled rounds as ``yolo-attn profile --runtime``), in a second table of the report.
        task (str): ``"detect"``, ``"classify"``, ``"segment"``, ``"pose"`` or ``"obb"``; every model must be of that
            task (the CLI takes it from the first model and refuses a grid that mixes tasks).
        wait (bool): Cells that another run of the same folder holds (see ``yolo_attn.experiments.claims``) are
            never touched. True waits for them to finish there, and runs one here if its runner dies; False leaves
            them and reports what has finished. A Slurm submission skips them, and the cells whose array tasks are
            still queued, either way.

    Returns:
        (Path): The comparison folder, holding ``plan.json``, ``runs/*.json`` and (unless Slurm jobs are still
            pending) ``compare.csv``, ``compare.md``, ``compare.png`` (and ``accuracy.png`` for classify).
    """
    return run_comparison(
        CompareSettings(
            data=data,
            models=models,
            seeds=seeds,
            epochs=epochs,
            imgsz=imgsz,
            batch=batch,
            train_overrides=dict(train_overrides or {}),
            backend=backend,
            pretrained=pretrained,
            task=task,
            device=device,
            latency_runs=latency_runs,
            out=out,
            executor=executor,
            per_device=per_device,
            slurm=dict(slurm or {}),
            array_parallelism=array_parallelism,
            runtime=runtime,
            wait=wait,
        )
    )


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
    executor, device, per_device, wait = settings.executor, settings.device, settings.per_device, settings.wait
    save_plan(out, plan)
    cells = pending_cells(plan, out)
    LOGGER.info(
        f"{PREFIX}{len(plan.models)} models x {len(plan.seeds)} seeds -> {out}; {len(plan.cells) - len(cells)} "
        f"finished before, {len(cells)} to run ({executor}). Resume with out={out}"
    )

    def partial_report(record: CellRecord) -> None:  # a table to look at while cells run; never stops them
        try:
            finish(out, plan, measure_latency=False)
        except Exception as error:
            LOGGER.warning(f"{PREFIX}partial report failed ({error}); the cells go on, the final report retries")

    if executor == "sequential":
        run_sequential(plan, cells, out, on_done=partial_report, wait=wait)
    elif executor == "parallel":
        run_parallel(plan, cells, out, device_slots(device, per_device), on_done=partial_report, wait=wait)
    else:
        from yolo_attn.experiments import submitit_executor

        if executor == "local":
            slots = device_slots(device, per_device)
            submitit_executor.run_local(plan, cells, out, slots, on_done=partial_report, wait=wait)
        else:
            queued = submitit_executor.queued_in_slurm(out)
            elsewhere = [c.key for c in cells if c.key in queued or not is_free(out, c.key)]
            if elsewhere:
                LOGGER.info(f"{PREFIX}not resubmitted, queued or running already: {', '.join(elsewhere)}")
            cells = [cell for cell in cells if cell.key not in elsewhere]
            if cells:
                jobs = submitit_executor.submit_slurm(
                    plan, cells, out, dict(settings.slurm), settings.array_parallelism, plan.device
                )
                print(submitit_executor.watch_hint(jobs, out), flush=True)
            if cells or elsewhere:
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
