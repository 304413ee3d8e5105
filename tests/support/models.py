"""A small detector YAML with rows of one's choosing, and its build: the registration tests' test bench."""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from ultralytics.nn.tasks import DetectionModel

#: YOLOv8's scales (depth, width, max channels), written out independently of Ultralytics' tables.
SCALES = {"n": (0.33, 0.25, 1024), "s": (0.33, 0.50, 1024), "m": (0.67, 0.75, 768), "l": (1.0, 1.0, 512)}


def small_yaml(rows: list, scale: str = "n") -> dict:
    """A small detector: stem, two stages (P3, P4), the given extra rows, a Detect on the last two layers."""
    backbone = [
        [-1, 1, "Conv", [64, 3, 2]],  # 0 P1
        [-1, 1, "Conv", [128, 3, 2]],  # 1 P2
        [-1, 1, "Conv", [256, 3, 2]],  # 2 P3
        [-1, 1, "C2f", [256, True]],  # 3
        [-1, 1, "Conv", [512, 3, 2]],  # 4 P4
    ]
    head = [*rows, [[3, -1], 1, "Detect", ["nc"]]]
    scales = {k: list(v) for k, v in SCALES.items()}
    return {"nc": 2, "scales": scales, "scale": scale, "backbone": backbone, "head": head}


def build(d: dict) -> DetectionModel:
    """Build a detector from a copy of the model dict ``d`` (the dict is left as it was)."""
    return DetectionModel(copy.deepcopy(d), ch=3, verbose=False)


def source_checkpoint(path: Path, nc: int = 2) -> Path:
    """A yolov8n checkpoint with random (not zero) weights, as a stand-in for yolov8n.pt (offline)."""
    model = DetectionModel("yolov8n.yaml", nc=nc, verbose=False)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    torch.save({"model": copy.deepcopy(model), "train_args": {}}, path)
    return path
