"""Cell claims: a cell trains in one place at a time, however many ``compare`` runs, array tasks or reruns meet.

Before a cell trains, its runner claims ``<out>/claims/<key>.lock`` and writes who it is beside it
(``<key>.owner.json``: host, pid, Slurm job and array task, start time). Another runner on the same folder does not
touch a claimed cell: it runs the cells nobody holds and shows the claimed ones as running elsewhere.

The lock is py-filelock's ``SoftFileLease``, chosen because it is the soft (marker-file) lock of a well-kept library
that already solves the three hard parts: the marker is created with ``O_CREAT | O_EXCL``, which is atomic on local
file systems and on NFSv3+ (``fcntl``/``flock`` locks are not reliable on NFS and die silently with a client); a
heartbeat thread refreshes it while the owner lives; and a contender takes over a claim whose owner is gone, at once
when the owner was a process of this host that has exited (pid and process start time checked, so a recycled pid is
not mistaken for it), or once the marker has stayed unchanged for a whole lease when the owner ran on another host.
A ``kill -9`` therefore never blocks a cell for more than one lease.

One case the lease alone would make wait: a Slurm task that Slurm requeues (preemption, ``scontrol requeue``,
submitit's own requeue before the time limit) keeps its job and array task ids but may restart on another node. Its
new attempt takes over its own claim at once: the old attempt has been stopped by Slurm before the new one starts.
"""

from __future__ import annotations

import os
import socket
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from filelock import LeaseCompromise, SoftFileLease, Timeout

from yolo_attn.experiments.files import DONE, read_json, run_path, write_json_atomic
from yolo_attn.experiments.plan import Cell

#: Seconds a claim stays valid without a heartbeat; every runner of a folder must use the same value.
LEASE_S = float(os.environ.get("YOLO_ATTN_CLAIM_LEASE_S", "120"))
#: Seconds between two looks at the cells that run elsewhere.
POLL_S = 5.0


def claims_dir(out: Path) -> Path:
    """Return the folder of a comparison's claims."""
    return Path(out) / "claims"


def slurm_task() -> str | None:
    """Return this process's Slurm task, ``<array job>_<task>`` in an array, else the job id; None outside Slurm."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array and task:
        return f"{array}_{task}"
    return os.environ.get("SLURM_JOB_ID") or None


def this_owner() -> dict[str, Any]:
    """Return who this process is, as a claim records it."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "slurm": slurm_task(), "since": time.time()}


def describe(owner: dict[str, Any] | None) -> str:
    """Return a claim's owner in words, e.g. ``host node3, pid 4711, Slurm task 5512_3``."""
    if not owner:
        return "owner unknown"
    text = f"host {owner.get('host')}, pid {owner.get('pid')}"
    return text + (f", Slurm task {owner['slurm']}" if owner.get("slurm") else "")


class CellClaim:
    """The claim on one cell of a comparison folder.

    Args:
        out (Path): Comparison folder.
        key (str): Cell name, e.g. ``yolov8n_seed0``.
        lease_s (float): Lease of the claim in seconds (``LEASE_S``; all runners of a folder must agree).
    """

    def __init__(self, out: Path, key: str, lease_s: float = LEASE_S) -> None:
        folder = claims_dir(out)
        folder.mkdir(parents=True, exist_ok=True)
        self.key = key
        self.lock_path, self.owner_path = folder / f"{key}.lock", folder / f"{key}.owner.json"
        self.lost: LeaseCompromise | None = None
        self._lease = SoftFileLease(self.lock_path, lease_duration=lease_s, timeout=0, on_compromise=self._on_lost)

    @property
    def held(self) -> bool:
        """True while this process holds the claim."""
        return self._lease.is_locked

    def acquire(self) -> bool:
        """Claim the cell without waiting; return False when someone else holds it."""
        self._take_over_own_slurm_claim()
        try:
            self._lease.acquire()
        except Timeout:
            return False
        self.lost = None
        write_json_atomic(self.owner_path, this_owner())
        return True

    def release(self) -> None:
        """Give the claim up (a no-op when not held)."""
        if self.held:
            self.owner_path.unlink(missing_ok=True)
            self._lease.release()

    def owner(self, patience_s: float = 1.0) -> dict[str, Any] | None:
        """Return the recorded owner of the claim, or None when there is none.

        A runner writes its owner file just after it takes the lock, so a claim without one yet is looked at again
        for up to ``patience_s`` seconds.
        """
        deadline = time.monotonic() + patience_s
        while True:
            try:
                return read_json(self.owner_path)
            except (OSError, ValueError):
                if not self.lock_path.exists() or time.monotonic() > deadline:
                    return None
                time.sleep(0.1)

    def _take_over_own_slurm_claim(self) -> None:
        """Break the claim left by an earlier attempt of this very Slurm task (requeued, possibly on another node)."""
        ours, owner = slurm_task(), self.owner()
        if ours is None or owner is None or owner.get("slurm") != ours or not self.lock_path.exists():
            return
        if (owner.get("host"), owner.get("pid")) != (socket.gethostname(), os.getpid()):
            from ultralytics.utils import LOGGER

            LOGGER.info(f"compare: {self.key}: Slurm task {ours} was requeued; taking over its own claim")
            self.lock_path.unlink(missing_ok=True)

    def _on_lost(self, compromise: LeaseCompromise) -> None:
        """Heartbeat callback: the claim was taken from this process (its heartbeat failed for a whole lease)."""
        from ultralytics.utils import LOGGER

        self.lost = compromise
        LOGGER.warning(f"compare: the claim on {self.key} was lost ({compromise.reason}); another runner may train it")

    def __enter__(self) -> CellClaim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def is_free(out: Path, key: str) -> bool:
    """Return True when nobody live holds the cell's claim (a dead owner's claim is cleared on the way).

    A probe: the claim is taken and given back at once, so the answer may be stale by the time it is read. The runner
    that trains the cell claims it for real.
    """
    claim = CellClaim(out, key)
    if claim.acquire():
        claim.release()
        return True
    return False


def report_lock(out: Path) -> SoftFileLease:
    """Return the lock that the runners of a comparison folder take, waiting, to measure costs and write the report."""
    claims_dir(out).mkdir(parents=True, exist_ok=True)
    return SoftFileLease(claims_dir(out) / "report.lock", lease_duration=LEASE_S, timeout=-1, poll_interval=0.2)


class CellQueue:
    """The cells an executor still has to settle, with the ones held elsewhere coming back every ``poll_s``.

    A cell held elsewhere is tried again later until its claim is free (its owner finished or died; then the cell's
    record decides: finished, or run it) or, with ``wait=False``, it is left to its owner and reported. A record that
    another runner wrote after this queue was made settles the cell, done or failed: a failure there is not retried
    at once (rerun the command for that).

    Args:
        cells (Sequence[Cell]): Cells to run, in order.
        out (Path): Comparison folder.
        wait (bool): Wait for cells held elsewhere (True) or leave them to their owners.
        poll_s (float): Seconds between two tries of a cell held elsewhere.
    """

    def __init__(self, cells: Sequence[Cell], out: Path, wait: bool = True, poll_s: float = POLL_S) -> None:
        self.out, self.wait, self.poll_s = Path(out), wait, poll_s
        self.since = time.time()
        self._queue: deque[tuple[Cell, float]] = deque((cell, 0.0) for cell in cells)
        self.elsewhere: dict[str, str] = {}  # cell key -> owner in words, while held elsewhere
        self.left: dict[str, str] = {}  # cells left to their owners (wait=False)

    def __bool__(self) -> bool:
        return bool(self._queue)

    def next(self) -> tuple[Cell | None, dict[str, Any] | None]:
        """Return the next cell due, or the record of a cell that another runner settled meanwhile.

        Returns:
            (tuple[Cell | None, dict | None]): ``(cell, None)`` to run, ``(None, record)`` settled elsewhere, or
                ``(None, None)`` when nothing is due yet (see ``wait_s``).
        """
        if not self._queue or self._queue[0][1] > time.time():
            return None, None
        cell, _ = self._queue.popleft()
        record = self.settled_elsewhere(cell)
        if record is not None:
            self.elsewhere.pop(cell.key, None)
            return None, record
        return cell, None

    def held_elsewhere(self, cell: Cell) -> None:
        """Note that ``cell`` is claimed by another runner: try it again later, or leave it (``wait=False``)."""
        from ultralytics.utils import LOGGER

        owner = describe(CellClaim(self.out, cell.key).owner())
        if self.wait:
            self._queue.append((cell, time.time() + self.poll_s))
            if self.elsewhere.get(cell.key) != owner:
                LOGGER.info(f"compare: {cell.key}: running elsewhere ({owner}); waiting for it")
            self.elsewhere[cell.key] = owner
        else:
            self.left[cell.key] = owner
            LOGGER.info(f"compare: {cell.key}: running elsewhere ({owner}); left to it")

    def wait_s(self) -> float:
        """Seconds until the next cell is due (0 when one is due or none is left)."""
        return max(0.0, self._queue[0][1] - time.time()) if self._queue else 0.0

    def settled_elsewhere(self, cell: Cell) -> dict[str, Any] | None:
        """Return the cell's record if it was written after this queue was made (by another runner), else None."""
        path = run_path(self.out, cell.key)
        if not path.exists():
            return None
        record = read_json(path)
        if record.get("status", DONE) == DONE or record.get("ended", 0) >= self.since:
            return record
        return None
