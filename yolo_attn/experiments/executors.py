"""Executors decide only where cells run; every one runs the same ``run_cell`` through the same slot loop.

``run_slots(cells, out, slots, launch)`` is the one loop: it takes the next pending cell that no other runner holds,
starts it in a free slot with the executor's launcher (a `Launcher`, returning a `Launched` cell: ``finished()``,
``result()``, ``stop()``), collects the records and calls ``on_done``. The executors are launchers:

- ``run_sequential``: one cell after another in this process (each cell may itself be one Ultralytics DDP job over
  several GPUs when the device is a list).
- ``run_parallel``: one cell per device slot at a time, each in its own process (``python -m
  yolo_attn.experiments.cell``) started with ``CUDA_VISIBLE_DEVICES`` set to its one GPU and ``device=0`` inside, its
  console output in ``logs/<key>.log``; the console shows one progress line per running cell.
- Slurm job arrays and submitit's local executor: ``yolo_attn.experiments.submitit_executor`` (optional ``submitit``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from yolo_attn.experiments.cell import ELSEWHERE_EXIT, run_cell
from yolo_attn.experiments.claims import CellQueue, is_free
from yolo_attn.experiments.files import (
    DONE,
    ELSEWHERE,
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


def run_sequential(
    plan: Plan, cells: Sequence[Cell], out: Path, on_done: OnDone | None = None, wait: bool = True
) -> list[CellRecord]:
    """Run ``cells`` one after another in this process, on the plan's device (`run_slots` with one in-process slot).

    Cells that another runner holds are left to it; with ``wait`` they are looked at again every few seconds until
    they finish there (their record is returned) or their claim is freed (then they run here).

    Args:
        plan (Plan): The comparison.
        cells (Sequence[Cell]): Cells to run (usually the pending ones).
        out (Path): Comparison folder.
        on_done (OnDone | None): Called with each cell's record when it ends (e.g. to write a partial report).
        wait (bool): Wait for the cells held elsewhere (True) or leave them to their owners.

    Returns:
        (list[CellRecord]): The records, in the order the cells ended.
    """
    from ultralytics.utils import LOGGER

    def launch(cell: Cell, slot: Slot) -> Launched:
        LOGGER.info(f"compare: {cell.key}: training {plan.settings['epochs']} epochs")
        return _Done(cell, slot, run_cell(plan, cell, out))

    slot = Slot("" if plan.device is None else str(plan.device), label_text="")
    return run_slots(cells, out, [slot], launch, on_done=on_done, wait=wait, say=LOGGER.info)


class Launched(Protocol):
    """A cell started in a slot by an executor's launcher: what `run_slots` needs to know of it."""

    cell: Cell
    slot: Slot

    def finished(self) -> bool:
        """Return True once the cell has ended (its record, if any, is written)."""
        ...

    def result(self) -> CellRecord | None:
        """Return the ended cell's record, or None when it found its cell claimed by another runner."""
        ...

    def stop(self) -> None:
        """Stop the cell (this runner is interrupted); a rerun resumes it."""
        ...


Launcher = Callable[["Cell", "Slot"], Launched]  # starts one cell in one free slot


@dataclass
class _Done:
    """A cell run to its end in this process (``run_sequential``)."""

    cell: Cell
    slot: Slot
    record: CellRecord

    def finished(self) -> bool:
        return True

    def result(self) -> CellRecord | None:
        return None if self.record["status"] == ELSEWHERE else self.record

    def stop(self) -> None:
        pass


def run_slots(
    cells: Sequence[Cell],
    out: Path,
    slots: Sequence[Slot],
    launch: Launcher,
    on_done: OnDone | None = None,
    poll_s: float = 1.0,
    wait: bool = True,
    say: Callable[[str], None] | None = None,
    show: Callable[[Sequence[Launched]], None] | None = None,
) -> list[CellRecord]:
    """The slot loop every executor runs: one cell per free slot at a time, until every cell has a record.

    Cells that another runner holds (``yolo_attn.experiments.claims``) are not started: with ``wait`` they are looked
    at again until they finish there (their record is taken) or their claim is freed (then they run here). A cell
    that ends claimed elsewhere goes back to the queue. When the loop is interrupted, the running cells are stopped.

    Args:
        cells (Sequence[Cell]): Cells to run.
        out (Path): Comparison folder.
        slots (Sequence[Slot]): Where cells may run, one at a time each.
        launch (Launcher): Starts a cell in a slot (in this process, a child process, a submitit job).
        on_done (OnDone | None): Called in this process with each cell's record when it ends.
        poll_s (float): Seconds between looks at the running cells.
        wait (bool): Wait for the cells held elsewhere (True) or leave them to their owners.
        say (Callable[[str], None] | None): Where the line of each ended cell goes (None: nowhere).
        show (Callable[[Sequence[Launched]], None] | None): Called with the running cells after every look.

    Returns:
        (list[CellRecord]): The records of the cells, in the order they ended.
    """
    queue, free = CellQueue(cells, out, wait), list(slots)
    running: list[Launched] = []
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
                elif not is_free(out, cell.key):  # a launched cell would find it claimed: don't start one
                    queue.held_elsewhere(cell)
                else:
                    running.append(launch(cell, free.pop(0)))
            for job in [j for j in running if j.finished()]:
                running.remove(job)
                free.append(job.slot)
                record = job.result()
                if record is None:  # claimed by another runner just before the cell started
                    queue.held_elsewhere(job.cell)
                else:
                    settle(record, f" ({job.slot.label})" if job.slot.label else "")
            if show is not None:
                show(running)
            if running:
                time.sleep(poll_s)
            elif queue:
                time.sleep(queue.wait_s())
    except BaseException:
        for job in running:  # the cells this call started; their JSON is not written, a rerun resumes them
            job.stop()
        raise
    return records


@dataclass(frozen=True)
class Slot:
    """A place one cell runs at a time.

    Attributes:
        device (str): Ultralytics device the cell is given (``"0"`` for a pinned GPU, ``"cpu"``, ``"mps"``).
        visible (str | None): ``CUDA_VISIBLE_DEVICES`` of the cell's process (the physical GPU), None to inherit.
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


@dataclass
class _Running:
    """A cell running in a child process (``run_parallel``)."""

    cell: Cell
    slot: Slot
    process: subprocess.Popen
    log: IO[str]
    started: float
    out: Path

    def finished(self) -> bool:
        if self.process.poll() is None:
            return False
        self.log.close()
        return True

    def result(self) -> CellRecord | None:
        if self.process.returncode == ELSEWHERE_EXIT:  # claimed by another runner just before the child
            return None
        return _record_of(self, self.out)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait()
        self.log.close()


def run_parallel(
    plan: Plan,
    cells: Sequence[Cell],
    out: Path,
    slots: Sequence[Slot],
    on_done: OnDone | None = None,
    poll_s: float = 1.0,
    stream: IO[str] | None = None,
    wait: bool = True,
) -> list[CellRecord]:
    """Run ``cells`` side by side, one per slot at a time, each in its own process with its own log file.

    `run_slots` with a launcher that starts ``python -m yolo_attn.experiments.cell`` pinned to the slot's GPU; cells
    held by another runner are handled as in ``run_sequential``.

    Args:
        plan (Plan): The comparison (already saved in ``out/plan.json``, which the child processes read).
        cells (Sequence[Cell]): Cells to run.
        out (Path): Comparison folder.
        slots (Sequence[Slot]): Where cells may run (``device_slots``).
        on_done (OnDone | None): Called in this process with each cell's record when it ends.
        poll_s (float): Seconds between progress updates.
        stream (IO[str] | None): Where progress lines go (default stdout). On a terminal the lines of the running
            cells are redrawn in place; elsewhere a line is printed when a cell starts, finishes an epoch or ends.
        wait (bool): Wait for the cells held elsewhere (True) or leave them to their owners.

    Returns:
        (list[CellRecord]): The records of the cells, in the order they ended.
    """
    stream = stream or sys.stdout
    out = Path(out)
    (out / "logs").mkdir(parents=True, exist_ok=True)
    progress = _Progress(stream, plan.settings["epochs"], out)
    progress.say(f"compare: {len(cells)} cells on {len(slots)} slot(s): {', '.join(s.label for s in slots)}")
    records = run_slots(
        cells,
        out,
        slots,
        lambda cell, slot: _start(cell, slot, out),
        on_done=on_done,
        poll_s=poll_s,
        wait=wait,
        say=progress.say,
        show=progress.show,
    )
    progress.clear()
    return records


def _start(cell: Cell, slot: Slot, out: Path) -> _Running:
    command = [sys.executable, "-m", "yolo_attn.experiments.cell", "--out", str(out), "--key", cell.key]
    command += ["--device", slot.device]
    log = log_path(out, cell.key).open("a")
    log.write(f"$ {'CUDA_VISIBLE_DEVICES=' + slot.visible + ' ' if slot.visible else ''}{' '.join(command)}\n")
    log.flush()
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=child_env(slot))
    return _Running(cell, slot, process, log, time.time(), out)


def _record_of(job: _Running, out: Path) -> CellRecord:
    """Return the record the child wrote; a child that died before writing one gets a failed record (not saved)."""
    path = run_path(out, job.cell.key)
    record = read_json(path) if path.exists() else {}
    if not record or record.get("ended", 0) < job.started:
        return {
            "stem": job.cell.stem,
            "seed": job.cell.seed,
            "status": "failed",
            "error": f"process exited with code {job.process.returncode} before writing its record",
        }
    return record


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

    def show(self, running: Sequence[_Running]) -> None:
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
