"""The segmentation, pose and OBB demos: YOLOv8n of the task vs CBAM vs ECA on embedded synthetic data, CPU only.

``run_task_demo(task)`` draws the synthetic YOLO-label set of the task (`yolo_attn.data.synthetic_tasks`: outline
polygons, 4 extreme-point keypoints, or turned objects with rotated boxes), then runs ``compare(..., task=task)``:
Ultralytics' ``yolov8n-{seg,pose,obb}.yaml`` and the same network with a CBAM and with an ECA block
(``yolov8n-seg-cbam.yaml`` ... loaded by name), two seeds each, identical settings, every ``best.pt`` evaluated with
Ultralytics' own validator of the task (mask + box mAP, pose + box mAP, rotated-box mAP). The report gives mean ± std
over seeds, the paired deltas with their 95% interval and noise flag, params, GFLOPs and latency. It demonstrates the
machinery, not a benchmark: a few epochs from scratch on a few hundred 96 px images.

Layout of the output folder (default ``runs/demo_<task>/exp``, ``exp2``, ...)::

    data/data.yaml, data/images/, data/labels/   the synthetic set of the task
    compare/                                     the comparison folder (see yolo_attn.experiments.files)

Run it again with the same ``out`` to finish an interrupted demo: finished runs are skipped (compare's resume).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

SUFFIX = {"segment": "seg", "pose": "pose", "obb": "obb"}  # Ultralytics' model-file part of each task
BLOCKS = ("cbam", "eca")
SEEDS = (0, 1)
EPOCHS = 8
IMGSZ = 96
BATCH = 16
N_TRAIN, N_VAL = 128, 32
LATENCY_RUNS = 20
# Short from-scratch CPU training: AdamW at a small lr, one warm-up epoch, mosaic off for the last epochs, no per-epoch
# validation (the last epoch is still validated and best.pt written), no dataloader worker processes.
TRAIN_OVERRIDES: dict[str, Any] = {
    "optimizer": "AdamW",
    "lr0": 0.003,
    "warmup_epochs": 1,
    "close_mosaic": 3,
    "val": False,
    "workers": 0,
}


def demo_models(task: str) -> list[str]:
    """Return the demo's models of ``task``: Ultralytics' YOLOv8n of the task, then its CBAM and ECA variants."""
    if task not in SUFFIX:
        raise ValueError(f"task must be one of {', '.join(SUFFIX)}, got {task!r}")
    return [f"yolov8n-{SUFFIX[task]}.yaml", *(f"yolov8n-{SUFFIX[task]}-{block}.yaml" for block in BLOCKS)]


def run_task_demo(
    task: str,
    out: str | Path | None = None,
    seeds: Sequence[int] = SEEDS,
    epochs: int = EPOCHS,
    n_train: int = N_TRAIN,
    n_val: int = N_VAL,
    latency_runs: int = LATENCY_RUNS,
) -> Path:
    """Run the demo of ``task`` end to end and print the report.

    Args:
        task (str): ``"segment"``, ``"pose"`` or ``"obb"``.
        out (str | Path | None): Output folder; None: a new ``runs/demo_<task>/exp*`` in the working directory.
        seeds (Sequence[int]): Training seeds.
        epochs (int): Epochs per run.
        n_train (int): Synthetic training images.
        n_val (int): Synthetic validation images.
        latency_runs (int): Timed batch-1 passes per model (0 skips latency).

    Returns:
        (Path): The demo folder (``data/`` and the comparison folder ``compare/``).
    """
    from ultralytics.utils import LOGGER, colorstr
    from ultralytics.utils.files import increment_path

    from yolo_attn.data.synthetic_tasks import make_synthetic_yolo
    from yolo_attn.experiments import compare as compare_module

    models = demo_models(task)
    out = (increment_path(Path("runs") / f"demo_{task}" / "exp", sep="") if out is None else Path(out)).resolve()
    LOGGER.info(f"{colorstr(f'demo {task}: ')}synthetic {task} data ({n_train} train + {n_val} val) -> {out}")
    data = make_synthetic_yolo(out / "data", task, n_train=n_train, n_val=n_val, imgsz=IMGSZ, seed=0)
    result = compare_module.compare(
        data,
        models,
        list(seeds),
        epochs,
        imgsz=IMGSZ,
        batch=BATCH,
        device="cpu",
        out=out / "compare",
        train_overrides=dict(TRAIN_OVERRIDES),
        latency_runs=latency_runs,
        task=task,
    )
    report = result / "compare.md"
    if report.exists():
        print(f"\n{report.read_text()}\nReport, runs and plots: {result}")
    return out
