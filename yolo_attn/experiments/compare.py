"""Train and evaluate a grid of models x seeds with identical settings, resumably, then report.

Layout of a comparison folder ``out``::

    out/
      runs/<stem>_seed<s>.json   one per finished run: settings, COCO metrics (pycocotools), weights path, timing
      costs/<stem>.json          params and GFLOPs of each model (measured once, cached)
      latency.json               batch-1 latency of all models, measured together (interleaved) at the end
      train/<stem>_seed<s>/      the Ultralytics training folder (weights/best.pt, results.csv, args.yaml)
      eval/<stem>_seed<s>/       detections and metrics written by ``yolo_attn.evaluation.coco_eval.evaluate``
      compare.csv, compare.md, compare.png   the report: partial (no latency yet) after every run, then final

A run's JSON is written to a temporary file and renamed into place when the run has been trained AND evaluated, so a
run either counts or is redone: interrupt a comparison at any point and run the same command with the same ``out`` to
finish it. A JSON that exists is trusted only if it was made with the same settings (data, epochs, imgsz, batch,
overrides, backend); a mismatch stops the comparison instead of mixing differently trained runs in one table.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from ultralytics.utils import LOGGER, colorstr

PREFIX = colorstr("compare: ")
DEFAULT_ROOT = Path("runs") / "compare"
# Settings compare() owns: they are either its own arguments or must differ per run.
ARGUMENT_KEYS = {"data", "epochs", "imgsz", "batch", "device"}
RESERVED_KEYS = {"seed", "project", "name", "exist_ok", "model", "mode", "resume", "task"}
# CPU threads of a fresh process, read before any training here lowers them (Ultralytics' select_device sets
# torch.set_num_threads on CPU): latency is always measured with this many, however often a comparison is resumed.
LATENCY_THREADS = torch.get_num_threads()


def compare(
    data: str | Path,
    models: Sequence[str | Path],
    seeds: Sequence[int],
    epochs: int,
    imgsz: int = 640,
    batch: int = 16,
    device: str | int | None = None,
    out: str | Path | None = None,
    train_overrides: dict[str, Any] | None = None,
    backend: str = "pycocotools",
    latency_runs: int = 50,
) -> Path:
    """Train every model with every seed under identical settings, evaluate each with COCO mAP, and report.

    Each run is ``YOLO(model).train(data, epochs, imgsz, batch, seed=s, deterministic=True, device, plots=False,
    **train_overrides)`` followed by ``evaluate(best.pt, data, imgsz, batch, device, backend)``. ``amp`` defaults to
    False unless ``device`` names a GPU (the AMP check would download a model, and AMP does nothing on CPU); pass
    ``amp=True`` in ``train_overrides`` to force it. The first model is the baseline of the paired deltas.

    Multi-GPU policy: ``device="0,1,2,3"`` makes each run ONE Ultralytics DDP job over all the listed GPUs (Ultralytics
    launches ``torch.distributed.run`` itself; ``import yolo_attn`` makes the blocks known to its workers). Runs are
    sequential. ``batch`` is the total batch, split across the GPUs by Ultralytics. Evaluation and latency use the
    first listed device.

    Output folder: ``out``, or by default ``runs/compare/exp``, ``runs/compare/exp2``, ... (a new one per call,
    relative to the working directory, like Ultralytics' ``runs/detect/train``, ``train2``). To resume an interrupted
    comparison, pass its folder as ``out``: finished runs are skipped, unfinished ones are trained from scratch.

    Args:
        data (str | Path): Data set YAML, e.g. written by ``yolo-attn subset`` (needs COCO ground truth for the val
            split, see ``yolo_attn.evaluation.coco_eval``).
        models (Sequence[str | Path]): Model YAMLs or weights; the first is the baseline. File stems must be unique.
        seeds (Sequence[int]): Training seeds; every model is trained once per seed.
        epochs (int): Training epochs of every run.
        imgsz (int): Train, evaluation and profiling image size.
        batch (int): Batch size for training and evaluation.
        device (str | int | None): Ultralytics device: None (auto), ``"cpu"``, ``0`` or ``"0,1,2,3"`` (DDP).
        out (str | Path | None): Comparison folder; None makes a new ``runs/compare/exp*``.
        train_overrides (dict[str, Any] | None): More Ultralytics train settings (``workers=0``, ``lr0=0.005``...),
            identical for every run. ``data``, ``epochs``, ``imgsz``, ``batch``, ``device`` are arguments here;
            ``seed``, ``project``, ``name``, ``exist_ok`` are set per run and cannot be overridden.
        backend (str): COCO evaluation backend, ``"pycocotools"`` or ``"faster-coco-eval"``.
        latency_runs (int): Timed forward passes per model for the batch-1 latency (0 skips latency).

    Returns:
        (Path): The comparison folder, holding ``compare.csv``, ``compare.md``, ``compare.png`` and ``runs/*.json``.
    """
    from yolo_attn.experiments.report import write_report

    models = [str(m) for m in models]
    seeds = [int(s) for s in seeds]
    stems = check_grid(models, seeds)
    overrides = check_overrides(train_overrides or {}, device)
    settings = {
        "data": str(Path(data).resolve()) if Path(data).exists() else str(data),
        "epochs": int(epochs),
        "imgsz": int(imgsz),
        "batch": int(batch),
        "train_overrides": overrides,
        "backend": backend,
    }
    settings = json.loads(json.dumps(settings))  # the form it takes in a run JSON, so the resume check compares alike
    out = default_out() if out is None else Path(out)
    out = out.resolve()
    (out / "runs").mkdir(parents=True, exist_ok=True)
    LOGGER.info(f"{PREFIX}{len(models)} models x {len(seeds)} seeds -> {out}  (resume with out={out})")

    grid = [(model, stem, seed) for model, stem in zip(models, stems, strict=True) for seed in seeds]
    for i, (model, stem, seed) in enumerate(grid, 1):
        path = run_path(out, stem, seed)
        if path.exists():
            check_settings(path, settings)
            LOGGER.info(f"{PREFIX}[{i}/{len(grid)}] {stem} seed {seed}: done before, skipped ({path.name})")
            continue
        LOGGER.info(f"{PREFIX}[{i}/{len(grid)}] {stem} seed {seed}: training {epochs} epochs at imgsz={imgsz}")
        start = time.perf_counter()
        result = train_and_evaluate(model, seed, settings, device, out)
        record = {
            "model": model,
            "stem": stem,
            "seed": seed,
            "settings": settings,
            "device": None if device is None else str(device),
            "duration_s": round(time.perf_counter() - start, 1),
            "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "versions": versions(),
            **result,
        }
        write_json_atomic(path, record)
        LOGGER.info(f"{PREFIX}[{i}/{len(grid)}] {stem} seed {seed}: saved {path}")
        if i < len(grid):  # a partial report to look at while the grid runs; never a reason to stop it
            try:
                write_report(out, models, seeds, device, latency_runs, LATENCY_THREADS, measure_latency=False)
            except Exception as error:
                LOGGER.warning(f"{PREFIX}partial report failed ({error}); the runs go on, the final report retries")
    report = write_report(out, models, seeds, device=device, latency_runs=latency_runs, threads=LATENCY_THREADS)
    LOGGER.info(f"{PREFIX}report written: {report}")
    return out


def train_and_evaluate(model: str, seed: int, settings: dict[str, Any], device: str | int | None, out: Path) -> dict:
    """Train one model with one seed, then evaluate its best checkpoint with COCO metrics.

    Args:
        model (str): Model YAML or weights.
        seed (int): Training seed.
        settings (dict[str, Any]): ``data``, ``epochs``, ``imgsz``, ``batch``, ``train_overrides``, ``backend``.
        device (str | int | None): Ultralytics device string for training; the first device is used for evaluation.
        out (Path): Comparison folder; training goes to ``out/train/<key>``, evaluation files to ``out/eval/<key>``.

    Returns:
        (dict): ``metrics`` (the dict returned by ``evaluate``), ``weights`` (best.pt path) and ``train_dir``.
    """
    from ultralytics import YOLO

    from yolo_attn.evaluation.coco_eval import evaluate

    key = run_key(Path(model).stem, seed)
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
        "exist_ok": True,  # an unfinished run is retrained in place
    }
    yolo = YOLO(model)
    yolo.train(**trainer_args)
    weights = yolo.trainer.best if Path(yolo.trainer.best).exists() else yolo.trainer.last
    metrics = evaluate(
        str(weights),
        settings["data"],
        imgsz=settings["imgsz"],
        batch=settings["batch"],
        device=first_device(device),
        backend=settings["backend"],
        out=out / "eval" / key,
    )
    return {"metrics": metrics, "weights": str(weights), "train_dir": str(yolo.trainer.save_dir)}


def check_grid(models: Sequence[str], seeds: Sequence[int]) -> list[str]:
    """Validate the grid and return each model's stem (its name in file names and tables).

    Args:
        models (Sequence[str]): Model YAMLs or weights.
        seeds (Sequence[int]): Seeds.

    Returns:
        (list[str]): File stems of ``models``, in order.
    """
    if not models or not seeds:
        raise ValueError(f"compare needs at least one model and one seed, got models={models} seeds={seeds}")
    stems = [Path(m).stem for m in models]
    for name, values in (("model file name", stems), ("seed", list(seeds))):
        repeated = sorted({str(v) for v in values if values.count(v) > 1})
        if repeated:
            raise ValueError(f"each {name} must appear once, repeated: {', '.join(repeated)}")
    return stems


def check_overrides(overrides: dict[str, Any], device: str | int | None) -> dict[str, Any]:
    """Refuse train overrides that compare() owns, and return a plain copy of the others.

    Args:
        overrides (dict[str, Any]): Ultralytics train settings.
        device (str | int | None): The compare device (only used in the message).

    Returns:
        (dict[str, Any]): The overrides.
    """
    arguments = sorted(ARGUMENT_KEYS & overrides.keys())
    if arguments:
        raise ValueError(f"set {', '.join(arguments)} with the compare argument(s) of that name, not as an override")
    reserved = sorted(RESERVED_KEYS & overrides.keys())
    if reserved:
        raise ValueError(f"compare sets {', '.join(reserved)} itself for each run (device={device}); remove them")
    return dict(overrides)


def check_settings(path: Path, settings: dict[str, Any]) -> None:
    """Raise if the finished run at ``path`` was made with other settings than this comparison.

    Args:
        path (Path): A run JSON.
        settings (dict[str, Any]): This comparison's settings (JSON-normalised).
    """
    before = json.loads(path.read_text())["settings"]
    changed = {k: (before.get(k), v) for k, v in settings.items() if before.get(k) != v}
    if changed:
        detail = "; ".join(f"{k}: {old!r} before, {new!r} now" for k, (old, new) in changed.items())
        raise ValueError(
            f"{path} was trained with other settings ({detail}). Runs in one comparison must share their settings: "
            f"use another out folder, or delete that JSON to retrain the run."
        )


def default_out(root: Path = DEFAULT_ROOT) -> Path:
    """Return the next free ``root/exp``, ``root/exp2``, ... folder (not created)."""
    from ultralytics.utils.files import increment_path

    return increment_path(root / "exp", sep="")


def run_key(stem: str, seed: int) -> str:
    """Return a run's name, e.g. ``yolov8n-cbam_seed0``."""
    return f"{stem}_seed{seed}"


def run_path(out: Path, stem: str, seed: int) -> Path:
    """Return the JSON path of a run."""
    return out / "runs" / f"{run_key(stem, seed)}.json"


def is_gpu(device: str | int | None) -> bool:
    """Return True when an Ultralytics device string names CUDA device(s) explicitly (None counts as unknown)."""
    if device is None:
        return False
    text = str(device).strip().lower()
    return text not in {"", "cpu", "mps"}


def first_device(device: str | int | None) -> str | None:
    """Return the first device of an Ultralytics device list (``"0,1"`` -> ``"0"``), or the device itself."""
    if device is None:
        return None
    return str(device).replace("[", "").replace("]", "").split(",")[0].strip()


def versions() -> dict[str, str]:
    """Return the versions that shape a run's numbers."""
    import torch
    import ultralytics

    import yolo_attn

    return {"ultralytics": ultralytics.__version__, "torch": torch.__version__, "yolo_attn": yolo_attn.__version__}


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write ``obj`` as JSON to ``path`` so that ``path`` is never seen half-written.

    Args:
        path (Path): Target file; its folder must exist.
        obj (Any): JSON-serialisable object; numpy scalars/arrays and paths are converted.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=2, default=_to_json)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _to_json(obj: Any) -> Any:
    """Convert what ``json`` cannot write: numpy scalars and arrays (``.tolist()``), paths (``str``)."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def load_runs(out: Path) -> list[dict[str, Any]]:
    """Return every finished run record of a comparison folder, sorted by file name.

    Args:
        out (Path): Comparison folder.

    Returns:
        (list[dict[str, Any]]): Run records as written by ``compare``.
    """
    return [json.loads(p.read_text()) for p in sorted((Path(out) / "runs").glob("*.json"))]
