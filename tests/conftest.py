"""Test set-up: offline Ultralytics in a private config dir, and small shared fixtures.

The environment is set before anything imports ultralytics (it reads these variables at import time). Under
pytest-xdist (``-n``, the default in pyproject.toml) each worker, and each process it starts, gets its share of the
cores as torch threads.
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
from pathlib import Path

_CONFIG_DIR = Path(tempfile.mkdtemp(prefix="yolo_attn_cfg_"))
os.environ.setdefault("YOLO_CONFIG_DIR", str(_CONFIG_DIR))
os.environ.setdefault("YOLO_ATTN_CACHE_DIR", str(_CONFIG_DIR / "yolo_attn_cache"))  # built COCO ground truths
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "0")
os.environ.setdefault("YOLO_VERBOSE", "False")
if "PYTEST_XDIST_WORKER_COUNT" in os.environ:  # pytest -n N: share the cores, or N workers x all-core torch thrash
    _workers = int(os.environ["PYTEST_XDIST_WORKER_COUNT"])
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // _workers)))  # children inherit it

import pytest  # noqa: E402
from compare_fakes import fakes  # noqa: E402, F401  (the fixture, for every test module)

import yolo_attn  # noqa: E402, F401  (registers the blocks)
from yolo_attn.utils.offline import install_local_font  # noqa: E402

install_local_font()

REPO = Path(__file__).resolve().parents[1]
MODEL_YAMLS = REPO / "model_yamls"


def subprocess_env() -> dict[str, str]:
    """Environment for child interpreters: the same offline settings, this checkout importable."""
    env = dict(os.environ) | {"YOLO_VERBOSE": "True"}  # child output is read by the tests
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    return env


def yolo_attn_command() -> list[str]:
    """The installed ``yolo-attn`` console script, as a user types it (beside this interpreter, else on PATH)."""
    script = Path(sys.executable).with_name("yolo-attn")
    return [str(script)] if script.exists() else ["yolo-attn"]


@pytest.fixture(autouse=True)
def _same_random_state() -> None:
    """Seed Python's, NumPy's and torch's global generators before each test.

    A test's random inputs then do not depend on which tests ran before it in the same process, so a test fails or
    passes alike when run alone, in the full suite, or in a pytest-xdist worker.
    """
    import numpy as np
    import torch

    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def repo() -> Path:
    """Path of this checkout."""
    return REPO


def write_tiny_yolo_dataset(root: Path, n_train: int = 8, n_val: int = 4, imgsz: int = 64) -> Path:
    """Write a tiny two-class YOLO data set of coloured rectangles on noise and return its data.yaml.

    Args:
        root (Path): Folder to write into.
        n_train (int): Training images.
        n_val (int): Validation images.
        imgsz (int): Image side in pixels.

    Returns:
        (Path): The data.yaml path.
    """
    import cv2
    import numpy as np
    import yaml

    rng = np.random.default_rng(0)
    for split, count in (("train", n_train), ("val", n_val)):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        for k in range(count):
            image = rng.integers(0, 80, (imgsz, imgsz, 3), dtype=np.uint8)
            lines = []
            for cls in (0, 1):
                w, h = rng.integers(imgsz // 5, imgsz // 2, 2)
                x0, y0 = rng.integers(0, imgsz - w), rng.integers(0, imgsz - h)
                colour = (0, 0, 255) if cls == 0 else (255, 255, 0)
                cv2.rectangle(image, (int(x0), int(y0)), (int(x0 + w), int(y0 + h)), colour, -1)
                cx, cy = (x0 + w / 2) / imgsz, (y0 + h / 2) / imgsz
                lines.append(f"{cls} {cx:.6f} {cy:.6f} {w / imgsz:.6f} {h / imgsz:.6f}")
            cv2.imwrite(str(root / "images" / split / f"{k:03d}.jpg"), image)
            (root / "labels" / split / f"{k:03d}.txt").write_text("\n".join(lines) + "\n")
    data = root / "data.yaml"
    spec = {"path": str(root), "train": "images/train", "val": "images/val", "names": {0: "red", 1: "cyan"}}
    data.write_text(yaml.safe_dump(spec, sort_keys=False))
    return data


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny YOLO data set (data.yaml path), shared by the tests that train."""
    return write_tiny_yolo_dataset(tmp_path_factory.mktemp("tiny_data"))
