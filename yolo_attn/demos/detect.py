"""The whole pipeline in a few minutes on a laptop CPU, with nothing to download, following the realistic protocol.

Practitioners fine-tune COCO-pretrained weights rather than train from scratch, so the demo does the same on its
embedded synthetic data: ``run_demo()`` draws an "upstream" synthetic COCO-format set and pretrains the YOLOv8n
baseline on it once; then it draws a smaller "target" set (other images, same classes), and fine-tunes the baseline and
two attention variants (CBAM, ECA) from those SAME pretrained weights, with two seeds each at 128 px. Every tensor of
the baseline lands in its own layer of each variant and the new blocks start as the identity (the transfer summary is
printed), so at step 0 all three models predict exactly what the pretrained baseline predicts; they train with the
default fine-tuning protocol (`yolo_attn.finetune.protocol`: no weight decay on the mix, new-block lr x30), the baseline
included. Every run is evaluated with pycocotools, the engagement of every new block is measured
(`yolo_attn.finetune.engagement`), and the comparison table and plot are written. It is a demonstration of the
machinery, not a benchmark: the table says whether a difference stands out of the seed noise (with two seeds it
rarely does).

Layout of the output folder (default ``runs/demo/exp``, ``exp2``, ...)::

    data/upstream/  synthetic COCO-format pretraining set (coco/) and its YOLO subset (subset/data.yaml)
    data/coco/      synthetic COCO-format target set (annotations/, train2017/, val2017/)
    data/subset/    data.yaml, YOLO images/labels, COCO ground truth of the val images
    pretrain/       the baseline's pretraining run (weights/last.pt is the fine-tuning source; done.json when finished)
    compare/        compare.md, compare.csv, compare.png, runs/*.json, train/, eval/  (see yolo_attn.experiments)

Run it again with the same ``out`` to finish an interrupted demo: a finished pretraining and finished runs are kept,
an interrupted pretraining resumes from its ``last.pt``.
"""

from __future__ import annotations

from pathlib import Path

DEMO_MODELS = ("yolov8n.yaml", "yolov8n-cbam.yaml", "yolov8n-eca.yaml")  # Ultralytics' baseline, then ours by name
SEEDS = (0, 1)
PRETRAIN_EPOCHS = 30
EPOCHS = 10  # fine-tuning epochs of every compared run
IMGSZ = 128
BATCH = 8
N_UPSTREAM_TRAIN, N_TRAIN, N_VAL = 192, 96, 32
# Short CPU training: AdamW at a fixed small lr, one warm-up epoch, no per-epoch validation (the final epoch is still
# validated and best.pt written), mosaic off for the last epochs, no dataloader worker processes.
TRAIN_OVERRIDES = {
    "optimizer": "AdamW",
    "lr0": 0.003,
    "warmup_epochs": 1,
    "close_mosaic": 5,
    "val": False,
    "workers": 0,
}
FINETUNE_OVERRIDES = TRAIN_OVERRIDES | {"lr0": 0.001}  # a gentler step on pretrained weights
LATENCY_RUNS = 20


def run_demo(out: str | Path | None = None) -> Path:
    """Run the CPU demo end to end: pretrain the baseline once, fine-tune every model from it, print the table.

    Args:
        out (str | Path | None): Output folder; None makes a new ``runs/demo/exp*`` under the working directory.

    Returns:
        (Path): The demo folder; the table is ``out/compare/compare.md``, the plot ``out/compare/compare.png``.
    """
    from ultralytics.utils import LOGGER, colorstr
    from ultralytics.utils.files import increment_path

    from yolo_attn.demos.pretrain import print_report
    from yolo_attn.experiments import compare as compare_module

    out = (increment_path(Path("runs") / "demo" / "exp", sep="") if out is None else Path(out)).resolve()
    prefix = colorstr("demo: ")
    upstream = synthetic_data(out / "data" / "upstream", N_UPSTREAM_TRAIN, N_VAL, seed=1)
    LOGGER.info(f"{prefix}pretraining {DEMO_MODELS[0]} once, {PRETRAIN_EPOCHS} epochs on {N_UPSTREAM_TRAIN} images")
    weights = pretrain_baseline(upstream, out / "pretrain")
    data = synthetic_data(out / "data", N_TRAIN, N_VAL, seed=0)
    LOGGER.info(
        f"{prefix}{len(DEMO_MODELS)} models x {len(SEEDS)} seeds, each fine-tuned {EPOCHS} epochs from {weights} "
        f"on {N_TRAIN} other images (CPU)"
    )
    result = compare_module.compare(
        data,
        list(DEMO_MODELS),
        SEEDS,
        EPOCHS,
        imgsz=IMGSZ,
        batch=BATCH,
        device="cpu",
        out=out / "compare",
        train_overrides=dict(FINETUNE_OVERRIDES),
        latency_runs=LATENCY_RUNS,
        pretrained=weights,
    )
    print_report(result)
    return out


def synthetic_data(root: Path, n_train: int, n_val: int, seed: int) -> Path:
    """Draw a synthetic COCO-format set under ``root / "coco"`` and return the data.yaml of its YOLO subset.

    Args:
        root (Path): Folder for ``coco/`` and ``subset/``.
        n_train (int): Training images.
        n_val (int): Validation images.
        seed (int): Seed of the drawing; other seeds give other images of the same classes.

    Returns:
        (Path): ``root / "subset" / "data.yaml"``, with the COCO ground truth of its val images.
    """
    from yolo_attn.data.subset import build_subset
    from yolo_attn.data.synthetic import make_synthetic_coco

    coco = make_synthetic_coco(root / "coco", n_train=n_train, n_val=n_val, imgsz=IMGSZ, seed=seed)
    return build_subset(coco, None, None, None, seed=0, out=root / "subset")


def pretrain_baseline(data: Path, folder: Path) -> Path:
    """Train the baseline once on the upstream data (resumably) and return the weights every model starts from.

    Args:
        data (Path): data.yaml of the upstream set.
        folder (Path): Training folder; ``done.json`` marks a finished run, which is then reused as it is.

    Returns:
        (Path): ``folder / "weights" / "last.pt"``, the weights after the last epoch.
    """
    from yolo_attn.demos.pretrain import pretrain_once

    return pretrain_once(
        DEMO_MODELS[0], data, folder, epochs=PRETRAIN_EPOCHS, imgsz=IMGSZ, batch=BATCH, overrides=TRAIN_OVERRIDES
    )
