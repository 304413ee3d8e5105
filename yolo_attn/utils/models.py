"""Model loading shared by the profiler, the visualizer and the fine-tuning checks: a module from what a user passes."""

from __future__ import annotations

from pathlib import Path

from torch import nn


def load_model(model_or_cfg: nn.Module | str | Path) -> nn.Module:
    """Return a PyTorch model from a module, a model YAML or a checkpoint.

    Args:
        model_or_cfg (nn.Module | str | Path): An ``nn.Module`` (returned unchanged), an Ultralytics ``YOLO`` object, a
            model YAML (e.g. ``"yolov8n.yaml"`` or ``"model_yamls/yolov8n-cbam.yaml"``, scale taken from the file name)
            or a ``.pt`` checkpoint.

    Returns:
        (nn.Module): The model, e.g. an Ultralytics ``DetectionModel``.
    """
    from ultralytics import YOLO

    if isinstance(model_or_cfg, YOLO):
        return model_or_cfg.model
    if isinstance(model_or_cfg, nn.Module):
        return model_or_cfg
    return YOLO(str(model_or_cfg)).model
