"""The files of a comparison folder: where each one lives, atomic JSON writes, and loading them back.

Layout of a comparison folder ``out``::

    out/
      plan.json                  the grid (models x seeds) and the settings every cell shares; written at start
      runs/<stem>_seed<s>.json   one per cell: ``status`` "done" (metrics, weights, timing) or "failed" (the error)
      logs/<stem>_seed<s>.log    a cell's console output when it ran in its own process (--parallel)
      train/<stem>_seed<s>/      the Ultralytics training folder (weights/last.pt, best.pt, results.csv, args.yaml)
      eval/<stem>_seed<s>/       detections and metrics written by ``yolo_attn.evaluation.coco_eval.evaluate`` (detect)
      claims/<key>.lock, .owner.json   the claim of a cell while a runner trains it (host, pid, Slurm task)
      slurm/                     submitit's pickles and the Slurm / local job logs (--executor slurm | local)
      costs/<stem>.json          params and GFLOPs of each model (measured once, cached)
      latency.json               batch-1 latency of the finished models, measured together (interleaved)
      compare.csv, compare.md, compare.png   the report: a pure function of the files above
      accuracy.png               classify: val top-1 per epoch of every run, from the runs' results.csv

Every JSON here is written to a temporary file in the same folder and renamed into place, so a reader (a report run
while cells train, another node of a cluster) never sees half a file. This module imports nothing from the rest of
``yolo_attn.experiments``.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, TypedDict

DEFAULT_ROOT = Path("runs") / "compare"
PLAN = "plan.json"
DONE, FAILED = "done", "failed"
ELSEWHERE = "elsewhere"  # a cell another runner holds: a record returned, never written


class CellRecord(TypedDict, total=False):
    """The record of one cell, ``runs/<key>.json`` (see `yolo_attn.experiments.cell.run_cell`).

    Every record has ``stem``, ``seed`` and ``status`` (``DONE``, ``FAILED`` or ``ELSEWHERE``, the last never
    written). A done record adds ``metrics`` (the task's evaluator result), ``weights``, ``train_dir``,
    ``resumed_at_epoch``, ``restarted``, ``transfer`` and ``engagement``; a failed one ``error`` and ``traceback``;
    one held elsewhere ``owner`` and ``error``. Written records also carry where and how the cell ran.
    """

    model: str
    stem: str
    seed: int
    status: str
    settings: dict[str, Any]
    device: str | None
    cuda_visible_devices: str | None
    pretrained: str | None
    pid: int
    host: str
    started: float
    ended: float
    duration_s: float
    finished_at: str
    versions: dict[str, str]
    metrics: dict[str, Any]
    weights: str
    train_dir: str
    resumed_at_epoch: int | None
    restarted: str | None
    transfer: dict[str, Any] | None
    engagement: dict[str, Any] | None
    error: str
    traceback: str
    owner: dict[str, Any] | None
    claim_lost: str


def default_out(root: Path = DEFAULT_ROOT) -> Path:
    """Return the next free ``root/exp``, ``root/exp2``, ... folder (not created)."""
    from ultralytics.utils.files import increment_path

    return increment_path(root / "exp", sep="")


def run_key(stem: str, seed: int) -> str:
    """Return a cell's name, e.g. ``yolov8n-cbam_seed0``."""
    return f"{stem}_seed{seed}"


def run_path(out: Path, key: str) -> Path:
    """Return the JSON path of the cell ``key``."""
    return Path(out) / "runs" / f"{key}.json"


def log_path(out: Path, key: str) -> Path:
    """Return the log file of the cell ``key`` (written when the cell runs in its own process)."""
    return Path(out) / "logs" / f"{key}.log"


def train_dir(out: Path, key: str) -> Path:
    """Return the Ultralytics training folder of the cell ``key``."""
    return Path(out) / "train" / key


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write ``obj`` as JSON to ``path`` so that ``path`` is never seen half-written.

    Args:
        path (Path): Target file; its folder must exist.
        obj (Any): JSON-serialisable object; numpy scalars/arrays and paths are converted.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private; give it the mode a plain open() would
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=2, default=_to_json)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    """Return the process umask (reading it means setting it, so it is set straight back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _to_json(obj: Any) -> Any:
    """Convert what ``json`` cannot write: numpy scalars and arrays (``.tolist()``), paths (``str``)."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def read_json(path: Path) -> Any:
    """Return the JSON content of ``path``."""
    return json.loads(Path(path).read_text())


def load_records(out: Path) -> list[dict[str, Any]]:
    """Return every cell record of a comparison folder, finished or failed, sorted by file name.

    Records written before cells had a status (no ``status`` key) count as finished.

    Args:
        out (Path): Comparison folder.

    Returns:
        (list[dict[str, Any]]): Records as the cells wrote them, each with ``status`` set.
    """
    records = []
    for path in sorted((Path(out) / "runs").glob("*.json")):
        record = read_json(path)
        record.setdefault("status", DONE)
        records.append(record)
    return records


def load_runs(out: Path) -> list[dict[str, Any]]:
    """Return the records of the finished cells (``status`` "done") of a comparison folder.

    Args:
        out (Path): Comparison folder.

    Returns:
        (list[dict[str, Any]]): Run records, sorted by file name.
    """
    return [r for r in load_records(out) if r["status"] == DONE]
