"""One cell of a comparison: train one model with one seed, evaluate it, write one JSON. Every executor runs this.

A cell is idempotent, preemption-safe and runs in one place at a time:

- it is claimed before it trains (``yolo_attn.experiments.claims``): a runner that finds it claimed by a live owner
  leaves it alone and returns a record with ``status`` "elsewhere" (not written), naming the owner;
- its result is ``runs/<key>.json``, written atomically once training AND evaluation are done (``status`` "done");
- an exception inside the cell is recorded in the same file (``status`` "failed", the error and its traceback) and
  returned, never raised, so the other cells go on; a rerun redoes failed and missing cells and skips finished ones;
- a training that was stopped midway (killed, preempted, timed out) left its Ultralytics ``last.pt``: the next attempt
  continues from it (``resume=True``) instead of starting over, and records the epoch it resumed at. A training that
  had finished (its ``last.pt`` stripped of the optimizer) is not trained again; only the evaluation is redone.

``python -m yolo_attn.experiments.cell --out DIR --key KEY [--device D]`` runs one cell of ``DIR/plan.json`` in a
process of its own; ``--parallel`` starts those with ``CUDA_VISIBLE_DEVICES`` already pinned to one GPU.
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import time
import traceback
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from yolo_attn.experiments.claims import CellClaim, describe
from yolo_attn.experiments.files import (
    DONE,
    ELSEWHERE,
    FAILED,
    CellRecord,
    read_json,
    run_path,
    train_dir,
    write_json_atomic,
)
from yolo_attn.experiments.plan import Cell, Plan, load_plan
from yolo_attn.experiments.tasks import get_task
from yolo_attn.utils.devices import parse_device

ELSEWHERE_EXIT = 75  # exit status of a cell process that found its cell claimed by another runner (EX_TEMPFAIL)


def cell_status(out: Path, cell: Cell) -> str:
    """Return ``"done"``, ``"failed"`` or ``"missing"`` for a cell of the comparison folder ``out``."""
    path = run_path(out, cell.key)
    if not path.exists():
        return "missing"
    return read_json(path).get("status", DONE)


def pending_cells(plan: Plan, out: Path) -> list[Cell]:
    """Return the cells of ``plan`` that are missing or failed in ``out``, in plan order."""
    return [cell for cell in plan.cells if cell_status(out, cell) != DONE]


def run_cell(plan: Plan, cell: Cell, out: Path, device: str | int | None = None) -> CellRecord:
    """Train and evaluate one cell, and write its record to ``runs/<key>.json``.

    Args:
        plan (Plan): The comparison (its settings are used, and recorded in the cell's JSON).
        cell (Cell): The model and seed to run.
        out (Path): Comparison folder.
        device (str | int | None): Ultralytics device for this cell; None uses the plan's device.

    Returns:
        (CellRecord): The record written: ``status`` "done" with ``metrics``, ``weights``, ``train_dir``,
            ``resumed_at_epoch``, ``restarted`` (why an unreadable ``last.pt`` made the training start over, or None),
            ``transfer``, ``engagement``; or ``status`` "failed" with ``error`` and ``traceback``. Both carry the
            model, seed, settings, ``pretrained`` (source weights or None), device, pid, host, start and end times
            (``started``, ``ended``: Unix seconds). A cell that another runner holds is not touched: the record
            returned (not written) has ``status`` "elsewhere" and its ``owner``; one that another runner finished
            meanwhile returns that runner's record.
    """
    out = Path(out)
    with CellClaim(out, cell.key) as claim:
        if not claim.acquire():
            owner = claim.owner()
            return {"stem": cell.stem, "seed": cell.seed, "status": ELSEWHERE, "owner": owner, "error": describe(owner)}
        if cell_status(out, cell) == DONE:  # finished by another runner between our look and our claim
            return read_json(run_path(out, cell.key))
        record = _run_claimed(plan, cell, out, device)
        if claim.lost is not None:
            record["claim_lost"] = claim.lost.reason
        write_json_atomic(run_path(out, cell.key), record)
        return record


def _run_claimed(plan: Plan, cell: Cell, out: Path, device: str | int | None) -> CellRecord:
    """Train and evaluate a cell this process has claimed; return its record (see ``run_cell``)."""
    device = plan.device if device is None else device
    record: CellRecord = {
        "model": cell.model,
        "stem": cell.stem,
        "seed": cell.seed,
        "settings": plan.settings,
        "device": None if device is None else str(device),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "pretrained": plan.settings.get("pretrained"),  # what the weights started from; "transfer" says how
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": time.time(),
    }
    try:
        result = train_and_evaluate(cell.model, cell.seed, plan.settings, device, out)
        record.update(status=DONE, **result)
    except Exception as error:  # a failed cell is recorded and the grid goes on; KeyboardInterrupt still stops it
        record.update(status=FAILED, error=f"{type(error).__name__}: {error}", traceback=traceback.format_exc())
    record["ended"] = time.time()
    record["duration_s"] = round(record["ended"] - record["started"], 1)
    record["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    record["versions"] = versions()
    return record


def train_and_evaluate(model: str, seed: int, settings: dict[str, Any], device: str | int | None, out: Path) -> dict:
    """Train one model with one seed (or continue its interrupted training), then evaluate its best checkpoint.

    The task (``settings["task"]``, detection when absent) picks the evaluation, see ``evaluate_weights``.

    Training is ``YOLO(model).train(data, epochs, imgsz, batch, seed, deterministic=True, device, plots=False,
    pretrained, **train_overrides)`` into ``out/train/<key>``. ``amp`` defaults to False unless ``device`` names a GPU
    (the AMP check would download a model, and AMP does nothing on CPU); ``amp=True`` in the overrides forces it.
    ``pretrained`` (when set) gives the model its source weights through Ultralytics' own ``pretrained=`` path, the
    same for every model of the grid, the baseline included.

    Args:
        model (str): Model YAML or weights.
        seed (int): Training seed.
        settings (dict[str, Any]): The plan's settings (``data``, ``epochs``, ``imgsz``, ``batch``,
            ``train_overrides``, ``backend``, ``pretrained``).
        device (str | int | None): Ultralytics device string for training; the first device is used for evaluation.
        out (Path): Comparison folder; evaluation files go to ``out/eval/<key>``.

    Returns:
        (dict): ``metrics`` (the dict returned by ``evaluate_weights``), ``weights`` (best.pt path), ``train_dir``,
            ``resumed_at_epoch`` (1-based epoch the training continued at, or None for a fresh start), ``transfer``
            (what the pretrained weights' load transferred and how the new blocks started, see
            ``yolo_attn.finetune.transfer.TransferReport``; None from scratch), ``engagement`` (each attention block's
            ``identity_mix`` and relative change on the val sample: ``finetune.engagement.run_engagement``).
    """
    from ultralytics import YOLO

    from yolo_attn.experiments.files import run_key
    from yolo_attn.finetune.engagement import run_engagement
    from yolo_attn.finetune.protocol import LEGACY, FineTuneProtocol, attach
    from yolo_attn.integration import transfer_report_of

    key = run_key(Path(model).stem, seed)
    folder = train_dir(out, key)
    state, epoch = training_state(folder / "weights" / "last.pt")
    protocol = FineTuneProtocol.from_settings(settings.get("protocol", LEGACY.to_settings()))  # how new blocks train
    resumed_at, restarted = None, None
    if state == "unreadable":
        restarted = f"{folder / 'weights' / 'last.pt'} could not be read; moved to last.pt.corrupt, trained anew"
        print(f"compare: {key}: {restarted}", flush=True)  # on the console and in the cell's log, not only a warning
    if state == "unfinished":  # continue the interrupted training where its last.pt stopped
        resumed_at = epoch + 2  # last.pt holds the 0-based index of the last completed epoch
        yolo = YOLO(str(folder / "weights" / "last.pt"))
        yolo.train(resume=True, data=settings["data"], device=device, trainer=attach(yolo, protocol))
        weights, save_dir = _trained_weights(yolo.trainer.best, yolo.trainer.last), yolo.trainer.save_dir
    elif state == "finished":  # trained before, the evaluation did not finish: evaluate only
        weights, save_dir = _trained_weights(folder / "weights" / "best.pt", folder / "weights" / "last.pt"), folder
    else:
        trainer_args = {
            "amp": is_gpu(device),  # defaults that train_overrides may change
            "deterministic": True,
            "plots": False,
            **settings["train_overrides"],
            "data": settings["data"],
            "epochs": settings["epochs"],
            "imgsz": settings["imgsz"],
            "batch": settings["batch"],
            "seed": seed,
            "device": device,
            "project": str(out / "train"),  # absolute: Ultralytics would put a relative project under its runs_dir
            "name": key,
            "exist_ok": True,  # a failed run is retrained in place
        }
        if settings.get("pretrained") is not None:
            trainer_args["pretrained"] = settings["pretrained"]
        yolo = YOLO(model)
        task = settings.get("task", "detect")
        if yolo.task != task:
            raise ValueError(f"{model} is a {yolo.task} model, but this comparison's task is {task}")
        yolo.train(**trainer_args, trainer=attach(yolo, protocol))
        weights, save_dir = _trained_weights(yolo.trainer.best, yolo.trainer.last), yolo.trainer.save_dir
    metrics = evaluate_weights(weights, settings, first_device(device), out / "eval" / key)
    engagement = run_engagement(weights, settings, first_device(device))
    print_engagement(key, engagement)
    return {
        "metrics": metrics,
        "weights": str(weights),
        "train_dir": str(save_dir),
        "resumed_at_epoch": resumed_at,
        "restarted": restarted,
        "transfer": transfer_report_of(weights),
        "engagement": engagement,
    }


def print_engagement(key: str, engagement: dict) -> None:
    """Print a run's engagement summary on the console (and in its cell log): each block, and the ones left off."""
    from yolo_attn.finetune.engagement import summary_lines

    for line in summary_lines(engagement, "the block"):
        print(f"compare: {key}: {line}", flush=True)


def training_state(last: Path) -> tuple[str, int | None]:
    """Tell from an Ultralytics ``last.pt`` whether its training can be continued.

    Ultralytics saves ``last.pt`` after every epoch with the epoch index and the optimizer state, and strips both
    (``epoch`` -1, no optimizer) when the training ends.

    Args:
        last (Path): Path of ``weights/last.pt`` in a training folder.

    Only the process that holds the cell's claim calls this, so ``last.pt`` is never one that another runner is
    writing at that moment.

    Returns:
        (tuple[str, int | None]): ``("missing", None)``, ``("finished", None)``, ``("unfinished", epoch)`` with the
            0-based index of the last completed epoch, or ``("unreadable", None)``: that ``last.pt`` (its writer was
            killed while writing it) is moved aside to ``last.pt.corrupt`` and the training starts over.
    """
    if not last.exists():
        return "missing", None
    import torch

    try:
        ckpt = torch.load(last, map_location="cpu", weights_only=False)
    except Exception as error:  # killed while Ultralytics wrote it (it writes in place): train this cell again
        from ultralytics.utils import LOGGER

        LOGGER.warning(f"compare: {last} cannot be read ({type(error).__name__}: {error})")
        last.replace(last.with_suffix(".pt.corrupt"))
        return "unreadable", None
    epoch = ckpt.get("epoch", -1)
    if epoch is not None and epoch >= 0 and ckpt.get("optimizer") is not None:
        return "unfinished", int(epoch)
    return "finished", None


def evaluate_weights(weights: Path, settings: dict[str, Any], device: str | None, folder: Path) -> dict[str, Any]:
    """Evaluate a trained checkpoint as its comparison's task asks.

    Args:
        weights (Path): ``best.pt`` (or ``last.pt``).
        settings (dict[str, Any]): The plan's settings (``task``, ``data``, ``imgsz``, ``batch``, ``backend``).
        device (str | None): One Ultralytics device.
        folder (Path): Where a detection evaluation writes its detections and metrics (``out/eval/<key>``).

    Returns:
        (dict[str, Any]): The evaluator's result of the task (`yolo_attn.experiments.tasks.Task.evaluate`).
            Detection: ``yolo_attn.evaluation.coco_eval.evaluate``'s (``coco``, ``ultralytics`` ...); classification:
            ``evaluate_classifier``'s (``top1``, ``top5``, ``nc`` ...); segment, pose, obb:
            ``evaluate_with_validator``'s (``ultralytics``: the validator's ``results_dict``).
    """
    return get_task(settings.get("task")).evaluate(Path(weights), settings, device, folder)


def _trained_weights(best: str | Path, last: str | Path) -> Path:
    """Return ``best`` if it exists, else ``last`` (a run without validation writes no best.pt)."""
    return Path(best) if Path(best).exists() else Path(last)


def is_gpu(device: str | int | None) -> bool:
    """Return True when an Ultralytics device string names CUDA device(s) explicitly (None counts as unknown)."""
    return parse_device(device).is_gpu


def first_device(device: str | int | None) -> str | None:
    """Return the first device of an Ultralytics device list (``"0,1"`` -> ``"0"``), None for None."""
    return None if device is None else parse_device(device).first


def versions() -> dict[str, str]:
    """Return the versions that shape a run's numbers."""
    import torch
    import ultralytics

    import yolo_attn

    return {
        "ultralytics": ultralytics.__version__,
        "torch": torch.__version__,
        "yolo_attn": yolo_attn.__version__,
        "python": platform.python_version(),
    }


def pin_cuda_device() -> None:
    """Lock this process onto the GPUs its ``CUDA_VISIBLE_DEVICES`` names, before Ultralytics selects a device.

    CUDA reads ``CUDA_VISIBLE_DEVICES`` once, when it initialises. Some Ultralytics versions rewrite the variable in
    ``select_device`` (``device=0`` -> ``"0"``, i.e. physical GPU 0); initialising CUDA first makes such a rewrite
    harmless. A no-op without CUDA or without the variable.
    """
    if os.environ.get("CUDA_VISIBLE_DEVICES", "").strip():
        import torch

        if torch.cuda.is_available():
            torch.cuda.init()


def main(argv: Sequence[str] | None = None) -> None:
    """Run one cell of a comparison folder in this process (the ``--parallel`` executor's child).

    Args:
        argv (Sequence[str] | None): ``--out DIR --key KEY [--device D]``; defaults to ``sys.argv[1:]``.
    """
    parser = argparse.ArgumentParser(description="run one cell of a yolo-attn comparison")
    parser.add_argument("--out", type=Path, required=True, help="comparison folder holding plan.json")
    parser.add_argument("--key", required=True, help="cell name, e.g. yolov8n_seed0")
    parser.add_argument("--device", default=None, help="Ultralytics device (default: the plan's)")
    args = parser.parse_args(argv)
    from yolo_attn.utils.offline import apply_offline_env, install_local_font

    apply_offline_env()
    pin_cuda_device()
    import yolo_attn  # noqa: F401  (registers the blocks)

    install_local_font()
    plan = load_plan(args.out)
    record = run_cell(plan, plan.cell(args.key), args.out, args.device)
    if record["status"] == ELSEWHERE:
        print(f"{args.key}: running elsewhere ({record['error']}); not touched", flush=True)
        raise SystemExit(ELSEWHERE_EXIT)
    if record["status"] != DONE:
        print(record["traceback"], flush=True)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
