"""The classification demo: CNN vs CNN + attention on embedded synthetic data, a few minutes on a laptop CPU.

``run_classify_demo()`` draws the synthetic classification set (`yolo_attn.data.synthetic_cls`: one small object
decides the class among look-alikes and clutter), trains Ultralytics' ``yolov8n-cls.yaml`` and the same network with
an SE and with a CBAM block after each backbone stage (``yolov8n-cls-se.yaml``, ``yolov8n-cls-cbam.yaml``) with two
seeds each and identical settings, evaluates every ``best.pt`` with Ultralytics' own validator, and writes a table of
top-1 / top-5 (mean ± std over seeds) and one figure of the val accuracy curves of all runs. It demonstrates the
machinery, not a benchmark: ten epochs from scratch on 320 images at 64 px.

Layout of the output folder (default ``runs/demo_classify/exp``, ``exp2``, ...)::

    data/train/<class>/*.png, data/val/<class>/*.png   the synthetic ImageFolder set
    train/<model>_seed<s>/                             Ultralytics' run folder (results.csv, weights/best.pt)
    results.md, results.json                           the table, and every run's top-1 / top-5
    accuracy.png                                       val top-1 per epoch: seeds thin, means thick

Run it again with the same ``out`` to finish an interrupted demo: runs with a ``weights/best.pt`` are not retrained.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

DEMO_MODELS = ("yolov8n-cls.yaml", "yolov8n-cls-se.yaml", "yolov8n-cls-cbam.yaml")  # Ultralytics', then ours
SEEDS = (0, 1)
EPOCHS = 10
IMGSZ = 64
BATCH = 32
N_TRAIN, N_VAL = 320, 80
# Short from-scratch training: AdamW at a small lr, one warm-up epoch, no dataloader worker processes; Ultralytics'
# classification augmentation otherwise unchanged.
TRAIN_OVERRIDES: dict[str, Any] = {
    "optimizer": "AdamW",
    "lr0": 0.003,
    "warmup_epochs": 1,
    "workers": 0,
    "pretrained": False,
    "amp": False,
    "plots": False,
    "deterministic": True,
}


def cls_yamls_dir() -> Path:
    """Return the folder of the shipped classification YAMLs (``yolo_attn/model_yamls``)."""
    return Path(__file__).resolve().parent / "model_yamls"


def model_path(name: str) -> str:
    """Return what to load for a demo model: Ultralytics' own YAMLs by name, ours by their path."""
    ours = cls_yamls_dir() / name
    unscaled = ours.with_name(name.replace("n-cls", "-cls", 1))
    return str(ours) if unscaled.is_file() else name


def train_one(model: str, seed: int, data: Path, project: Path, epochs: int, imgsz: int, batch: int) -> Path:
    """Train one classifier with Ultralytics (skipped when its ``best.pt`` exists) and return its run folder.

    Args:
        model (str): Model YAML name or path.
        seed (int): Training seed.
        data (Path): ImageFolder root.
        project (Path): Parent folder of the run folders.
        epochs (int): Epochs.
        imgsz (int): Image size.
        batch (int): Batch size.

    Returns:
        (Path): The run folder ``project/<model stem>_seed<seed>``.
    """
    from ultralytics import YOLO

    name = f"{Path(model).stem}_seed{seed}"
    run = project / name
    if not (run / "weights" / "best.pt").is_file():
        YOLO(model).train(
            data=str(data),
            epochs=epochs,
            imgsz=imgsz,
            batch=batch,
            seed=seed,
            device="cpu",
            project=str(project),
            name=name,
            exist_ok=True,
            verbose=False,
            **TRAIN_OVERRIDES,
        )
    return run


def results_table(results: dict[str, dict[int, dict[str, float]]]) -> str:
    """Format top-1 / top-5 as mean ± std (sample std over seeds) per model, in %, as a markdown table.

    Kept apart on purpose: the compare report will replace it once the classify task runs through ``compare``.

    Args:
        results (dict[str, dict[int, dict[str, float]]]): Model -> seed -> metrics with ``top1`` and ``top5``.

    Returns:
        (str): The table.
    """

    def pm(values: Sequence[float]) -> str:
        mean = 100 * statistics.fmean(values)
        return f"{mean:.2f}" + (f" ± {100 * statistics.stdev(values):.2f}" if len(values) > 1 else "")

    lines = ["| model | seeds | top-1 (%) | top-5 (%) |", "| --- | ---: | ---: | ---: |"]
    for model, by_seed in results.items():
        top1 = [m["top1"] for m in by_seed.values()]
        top5 = [m["top5"] for m in by_seed.values()]
        lines.append(f"| {model} | {len(by_seed)} | {pm(top1)} | {pm(top5)} |")
    return "\n".join(lines)


def run_classify_demo(
    out: str | Path | None = None,
    models: Sequence[str] = DEMO_MODELS,
    seeds: Sequence[int] = SEEDS,
    epochs: int = EPOCHS,
    n_train: int = N_TRAIN,
    n_val: int = N_VAL,
) -> Path:
    """Run the classification demo end to end and print the table.

    Args:
        out (str | Path | None): Output folder; None: a new ``runs/demo_classify/exp*`` in the working directory.
        models (Sequence[str]): Model YAML names; ``yolov8n-cls-*.yaml`` names are taken from the shipped YAMLs.
        seeds (Sequence[int]): Training seeds.
        epochs (int): Epochs per run.
        n_train (int): Synthetic training images.
        n_val (int): Synthetic validation images.

    Returns:
        (Path): The demo folder (``results.md``, ``results.json``, ``accuracy.png``, ``train/``, ``data/``).
    """
    from ultralytics.utils import LOGGER, colorstr
    from ultralytics.utils.files import increment_path

    from yolo_attn.data.synthetic_cls import CLASSES, make_synthetic_cls
    from yolo_attn.evaluation.classify_eval import evaluate_classifier, plot_accuracy_curves

    out = (increment_path(Path("runs") / "demo_classify" / "exp", sep="") if out is None else Path(out)).resolve()
    prefix = colorstr("demo classify: ")
    LOGGER.info(f"{prefix}synthetic ImageFolder data ({n_train} train + {n_val} val, {len(CLASSES)} classes) -> {out}")
    data = make_synthetic_cls(out / "data", n_train=n_train, n_val=n_val, imgsz=IMGSZ, seed=0)
    results: dict[str, dict[int, dict[str, float]]] = {}
    curves: dict[str, list[Path]] = {}
    for model in models:
        stem = Path(model).stem
        for seed in seeds:
            LOGGER.info(f"{prefix}{stem} seed {seed}: {epochs} epochs at {IMGSZ} px on CPU")
            run = train_one(model_path(model), seed, data, out / "train", epochs, IMGSZ, BATCH)
            metrics = evaluate_classifier(run / "weights" / "best.pt", data, imgsz=IMGSZ, batch=BATCH, device="cpu")
            results.setdefault(stem, {})[seed] = {"top1": metrics["top1"], "top5": metrics["top5"]}
            curves.setdefault(stem, []).append(run / "results.csv")
    table = results_table(results)
    note = (
        f"\n\ntop-5 is 100% by definition with {len(CLASSES)} classes; top-1 chance level is {100 / len(CLASSES):.0f}%."
    )
    (out / "results.md").write_text(table + note + "\n")
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    plot_accuracy_curves(curves, out / "accuracy.png")
    print(f"\n{table}{note}\nTable, JSON and plot: {out}/results.md, results.json, accuracy.png")
    return out
