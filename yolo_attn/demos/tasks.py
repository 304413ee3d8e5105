"""The segmentation, pose and OBB demos: YOLOv8n of the task vs CBAM vs ECA, fine-tuned on embedded synthetic data.

The protocol of the detection demo (`yolo_attn.demos.detect`), for the other tasks. ``run_task_demo(task)`` draws an
"upstream" synthetic YOLO-label set of the task (`yolo_attn.data.synthetic_tasks`: outline polygons, 4 extreme-point
keypoints, or turned objects with rotated boxes) and pretrains Ultralytics' ``yolov8n-{seg,pose,obb}.yaml`` on it
once; then it draws a smaller "target" set (other images, same classes) and runs ``compare(..., task=task,
pretrained=weights)``: the baseline and the same network with a CBAM and with an ECA block (``yolov8n-seg-cbam.yaml``
... loaded by name), two seeds each, all fine-tuned from the SAME pretrained weights (every baseline tensor lands in
its layer, the new blocks start as the identity, the transfer summary is printed). Every ``best.pt`` is evaluated with
Ultralytics' own validator of the task (mask + box mAP, pose + box mAP, rotated-box mAP). The report gives mean ± std
over seeds, the paired deltas with their 95% interval and noise flag, params, GFLOPs, latency and engagement. It
demonstrates the machinery, not a benchmark.

Layout of the output folder (default ``runs/demo_<task>/exp``, ``exp2``, ...)::

    data/upstream/   the synthetic pretraining set of the task (data.yaml, images/, labels/)
    data/target/     the synthetic set the compared models are fine-tuned and evaluated on
    pretrain/        the baseline's pretraining run (weights/last.pt is the fine-tuning source; done.json when finished)
    compare/         the comparison folder (see yolo_attn.experiments.files)

Run it again with the same ``out`` to finish an interrupted demo: a finished pretraining and finished runs are kept,
an interrupted pretraining resumes from its ``last.pt``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

SUFFIX = {"segment": "seg", "pose": "pose", "obb": "obb"}  # Ultralytics' model-file part of each task
BLOCKS = ("cbam", "eca")
SEEDS = (0, 1)
PRETRAIN_EPOCHS = 20
EPOCHS = 5  # fine-tuning epochs of every compared run
IMGSZ = 128  # the mask prototypes are at stride 4: 32 x 32 at 128 px
BATCH = 8
N_UPSTREAM_TRAIN, N_TRAIN, N_VAL = 160, 64, 32
LATENCY_RUNS = 20
# Short CPU training: AdamW at a small lr, one warm-up epoch, no per-epoch validation (the last epoch is still
# validated and best.pt written), mosaic off for the last epochs, no dataloader worker processes. nbs = BATCH: one
# optimizer step per batch (Ultralytics' default nbs=64 accumulates 8 batches of 8 into one step, a few dozen steps
# in a short run). The first version of this demo trained from scratch (8 epochs, 96 px, about 20 steps) and stayed at
# mAP 0, also with one step per batch (64 steps); the 400 steps of pretraining here are what gives a signal.
TRAIN_OVERRIDES: dict[str, Any] = {
    "optimizer": "AdamW",
    "lr0": 0.003,
    "nbs": BATCH,
    "warmup_epochs": 1,
    "close_mosaic": 3,
    "val": False,
    "workers": 0,
}
FINETUNE_OVERRIDES = TRAIN_OVERRIDES | {"lr0": 0.001}  # a gentler step on pretrained weights


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
    pretrain_epochs: int = PRETRAIN_EPOCHS,
    n_upstream: int = N_UPSTREAM_TRAIN,
    n_train: int = N_TRAIN,
    n_val: int = N_VAL,
    latency_runs: int = LATENCY_RUNS,
) -> Path:
    """Run the demo of ``task`` end to end: pretrain its baseline once, fine-tune every model from it, print the report.

    Args:
        task (str): ``"segment"``, ``"pose"`` or ``"obb"``.
        out (str | Path | None): Output folder; None: a new ``runs/demo_<task>/exp*`` in the working directory.
        seeds (Sequence[int]): Fine-tuning seeds.
        epochs (int): Fine-tuning epochs per compared run.
        pretrain_epochs (int): Epochs of the baseline's pretraining on the upstream set.
        n_upstream (int): Synthetic upstream (pretraining) images.
        n_train (int): Synthetic target training images.
        n_val (int): Synthetic validation images (of each set).
        latency_runs (int): Timed batch-1 passes per model (0 skips latency).

    Returns:
        (Path): The demo folder (``data/``, ``pretrain/`` and the comparison folder ``compare/``).
    """
    from ultralytics.utils import LOGGER, colorstr
    from ultralytics.utils.files import increment_path

    from yolo_attn.data.synthetic_tasks import make_synthetic_yolo
    from yolo_attn.demos.pretrain import print_report
    from yolo_attn.experiments import compare as compare_module

    models = demo_models(task)
    out = (increment_path(Path("runs") / f"demo_{task}" / "exp", sep="") if out is None else Path(out)).resolve()
    prefix = colorstr(f"demo {task}: ")
    upstream = make_synthetic_yolo(out / "data" / "upstream", task, n_upstream, n_val, imgsz=IMGSZ, seed=1)
    LOGGER.info(f"{prefix}pretraining {models[0]} once, {pretrain_epochs} epochs on {n_upstream} images -> {out}")
    weights = pretrain_baseline(task, upstream, out / "pretrain", pretrain_epochs)
    data = make_synthetic_yolo(out / "data" / "target", task, n_train, n_val, imgsz=IMGSZ, seed=0)
    LOGGER.info(
        f"{prefix}{len(models)} models x {len(seeds)} seeds, each fine-tuned {epochs} epochs from {weights} "
        f"on {n_train} other images (CPU)"
    )
    result = compare_module.compare(
        data,
        models,
        list(seeds),
        epochs,
        imgsz=IMGSZ,
        batch=BATCH,
        device="cpu",
        out=out / "compare",
        train_overrides=dict(FINETUNE_OVERRIDES),
        latency_runs=latency_runs,
        pretrained=weights,
        task=task,
    )
    print_report(result)
    return out


def pretrain_baseline(task: str, data: Path, folder: Path, epochs: int = PRETRAIN_EPOCHS) -> Path:
    """Train the task's baseline once on the upstream data (resumably) and return the weights every model starts from.

    Args:
        task (str): ``"segment"``, ``"pose"`` or ``"obb"``.
        data (Path): data.yaml of the upstream set.
        folder (Path): Training folder; ``done.json`` marks a finished run, which is then reused as it is.
        epochs (int): Training epochs.

    Returns:
        (Path): ``folder / "weights" / "last.pt"``, the weights after the last epoch.
    """
    from yolo_attn.demos.pretrain import pretrain_once

    model = demo_models(task)[0]
    return pretrain_once(model, data, folder, epochs=epochs, imgsz=IMGSZ, batch=BATCH, overrides=dict(TRAIN_OVERRIDES))
