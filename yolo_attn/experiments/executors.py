"""Executors decide only where cells run; every one runs the same ``run_cell``.

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
from typing import IO, Any

from yolo_attn.devices import parse_device
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

OnDone = Callable[[CellRecord], None]


def run_sequential(
    plan: Plan, cells: Sequence[Cell], out: Path, on_done: OnDone | None = None, wait: bool = True
) -> list[CellRecord]:
    """Run ``cells`` one after another in this process, on the plan's device.

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

    records = []
    queue = CellQueue(cells, out, wait)
    while queue:
        cell, record = queue.next()
        if cell is None and record is None:
            time.sleep(queue.wait_s())
            continue
        if cell is not None:
            LOGGER.info(f"compare: {cell.key}: training {plan.settings['epochs']} epochs")
            record = run_cell(plan, cell, out)
            if record["status"] == ELSEWHERE:
                queue.held_elsewhere(cell)
                continue
        LOGGER.info(f"compare: {_key(record)}: {_outcome(record)}")
        records.append(record)
        if on_done is not None:
            on_done(record)
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

    @property
    def label(self) -> str:
        """Short name for progress lines, e.g. ``GPU 3`` or ``cpu``."""
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
    cell: Cell
    slot: Slot
    process: subprocess.Popen
    log: IO[str]
    started: float


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

    Cells held by another runner are handled as in ``run_sequential``.

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
    queue, free = CellQueue(cells, out, wait), list(slots)
    running: list[_Running] = []
    records: list[dict] = []
    progress = _Progress(stream, plan.settings["epochs"], out)
    progress.say(f"compare: {len(cells)} cells on {len(slots)} slot(s): {', '.join(s.label for s in slots)}")

    def settle(record: dict[str, Any], where: str = "") -> None:
        records.append(record)
        progress.say(f"compare: {_key(record)}{where}: {_outcome(record)}")
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
                elif not is_free(out, cell.key):  # a child would find it claimed: don't start one
                    queue.held_elsewhere(cell)
                else:
                    running.append(_start(cell, free.pop(0), out))
            for job in [j for j in running if j.process.poll() is not None]:
                running.remove(job)
                job.log.close()
                free.append(job.slot)
                if job.process.returncode == ELSEWHERE_EXIT:  # claimed by another runner just before the child
                    queue.held_elsewhere(job.cell)
                else:
                    settle(_record_of(job, out), f" ({job.slot.label})")
            progress.show(running)
            if running or queue:
                time.sleep(poll_s)
    except BaseException:
        for job in running:  # the cells this call started; their JSON is not written, a rerun resumes them
            job.process.terminate()
        for job in running:
            job.process.wait()
            job.log.close()
        raise
    progress.clear()
    return records


def _start(cell: Cell, slot: Slot, out: Path) -> _Running:
    command = [sys.executable, "-m", "yolo_attn.experiments.cell", "--out", str(out), "--key", cell.key]
    command += ["--device", slot.device]
    log = log_path(out, cell.key).open("a")
    log.write(f"$ {'CUDA_VISIBLE_DEVICES=' + slot.visible + ' ' if slot.visible else ''}{' '.join(command)}\n")
    log.flush()
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=child_env(slot))
    return _Running(cell, slot, process, log, time.time())


def _record_of(job: _Running, out: Path) -> dict[str, Any]:
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
