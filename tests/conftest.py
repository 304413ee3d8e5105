"""Test set-up: offline Ultralytics in a private config dir, and small shared fixtures.

The environment is set before anything imports ultralytics (it reads these variables at import time). Under
pytest-xdist (``-n``, the default in pyproject.toml) each worker, and each process it starts, gets its share of the
cores as torch threads.
"""

from __future__ import annotations

import os
import random
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
import torch  # noqa: E402
from support.compare_fakes import fakes  # noqa: E402, F401  (the fixture, for every test module)
from support.data import write_tiny_yolo_dataset  # noqa: E402
from support.env import REPO  # noqa: E402

import yolo_attn  # noqa: E402, F401  (registers the blocks)
from yolo_attn.modules.random_weights import randomize_  # noqa: E402
from yolo_attn.utils.offline import install_local_font  # noqa: E402

install_local_font()


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


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny YOLO data set (data.yaml path), shared by the tests that train."""
    return write_tiny_yolo_dataset(tmp_path_factory.mktemp("tiny_data"))


@pytest.fixture(scope="module")
def baseline_pt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A yolov8n checkpoint for the tiny data set's 2 classes with random (non-zero) weights: a baseline best.pt."""
    from ultralytics.nn.tasks import DetectionModel

    model = randomize_(DetectionModel("yolov8n.yaml", nc=2, verbose=False), fan_in=True)
    path = tmp_path_factory.mktemp("pretrained") / "yolov8n.pt"
    torch.save({"model": model, "train_args": {}}, path)
    return path
