"""Fuse: a wrapper around ``ultralytics.nn.tasks.BaseModel.fuse`` that also prepares registered blocks for inference.

Ultralytics folds the BatchNorms of its own layers only (it walks the modules looking for its Conv classes), so the
wrapper first calls ``fuse()`` on every registered block that has one (SAM, CBAM's spatial gate, CoordAtt, also inside
CA_C2f; a user's block too), then Ultralytics' own. ``predict``, ``val`` and ``export`` all call it. It relies on
``BaseModel.fuse(self, verbose=True)`` returning the model.
"""

from __future__ import annotations

from typing import Any

from ultralytics.nn import tasks

from yolo_attn.integration.patches import original
from yolo_attn.modules.fusion import fuse_blocks

_ULTRALYTICS_FUSE = tasks.BaseModel.fuse  # in case a copy of `fuse` outlives unregister()


def fuse(self: tasks.BaseModel, *args: Any, **kwargs: Any) -> tasks.BaseModel:
    """Fold the BatchNorms of registered blocks, then run Ultralytics' ``BaseModel.fuse`` (same arguments and return).

    Args:
        self (tasks.BaseModel): The model.
        *args (Any): Passed on to Ultralytics' ``fuse`` (``verbose``, ``imgsz``).
        **kwargs (Any): Passed on likewise.

    Returns:
        (tasks.BaseModel): What Ultralytics' ``fuse`` returns (the model itself).
    """
    fuse_blocks(self)
    return original("fuse", _ULTRALYTICS_FUSE)(self, *args, **kwargs)
