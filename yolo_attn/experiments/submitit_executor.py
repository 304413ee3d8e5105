"""What the submitit executors (``executors.LocalExecutor``, ``executors.SlurmExecutor``) submit and record.

Needs the optional ``submitit`` package (``pip install "yolo-attn[slurm]"``).

- Slurm: the pending cells (missing or failed) go out as ONE job array; ``--array-parallelism N`` caps how many of its
  tasks run at once. submitit's pickles and the job logs live in ``<out>/slurm/``. Each task runs ``CellJob``, which
  is ``Checkpointable``: on preemption or before the time limit (submitit's USR2 signal) its ``checkpoint`` requeues
  the same cell, and the cell continues Ultralytics training from its own ``last.pt``. A job that Slurm itself
  requeues (``scontrol requeue``, preemption in requeue mode) reruns the same cell and resumes the same way.
- Local: the same ``CellJob`` through ``submitit.LocalExecutor`` (no queue), at most one job per device slot at once.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import submitit
from submitit.helpers import Checkpointable, DelayedSubmission

from yolo_attn.experiments.files import CellRecord, write_json_atomic
from yolo_attn.experiments.plan import Cell

LOCAL_TIMEOUT_MIN = 7 * 24 * 60  # submitit's local executor kills jobs after 2 minutes unless told otherwise
_SPLIT = re.compile(r",(?=\s*[A-Za-z_][\w-]*\s*=)")  # commas that start a new key=value, not those inside a value


class CellJob(Checkpointable):
    """One cell as a submitit job; requeued on preemption or timeout, resuming from the cell's ``last.pt``."""

    def __call__(self, out: str, key: str, device: str | None = None) -> CellRecord:
        """Run the cell ``key`` of the comparison folder ``out``.

        Args:
            out (str): Comparison folder holding ``plan.json``.
            key (str): Cell name, e.g. ``yolov8n_seed0``.
            device (str | None): Ultralytics device of the cell; None uses the plan's (Ultralytics' default if unset).

        Returns:
            (CellRecord): The cell's record, ``status`` "done" or "failed" (as written to ``out/runs/<key>.json``),
                or "elsewhere" when another runner holds the cell (nothing was touched): what ``job.result()`` gives.
        """
        from yolo_attn.experiments.cell import cell_status, pin_cuda_device, run_cell
        from yolo_attn.experiments.files import read_json, run_path
        from yolo_attn.utils.offline import apply_offline_env, install_local_font

        apply_offline_env()
        pin_cuda_device()
        import yolo_attn  # noqa: F401  (registers the blocks)
        from yolo_attn.experiments.plan import load_plan

        install_local_font()
        plan = load_plan(Path(out))
        cell = plan.cell(key)
        if cell_status(Path(out), cell) == "done":  # a requeued task whose cell finished in the grace period
            return read_json(run_path(Path(out), key))
        return run_cell(plan, cell, Path(out), device)

    def checkpoint(self, out: str, key: str, device: str | None = None) -> DelayedSubmission:
        """Requeue the same cell: the next attempt finds the training's ``last.pt`` and continues from it.

        Ultralytics writes ``last.pt`` after every epoch, so nothing needs saving here: at most the epoch in progress
        is lost.

        Args:
            out (str): Comparison folder.
            key (str): Cell name.
            device (str | None): Ultralytics device of the cell.

        Returns:
            (DelayedSubmission): The call to run again.
        """
        return DelayedSubmission(CellJob(), out, key, device)


def parse_slurm_options(text: str | Sequence[str] | None) -> dict[str, Any]:
    """Parse ``--slurm partition=gpu,time=720,gpus_per_task=1,cpus_per_task=8,account=x,mem_gb=32`` for submitit.

    Keys are submitit's ``SlurmExecutor`` parameters (sbatch options with ``_`` for ``-``); ``mem_gb`` is memory in
    GB. Any other key, e.g. ``reservation=r1`` or ``mail-type=END``, is passed to sbatch as it is (submitit's
    ``additional_parameters``). A comma inside a value is kept (``nodelist=n1,n2`` works) as long as the text after
    it is not ``key=``. Integers are typed.

    Args:
        text (str | Sequence[str] | None): One or more ``key=value[,key=value...]`` strings.

    Returns:
        (dict[str, Any]): Keyword arguments for ``SlurmExecutor.update_parameters``.
    """
    texts = [text] if isinstance(text, str) else list(text or [])
    valid = submitit.SlurmExecutor._valid_parameters()
    params: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for item in (part.strip() for t in texts for part in _SPLIT.split(t)):
        if not item:
            continue
        if "=" not in item:
            raise ValueError(f"--slurm expects key=value pairs separated by commas, got {item!r}")
        key, value = (s.strip() for s in item.split("=", 1))
        typed: Any = int(value) if re.fullmatch(r"-?\d+", value) else value
        name = key.replace("-", "_")
        if name == "mem_gb":
            params["mem"] = float(value)
        elif name in {"array_parallelism", "additional_parameters"}:
            raise ValueError(f"--slurm {key}: use --array-parallelism for the first; other keys pass to sbatch as is")
        elif name in valid:
            params[name] = typed
        else:
            extra[key] = typed
    if extra:
        params["additional_parameters"] = extra
    return params


def queued_in_slurm(out: Path) -> dict[str, dict[str, str]]:
    """Return the entries of ``out/slurm/submitted.json`` whose Slurm task is still queued, running or requeued.

    Those cells must not be submitted again: a pending task has not claimed its cell yet. Asked of ``squeue`` (one
    line per array task), which answers without Slurm's accounting database; submitit's own job state reads
    ``sacct``, which needs it. No ``squeue`` or no answer counts as nothing queued.

    Args:
        out (Path): Comparison folder.

    Returns:
        (dict[str, dict[str, str]]): Cell name -> its entry (``cell``, ``job_id``, ``stdout``).
    """
    import subprocess

    from yolo_attn.experiments.files import read_json

    path = Path(out) / "slurm" / "submitted.json"
    if not path.exists() or read_json(path).get("executor") != "slurm":
        return {}
    entries = {entry["job_id"]: entry for entry in read_json(path)["jobs"]}
    arrays = sorted({job_id.split("_")[0] for job_id in entries})
    try:
        proc = subprocess.run(
            ["squeue", "--noheader", "--array", "--format=%i %T", f"--jobs={','.join(arrays)}"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        return {}
    queued = {line.split()[0] for line in proc.stdout.splitlines() if line.strip()} if proc.returncode == 0 else set()
    return {entry["cell"]: entry for job_id, entry in entries.items() if job_id in queued}


def watch_hint(jobs: Sequence[submitit.Job], out: Path) -> str:
    """Return what to print after a Slurm submission: the array id, how to watch it, where the logs are."""
    array_id = str(jobs[0].job_id).split("_")[0]
    return (
        f"Submitted Slurm job array {array_id} ({len(jobs)} cells).\n"
        f"  watch:   squeue -j {array_id}    (sacct -j {array_id} once tasks end)\n"
        f"  logs:    {Path(out) / 'slurm'}/{array_id}_<task>/ ({jobs[0].paths.stdout.name} and .err per task)\n"
        f"  results: {Path(out) / 'runs'}/*.json\n"
        f"  report:  yolo-attn compare --out {out} --report   (any time; merges what has finished)\n"
        f"  rerun the same command to resubmit only missing or failed cells"
    )


def record_jobs(
    out: Path,
    cells: Sequence[Cell],
    jobs: Sequence[submitit.Job],
    kind: str,
    keep: dict[str, dict[str, str]] | None = None,
) -> None:
    """Write ``out/slurm/submitted.json``: which job runs which cell (``keep``: earlier entries still queued)."""
    folder = Path(out) / "slurm"
    folder.mkdir(parents=True, exist_ok=True)
    entries = [entry for key, entry in (keep or {}).items() if key not in {cell.key for cell in cells}]
    entries += [
        {"cell": cell.key, "job_id": str(job.job_id), "stdout": str(job.paths.stdout)}
        for cell, job in zip(cells, jobs, strict=True)
    ]
    write_json_atomic(folder / "submitted.json", {"executor": kind, "jobs": entries})
