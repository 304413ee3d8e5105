"""Executors decide only where cells run: objects with submitit's interface, picked by name from ``EXECUTORS``.

An executor's ``submit(cell, slot)`` starts one cell and returns a `Job` with submitit's names: ``done()``,
``result()`` (the cell's `CellRecord`) and ``cancel()``. Where submitit runs the cells its own ``submitit.Job`` is that
job; the in-process and child-process executors return job objects of their own with the same three methods.
``run(cells)`` drives them through the one slot loop, `run_slots`: it takes the next pending cell that no other runner
holds, submits it in a free slot, collects the records and calls ``on_done``. ``EXECUTORS``:

- ``"sequential"`` (`SequentialExecutor`): one cell after another in this process (each cell may itself be one
  Ultralytics DDP job over several GPUs when the device is a list).
- ``"parallel"`` (`ParallelExecutor`): one cell per device slot at a time, each in its own process (``python -m
  yolo_attn.experiments.cell``) started with ``CUDA_VISIBLE_DEVICES`` set to its one GPU and ``device=0`` inside, its
  console output in ``logs/<key>.log``; the console shows one progress line per running cell.
- ``"local"`` (`LocalExecutor`): submitit's local executor, at most ``per_device`` jobs per device at once.
- ``"slurm"`` (`SlurmExecutor`): the pending cells as one Slurm job array; returns once submitted.

The last two need the optional ``submitit`` (``yolo_attn.experiments.submitit_executor``), imported when chosen.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, ClassVar, Protocol

from ultralytics.utils import LOGGER, colorstr

from yolo_attn.experiments.cell import ELSEWHERE_EXIT, run_cell
from yolo_attn.experiments.claims import CellQueue, is_free
from yolo_attn.experiments.files import (
    DONE,
    ELSEWHERE,
    FAILED,
    CellRecord,
    log_path,
    read_json,
    run_key,
    run_path,
    train_dir,
)
from yolo_attn.experiments.plan import Cell, Plan
from yolo_attn.experiments.tasks import get_task
from yolo_attn.utils.devices import parse_device

OnDone = Callable[[CellRecord], None]
PREFIX = colorstr("compare: ")


class Job(Protocol):
    """A submitted cell, by submitit's names (``submitit.Job`` is one)."""

    def done(self) -> bool:
        """Return True once the cell has ended (its record, if any, is written)."""
        ...

    def result(self) -> CellRecord:
        """Return the ended cell's record (``status`` "elsewhere" when another runner held it); may raise."""
        ...

    def cancel(self) -> None:
        """Stop the cell (this runner is interrupted); a rerun resumes it."""
        ...


class Where(Protocol):
    """The settings an executor reads (`yolo_attn.experiments.compare.CompareSettings` has them)."""

    @property
    def device(self) -> str | int | None:
        """Ultralytics device of the comparison."""
        ...

    @property
    def per_device(self) -> int:
        """Cells at once per device."""
        ...

    @property
    def slurm(self) -> dict[str, Any]:
        """``SlurmExecutor`` parameters."""
        ...

    @property
    def array_parallelism(self) -> int | None:
        """Most Slurm array tasks at once."""
        ...

    @property
    def wait(self) -> bool:
        """Wait for the cells another runner holds."""
        ...


Submit = Callable[["Cell", "Slot"], Job]  # starts one cell in one free slot


class Executor:
    """Where the cells of one comparison run: `submit` starts one, `run` settles a list of them.

    Args:
        plan (Plan): The comparison (already saved in ``out/plan.json``, which cells in other processes read).
        out (Path): Comparison folder.
        where (Where): Device, cells per device, Slurm options, whether to wait for cells held elsewhere.
    """

    name: ClassVar[str]
    waits: ClassVar[bool] = True  # False: `run` submits the cells and returns before they end (Slurm)
    poll_s: float = 1.0  # seconds between looks at the running cells

    def __init__(self, plan: Plan, out: Path, where: Where) -> None:
        self.plan, self.out, self.where = plan, Path(out), where

    def slots(self) -> list[Slot]:
        """Return where cells may run, one at a time each (default: ``per_device`` on each device, `device_slots`)."""
        return device_slots(self.where.device, self.where.per_device)

    def submit(self, cell: Cell, slot: Slot) -> Job:
        """Start ``cell`` in ``slot`` and return its job."""
        raise NotImplementedError

    def run(self, cells: Sequence[Cell], on_done: OnDone | None = None) -> list[CellRecord] | None:
        """Run ``cells`` through `run_slots` with this executor's slots and `submit`.

        Args:
            cells (Sequence[Cell]): Cells to run (usually the pending ones).
            on_done (OnDone | None): Called with each cell's record when it ends (e.g. to write a partial report).

        Returns:
            (list[CellRecord] | None): The records, in the order the cells ended; None when the cells were submitted
                and not waited for (``waits`` False).
        """
        return run_slots(
            cells, self.out, self.slots(), self.submit, on_done=on_done, poll_s=self.poll_s, wait=self.where.wait
        )


class SequentialExecutor(Executor):
    """One cell after another in this process, on the plan's device (a list of GPUs: one DDP job per cell)."""

    name = "sequential"

    def slots(self) -> list[Slot]:
        """Return this process's one slot."""
        return [Slot("" if self.plan.device is None else str(self.plan.device), label_text="")]

    def submit(self, cell: Cell, slot: Slot) -> Finished:
        """Run ``cell`` here and now; return its finished job."""
        LOGGER.info(f"compare: {cell.key}: training {self.plan.settings['epochs']} epochs")
        return Finished(run_cell(self.plan, cell, self.out))

    def run(self, cells: Sequence[Cell], on_done: OnDone | None = None) -> list[CellRecord]:
        """Run ``cells`` one after another (see `Executor.run`); one line per ended cell in the log."""
        return run_slots(
            cells, self.out, self.slots(), self.submit, on_done=on_done, wait=self.where.wait, say=LOGGER.info
        )


@dataclass
class Finished:
    """The job of a cell that ran to its end in this process (`SequentialExecutor`)."""

    record: CellRecord

    def done(self) -> bool:
        """Return True: the cell ran inside ``submit``."""
        return True

    def result(self) -> CellRecord:
        """Return the cell's record."""
        return self.record

    def cancel(self) -> None:
        """Do nothing: the cell has ended."""


class ParallelExecutor(Executor):
    """Cells side by side, one per device slot, each in its own process pinned to its GPU, with its own log file.

    Progress lines go to ``stream`` (default stdout): on a terminal the lines of the running cells are redrawn in
    place; elsewhere a line is printed when a cell starts, finishes an epoch or ends.
    """

    name = "parallel"
    stream: IO[str] | None = None

    def submit(self, cell: Cell, slot: Slot) -> CellProcess:
        """Start ``python -m yolo_attn.experiments.cell`` for ``cell``, pinned to the slot's GPU, logging to a file."""
        command = [sys.executable, "-m", "yolo_attn.experiments.cell", "--out", str(self.out), "--key", cell.key]
        command += ["--device", slot.device]
        log = log_path(self.out, cell.key).open("a")
        log.write(f"$ {'CUDA_VISIBLE_DEVICES=' + slot.visible + ' ' if slot.visible else ''}{' '.join(command)}\n")
        log.flush()
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=child_env(slot))
        return CellProcess(cell, self.out, process, log)

    def run(self, cells: Sequence[Cell], on_done: OnDone | None = None) -> list[CellRecord]:
        """Run ``cells`` side by side (see `Executor.run`), showing one progress line per running cell."""
        (self.out / "logs").mkdir(parents=True, exist_ok=True)
        slots = self.slots()
        progress = _Progress(self.stream or sys.stdout, self.plan.settings["epochs"], self.out)
        progress.say(f"compare: {len(cells)} cells on {len(slots)} slot(s): {', '.join(s.label for s in slots)}")
        records = run_slots(
            cells,
            self.out,
            slots,
            self.submit,
            on_done=on_done,
            poll_s=self.poll_s,
            wait=self.where.wait,
            say=progress.say,
            show=progress.show,
        )
        progress.clear()
        return records


@dataclass
class CellProcess:
    """The job of a cell running in a child process (`ParallelExecutor`)."""

    cell: Cell
    out: Path
    process: subprocess.Popen
    log: IO[str]
    started: float = field(default_factory=time.time)

    def done(self) -> bool:
        """Return True once the process has exited (its log is closed then)."""
        if self.process.poll() is None:
            return False
        self.log.close()
        return True

    def result(self) -> CellRecord:
        """Return the record the process wrote: "elsewhere" if it found the cell claimed, failed if it wrote none."""
        if self.process.returncode == ELSEWHERE_EXIT:  # claimed by another runner just before the child
            return {"stem": self.cell.stem, "seed": self.cell.seed, "status": ELSEWHERE}
        return written_record(self.out, self.cell, self.started) or failed_record(
            self.cell, f"process exited with code {self.process.returncode} before writing its record"
        )

    def cancel(self) -> None:
        """Terminate the process and wait for it."""
        self.process.terminate()
        self.process.wait()
        self.log.close()


class LocalExecutor(Executor):
    """Cells as jobs of submitit's local executor, at most one per device slot at once (needs ``submitit``).

    submitit's pickles and logs go to ``out/slurm/``; ``out/slurm/submitted.json`` says which job runs which cell.
    The jobs `submit` returns are submitit's own ``submitit.Job``.
    """

    name = "local"
    poll_s: float = 0.5

    def __init__(self, plan: Plan, out: Path, where: Where) -> None:
        import submitit  # optional (the slurm extra): imported when this executor is chosen

        super().__init__(plan, out, where)
        self.executor = submitit.LocalExecutor(folder=self.out / "slurm" / "%j")
        self.submitted: list[tuple[Cell, Any]] = []

    def submit(self, cell: Cell, slot: Slot) -> Job:
        """Submit ``cell`` as a local job on the slot's device (its GPU made the job's only visible one)."""
        from yolo_attn.experiments.submitit_executor import LOCAL_TIMEOUT_MIN, CellJob, record_jobs

        gpus = {"gpus_per_node": 1, "visible_gpus": (int(slot.visible),)} if slot.visible else {}
        self.executor.update_parameters(timeout_min=LOCAL_TIMEOUT_MIN, **gpus)
        job = self.executor.submit(CellJob(), str(self.out), cell.key, slot.device)
        self.submitted.append((cell, job))
        record_jobs(self.out, [c for c, _ in self.submitted], [j for _, j in self.submitted], "local")
        return job


class SlurmExecutor(Executor):
    """The pending cells as ONE Slurm job array (needs ``submitit``); `run` returns once it is submitted.

    Cells whose array task is still queued or running, or that another runner holds, are not submitted again. Each
    task runs ``CellJob``, requeued on preemption or timeout (see ``yolo_attn.experiments.submitit_executor``). The
    jobs `submit` returns are submitit's own ``submitit.Job``; the report comes with ``compare --out DIR --report``.
    """

    name = "slurm"
    waits = False

    def __init__(self, plan: Plan, out: Path, where: Where) -> None:
        import submitit  # optional (the slurm extra): imported when this executor is chosen

        super().__init__(plan, out, where)
        self.executor = submitit.SlurmExecutor(folder=self.out / "slurm" / "%j")
        params = {"job_name": f"yolo-attn-{self.out.name}", **where.slurm}
        if where.array_parallelism:
            params["array_parallelism"] = int(where.array_parallelism)
        self.executor.update_parameters(**params)

    def slots(self) -> list[Slot]:
        """Return no slot: Slurm places the array's tasks."""
        return []

    def submit(self, cell: Cell, slot: Slot | None = None) -> Job:
        """Submit ``cell`` as a Slurm job (an array task inside ``executor.batch()``) on the plan's device."""
        from yolo_attn.experiments.submitit_executor import CellJob

        return self.executor.submit(CellJob(), str(self.out), cell.key, self.plan.device)

    def run(self, cells: Sequence[Cell], on_done: OnDone | None = None) -> list[CellRecord] | None:
        """Submit the cells not queued or held elsewhere as one job array; print how to watch it.

        Returns:
            (list[CellRecord] | None): None when cells were submitted or are still queued or running elsewhere;
                an empty list when there was nothing left to run (the report can be written now).
        """
        from yolo_attn.experiments.submitit_executor import queued_in_slurm, record_jobs, watch_hint

        queued = queued_in_slurm(self.out)
        elsewhere = [c.key for c in cells if c.key in queued or not is_free(self.out, c.key)]
        if elsewhere:
            LOGGER.info(f"{PREFIX}not resubmitted, queued or running already: {', '.join(elsewhere)}")
        cells = [cell for cell in cells if cell.key not in elsewhere]
        if cells:
            with self.executor.batch():
                jobs = [self.submit(cell) for cell in cells]
            record_jobs(self.out, cells, jobs, "slurm", keep=queued)
            print(watch_hint(jobs, self.out), flush=True)
        return None if cells or elsewhere else []


EXECUTORS: dict[str, type[Executor]] = {
    executor.name: executor for executor in (SequentialExecutor, ParallelExecutor, LocalExecutor, SlurmExecutor)
}


@dataclass
class Running:
    """A submitted cell as `run_slots` tracks it: the cell, its slot, its job and when it started."""

    cell: Cell
    slot: Slot
    job: Job
    started: float = field(default_factory=time.time)


def run_slots(
    cells: Sequence[Cell],
    out: Path,
    slots: Sequence[Slot],
    submit: Submit,
    on_done: OnDone | None = None,
    poll_s: float = 1.0,
    wait: bool = True,
    say: Callable[[str], None] | None = None,
    show: Callable[[Sequence[Running]], None] | None = None,
) -> list[CellRecord]:
    """The slot loop every executor runs: one cell per free slot at a time, until every cell has a record.

    Cells that another runner holds (``yolo_attn.experiments.claims``) are not started: with ``wait`` they are looked
    at again until they finish there (their record is taken) or their claim is freed (then they run here). A cell
    whose job ends with a record "elsewhere" goes back to the queue; a job whose ``result()`` raises (a submitit job
    that crashed or was killed) gives the record its cell wrote since it started, or a failed record (not saved).
    When the loop is interrupted, the running jobs are cancelled.

    Args:
        cells (Sequence[Cell]): Cells to run.
        out (Path): Comparison folder.
        slots (Sequence[Slot]): Where cells may run, one at a time each.
        submit (Submit): Starts a cell in a slot and returns its `Job` (an executor's ``submit``).
        on_done (OnDone | None): Called in this process with each cell's record when it ends.
        poll_s (float): Seconds between looks at the running cells.
        wait (bool): Wait for the cells held elsewhere (True) or leave them to their owners.
        say (Callable[[str], None] | None): Where the line of each ended cell goes (None: nowhere).
        show (Callable[[Sequence[Running]], None] | None): Called with the running cells after every look.

    Returns:
        (list[CellRecord]): The records of the cells, in the order they ended.
    """
    queue, free = CellQueue(cells, out, wait), list(slots)
    running: list[Running] = []
    records: list[CellRecord] = []

    def settle(record: CellRecord, where: str) -> None:
        records.append(record)
        if say is not None:
            say(f"compare: {_key(record)}{where}: {_outcome(record)}")
        if on_done is not None:
            on_done(record)

    try:
        while queue or running:
            while queue and free:
                cell, record = queue.next()
                if record is not None:
                    settle(record, " (elsewhere)")
                elif cell is None:
                    break
                elif not is_free(out, cell.key):  # a submitted cell would find it claimed: don't start one
                    queue.held_elsewhere(cell)
                else:
                    slot = free.pop(0)
                    running.append(Running(cell, slot, submit(cell, slot)))
            for run in [r for r in running if r.job.done()]:
                running.remove(run)
                free.append(run.slot)
                record = _result(run, out)
                if record["status"] == ELSEWHERE:  # claimed by another runner just before the cell started
                    queue.held_elsewhere(run.cell)
                else:
                    settle(record, f" ({run.slot.label})" if run.slot.label else "")
            if show is not None:
                show(running)
            if running:
                time.sleep(poll_s)
            elif queue:
                time.sleep(queue.wait_s())
    except BaseException:
        for run in running:  # the cells this call started; their JSON is not written, a rerun resumes them
            run.job.cancel()
        raise
    return records


def _result(run: Running, out: Path) -> CellRecord:
    """Return an ended job's record; a job that raised gives what its cell wrote since, or a failed record."""
    try:
        return run.job.result()
    except Exception as error:
        return written_record(out, run.cell, run.started) or failed_record(run.cell, f"{type(error).__name__}: {error}")


def written_record(out: Path, cell: Cell, since: float) -> CellRecord | None:
    """Return the record of ``cell`` written after ``since`` (Unix seconds), or None."""
    path = run_path(out, cell.key)
    record = read_json(path) if path.exists() else {}
    return record if record and record.get("ended", 0) >= since else None


def failed_record(cell: Cell, error: str) -> CellRecord:
    """Return the record of a cell whose runner ended without writing one (reported, not saved)."""
    return {"stem": cell.stem, "seed": cell.seed, "status": FAILED, "error": error}


@dataclass(frozen=True)
class Slot:
    """A place one cell runs at a time.

    Attributes:
        device (str): Ultralytics device the cell is given (``"0"`` for a pinned GPU, ``"cpu"``, ``"mps"``).
        visible (str | None): ``CUDA_VISIBLE_DEVICES`` of the cell's process (the physical GPU), None to inherit.
        label_text (str | None): Its name in progress lines, None for the default (`label`).
    """

    device: str
    visible: str | None = None
    label_text: str | None = None

    @property
    def label(self) -> str:
        """Short name for progress lines, e.g. ``GPU 3`` or ``cpu`` ("" for this process's own slot)."""
        if self.label_text is not None:
            return self.label_text
        return f"GPU {self.visible}" if self.visible is not None else self.device


def device_slots(device: str | int | None, per_device: int = 1) -> list[Slot]:
    """Return the slots of ``--parallel``: ``per_device`` slots on each listed device.

    GPUs are interleaved (``0,1`` with 2 per device gives GPU 0, GPU 1, GPU 0, GPU 1) so that the first cells
    spread over all GPUs.

    Args:
        device (str | int | None): ``"0,1,..."`` (GPU indices as this machine numbers them), ``"cpu"``, ``"mps"``,
            or None for every GPU of the machine (CPU if it has none).
        per_device (int): Cells run at once on each device.

    Returns:
        (list[Slot]): The slots.
    """
    import torch

    if per_device < 1:
        raise ValueError(f"--per-device must be at least 1, got {per_device}")
    spec = parse_device(device)
    if spec.kind in {"cpu", "mps"}:
        return [Slot(spec.kind) for _ in range(per_device)]
    count = torch.cuda.device_count()
    if not spec.indices:  # automatic, or a bare "cuda": every GPU of the machine
        if count == 0:
            return [Slot("cpu") for _ in range(per_device)]
        gpus = [str(i) for i in range(count)]
    else:
        gpus = list(spec.indices)
        bad = [g for g in gpus if int(g) >= count]
        if bad or len(set(gpus)) != len(gpus):
            raise ValueError(
                f"--parallel --device {device}: expected distinct GPU indices below {count} (this machine has {count} "
                f"CUDA device(s)), or 'cpu'; bad: {', '.join(bad) or 'repeated index'}"
            )
    return [Slot("0", gpu) for _ in range(per_device) for gpu in gpus]


def child_env(slot: Slot) -> dict[str, str]:
    """Return the environment of a cell's process: this one, the slot's GPU pinned, this ``yolo_attn`` importable.

    Args:
        slot (Slot): Where the cell runs.

    Returns:
        (dict[str, str]): Environment variables.
    """
    import yolo_attn

    env = dict(os.environ)
    if slot.visible is not None:
        env["CUDA_VISIBLE_DEVICES"] = slot.visible  # set before the child starts, so before Ultralytics sees it
    package_root = str(Path(yolo_attn.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH", "")]))
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def _key(record: dict[str, Any]) -> str:
    return run_key(record["stem"], record["seed"])


def _outcome(record: dict[str, Any]) -> str:
    if record.get("status", DONE) == DONE:
        label, value = get_task((record.get("settings") or {}).get("task")).headline(record.get("metrics"))
        resumed = f", resumed at epoch {record['resumed_at_epoch']}" if record.get("resumed_at_epoch") else ""
        return (
            f"done in {record.get('duration_s', 0):.0f} s, {label} {value:.4f}{resumed}"
            if value is not None
            else "done"
        )
    return f"FAILED: {record.get('error')}"


def epochs_done(out: Path, key: str) -> int:
    """Return how many epochs a cell's training has logged (rows of its ``results.csv``)."""
    path = train_dir(out, key) / "results.csv"
    if not path.exists():
        return 0
    return max(0, len(path.read_text().strip().splitlines()) - 1)


class _Progress:
    """One line per running cell: redrawn in place on a terminal, printed on change elsewhere."""

    def __init__(self, stream: IO[str], epochs: int, out: Path) -> None:
        self.stream, self.epochs, self.out = stream, epochs, out
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self.drawn = 0
        self.last: dict[str, int] = {}

    def say(self, text: str) -> None:
        self.clear()
        print(text, file=self.stream, flush=True)

    def clear(self) -> None:
        if self.tty and self.drawn:
            self.stream.write(f"\x1b[{self.drawn}F\x1b[J")
            self.stream.flush()
        self.drawn = 0

    def show(self, running: Sequence[Running]) -> None:
        lines = []
        for job in running:
            epochs = epochs_done(self.out, job.cell.key)
            elapsed = time.time() - job.started
            line = (
                f"  {job.cell.key:<32} {job.slot.label:<8} epoch {epochs}/{self.epochs}  {elapsed / 60:5.1f} min  "
                f"{log_path(self.out, job.cell.key).relative_to(self.out)}"
            )
            if self.tty or self.last.get(job.cell.key) != epochs:
                lines.append(line)
            self.last[job.cell.key] = epochs
        if self.tty:
            self.clear()
        if lines:
            print("\n".join(lines), file=self.stream, flush=True)
            self.drawn = len(lines) if self.tty else 0
