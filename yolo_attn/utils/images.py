"""Image preprocessing shared by the visualizer and the engagement measure: Ultralytics' letterbox, one image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def letterbox_image(path: Path, imgsz: int, stride: int = 32) -> tuple[np.ndarray, torch.Tensor]:
    """Read an image and preprocess it as Ultralytics' predictor does, into a square letterbox.

    Args:
        path (Path): Image file.
        imgsz (int): Side of the square letterbox, a multiple of ``stride``.
        stride (int): The model's largest stride.

    Returns:
        image (np.ndarray): Letterboxed RGB image of shape (imgsz, imgsz, 3), uint8.
        tensor (torch.Tensor): Network input of shape (1, 3, imgsz, imgsz), float32 in [0, 1].

    Raises:
        FileNotFoundError: If the file cannot be read as an image.
    """
    from ultralytics.data.augment import LetterBox
    from ultralytics.utils.patches import imread

    bgr = imread(str(path))
    if bgr is None:
        raise FileNotFoundError(f"cannot read image {path}")
    rgb = np.ascontiguousarray(LetterBox((imgsz, imgsz), auto=False, stride=stride)(image=bgr)[..., ::-1])
    tensor = torch.from_numpy(rgb).permute(2, 0, 1).unsqueeze(0).float().div(255)
    return rgb, tensor
