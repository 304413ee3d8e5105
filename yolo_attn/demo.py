"""The whole pipeline in a few minutes on a laptop CPU, with nothing to download.

``run_demo()`` draws the embedded synthetic COCO-format data set, builds a subset of it (YOLO layout + COCO ground
truth), trains the YOLOv8n baseline and two attention variants (CBAM, ECA) with two seeds each at 128 px, evaluates
every run with pycocotools, and writes the comparison table and plot. It is a demonstration of the machinery, not a
benchmark: a few epochs from scratch on 96 images give small mAPs, and the table says whether a difference stands
out of the seed noise (with two seeds and so little training it usually does not).

Layout of the output folder (default ``runs/demo/exp``, ``exp2``, ...)::

    data/coco/      synthetic COCO-format data set (annotations/, train2017/, val2017/)
    data/subset/    data.yaml, YOLO images/labels, COCO ground truth of the val images
    compare/        compare.md, compare.csv, compare.png, runs/*.json, train/, eval/  (see yolo_attn.experiments)

Run it again with the same ``out`` to finish an interrupted demo: finished runs are kept.
"""

from __future__ import annotations

from pathlib import Path

DEMO_MODELS = ("yolov8n.yaml", "yolov8n-cbam.yaml", "yolov8n-eca.yaml")  # Ultralytics' baseline, then model_yamls/
SEEDS = (0, 1)
EPOCHS = 20
IMGSZ = 128
BATCH = 8
N_TRAIN, N_VAL = 96, 32
# Short from-scratch training: AdamW at a fixed small lr, one warm-up epoch, no per-epoch validation (the final epoch
# is still validated and best.pt written), mosaic off for the last epochs, no dataloader worker processes.
TRAIN_OVERRIDES = {
    "optimizer": "AdamW",
    "lr0": 0.003,
    "warmup_epochs": 1,
    "close_mosaic": 5,
    "val": False,
    "workers": 0,
}
LATENCY_RUNS = 20


def model_yamls_dir() -> Path:
    """Return the folder of the shipped model YAMLs, inside the installed package (``yolo_attn/model_yamls``).

    Returns:
        (Path): The folder holding ``yolov8-cbam.yaml`` and the other variants (a clone's ``model_yamls`` links here).
    """
    from yolo_attn.registry import MODEL_YAMLS_DIR

    return MODEL_YAMLS_DIR


def run_demo(out: str | Path | None = None) -> Path:
    """Run the CPU demo end to end and print the comparison table.

    Args:
        out (str | Path | None): Output folder; None makes a new ``runs/demo/exp*`` under the working directory.

    Returns:
        (Path): The demo folder; the table is ``out/compare/compare.md``, the plot ``out/compare/compare.png``.
    """
    from ultralytics.utils import LOGGER, colorstr
    from ultralytics.utils.files import increment_path

    from yolo_attn.data.subset import build_subset
    from yolo_attn.data.synthetic import make_synthetic_coco
    from yolo_attn.experiments.compare import compare

    out = (increment_path(Path("runs") / "demo" / "exp", sep="") if out is None else Path(out)).resolve()
    prefix = colorstr("demo: ")
    yamls = model_yamls_dir()
    models = [DEMO_MODELS[0], *(str(yamls / name) for name in DEMO_MODELS[1:])]
    LOGGER.info(f"{prefix}synthetic COCO data ({N_TRAIN} train + {N_VAL} val images, {IMGSZ} px) -> {out / 'data'}")
    coco = make_synthetic_coco(out / "data" / "coco", n_train=N_TRAIN, n_val=N_VAL, imgsz=IMGSZ, seed=0)
    data = build_subset(coco, None, None, None, seed=0, out=out / "data" / "subset")
    LOGGER.info(f"{prefix}{len(models)} models x {len(SEEDS)} seeds, {EPOCHS} epochs each on CPU")
    result = compare(
        data,
        models,
        SEEDS,
        EPOCHS,
        imgsz=IMGSZ,
        batch=BATCH,
        device="cpu",
        out=out / "compare",
        train_overrides=dict(TRAIN_OVERRIDES),
        latency_runs=LATENCY_RUNS,
    )
    print(f"\n{(result / 'compare.md').read_text()}")
    print(f"Table, CSV and plot: {result}/compare.md, compare.csv, compare.png")
    return out
