"""The classification demo: CNN vs CNN + attention on embedded synthetic data, a few minutes on a laptop CPU.

``run_classify_demo()`` draws the synthetic classification set (`yolo_attn.data.synthetic_cls`: one small object
decides the class among look-alikes and clutter), then runs ``compare(..., task="classify")``: Ultralytics'
``yolov8n-cls.yaml`` and the same network with an SE and with a CBAM block after each backbone stage
(``yolov8n-cls-se.yaml``, ``yolov8n-cls-cbam.yaml``), two seeds each, identical settings, every ``best.pt`` evaluated
with Ultralytics' own validator. The compare report gives top-1 / top-5 (mean ± std over seeds), the paired deltas
with their noise flag, params, GFLOPs and latency, and one figure of the val accuracy curves of all runs. It
demonstrates the machinery, not a benchmark: ten epochs from scratch on 320 images at 64 px.

Layout of the output folder (default ``runs/demo_classify/exp``, ``exp2``, ...)::

    data/train/<class>/*.png, data/val/<class>/*.png   the synthetic ImageFolder set
    compare/                                           the comparison folder (see yolo_attn.experiments.files):
      train/<model>_seed<s>/                           Ultralytics' run folder (results.csv, weights/best.pt)
      runs/<model>_seed<s>.json                        each run's top-1 / top-5 and settings
      compare.md, compare.csv, compare.png             the report
      accuracy.png                                     val top-1 per epoch: seeds thin, means thick

Run it again with the same ``out`` to finish an interrupted demo: finished runs are skipped (compare's resume).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

DEMO_MODELS = ("yolov8n-cls.yaml", "yolov8n-cls-se.yaml", "yolov8n-cls-cbam.yaml")  # Ultralytics', then ours
SEEDS = (0, 1)
EPOCHS = 10
IMGSZ = 64
BATCH = 32
N_TRAIN, N_VAL = 320, 80
LATENCY_RUNS = 50
# Short from-scratch training: AdamW at a small lr, one warm-up epoch, no dataloader worker processes; Ultralytics'
# classification augmentation otherwise unchanged (compare trains from scratch, deterministic, without AMP on CPU).
TRAIN_OVERRIDES: dict[str, Any] = {"optimizer": "AdamW", "lr0": 0.003, "warmup_epochs": 1, "workers": 0}


def run_classify_demo(
    out: str | Path | None = None,
    models: Sequence[str] = DEMO_MODELS,
    seeds: Sequence[int] = SEEDS,
    epochs: int = EPOCHS,
    n_train: int = N_TRAIN,
    n_val: int = N_VAL,
    latency_runs: int = LATENCY_RUNS,
) -> Path:
    """Run the classification demo end to end and print the report.

    Args:
        out (str | Path | None): Output folder; None: a new ``runs/demo_classify/exp*`` in the working directory.
        models (Sequence[str]): Classification model YAMLs (ours load by bare name); the first is the baseline.
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

    from yolo_attn.data.synthetic_cls import CLASSES, make_synthetic_cls
    from yolo_attn.experiments import compare as compare_module

    out = (increment_path(Path("runs") / "demo_classify" / "exp", sep="") if out is None else Path(out)).resolve()
    prefix = colorstr("demo classify: ")
    LOGGER.info(f"{prefix}synthetic ImageFolder data ({n_train} train + {n_val} val, {len(CLASSES)} classes) -> {out}")
    data = make_synthetic_cls(out / "data", n_train=n_train, n_val=n_val, imgsz=IMGSZ, seed=0)
    result = compare_module.compare(
        data,
        list(models),
        list(seeds),
        epochs,
        imgsz=IMGSZ,
        batch=BATCH,
        device="cpu",
        out=out / "compare",
        train_overrides=dict(TRAIN_OVERRIDES),
        latency_runs=latency_runs,
        task="classify",
    )
    report = result / "compare.md"
    if report.exists():
        print(
            f"\n{report.read_text()}\nTop-1 chance level is {100 / len(CLASSES):.0f}%. Report, runs and plots: {result}"
        )
    return out
