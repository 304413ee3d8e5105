"""Helpers shared by the zoo block tests (tests/test_zoo_*.py): a block in a real YOLO YAML, and a small detector."""

from __future__ import annotations

import copy

import pytest
import torch
from ultralytics.nn.tasks import DetectionModel, yaml_model_load

from yolo_attn.cfg.edit import insert_after

FAMILIES = ("yolov8", "yolo11", "yolo26")
SPPF = 9  # the P5 SPPF layer in all three families

#: (family, scale) for the build tests: every family at scale n (fast, and in the seam run), and the widest P5 of
#: all (yolo11x: 768 channels) marked slow. The other families' x builds differ only in Ultralytics' width table.
BUILD_CASES = [
    *(pytest.param(fam, "n", marks=pytest.mark.seam, id=f"{fam}n") for fam in FAMILIES),
    pytest.param("yolo11", "x", marks=[pytest.mark.seam, pytest.mark.slow], id="yolo11x"),
]


def p5_width(fam: str, scale: str) -> int:
    """Channels of SPPF (nominal 1024) at a scale, from Ultralytics' own scale table."""
    _, width, max_channels = yaml_model_load(f"{fam}.yaml")["scales"][scale]
    return int(-(-min(1024, max_channels) * width // 8) * 8)


def build_after_sppf(fam: str, scale: str, name: str, args: list) -> tuple[DetectionModel, torch.nn.Module]:
    """Build ``{fam}{scale}`` with ``[-1, 1, name, args]`` after SPPF; return the detector and the block."""
    cfg = insert_after(yaml_model_load(f"{fam}{scale}.yaml"), SPPF, name, args)
    model = DetectionModel(copy.deepcopy(cfg), verbose=False).eval()
    return model, model.model[SPPF + 1]


def small_detector(rows: list) -> dict:
    """A small detector at scale n: stem, P3, P4 (128 channels: layer 5 reads 128), the given rows, Detect."""
    backbone = [
        [-1, 1, "Conv", [64, 3, 2]],
        [-1, 1, "Conv", [128, 3, 2]],
        [-1, 1, "Conv", [256, 3, 2]],
        [-1, 1, "C2f", [256, True]],
        [-1, 1, "Conv", [512, 3, 2]],  # 4: 128 channels at scale n
    ]
    scales = {"n": [0.33, 0.25, 1024]}
    return {
        "nc": 2,
        "scales": scales,
        "scale": "n",
        "backbone": backbone,
        "head": [*rows, [[3, -1], 1, "Detect", ["nc"]]],
    }


def build_small(rows: list) -> DetectionModel:
    """Build `small_detector` with ``rows`` as layers 5...; raises the package's row errors."""
    return DetectionModel(small_detector(rows), ch=3, verbose=False)


def assert_builds(fam: str, scale: str, name: str, cls: type, args: list | None = None) -> None:
    """A YAML row of ``name`` after SPPF builds at ``fam`` ``scale`` with inferred channels, and the detector runs."""
    model, block = build_after_sppf(fam, scale, name, args or [])
    assert type(block) is cls
    c = p5_width(fam, scale)
    reference = cls(c, *(args or []))
    assert [(k, v.shape) for k, v in block.state_dict().items()] == [
        (k, v.shape) for k, v in reference.state_dict().items()
    ]
    seen = {}
    handle = block.register_forward_hook(lambda m, i, o: seen.update(x=i[0].shape, y=o.shape))
    with torch.no_grad():
        model(torch.zeros(1, 3, 64, 96))
    handle.remove()
    assert seen["x"][1] == c and seen["y"] == seen["x"]


def blocks_at_p3_and_p5(
    fam: str, scale: str, p3_row: tuple[str, list], p5_row: tuple[str, list], cls: type[torch.nn.Module]
) -> list[tuple[torch.nn.Module, int]]:
    """Build ``{fam}{scale}`` with one block row after P3's last layer (4) and one after SPPF (9), run a 64 px image.

    Args:
        fam (str): Model family (``yolov8``, ``yolo11``, ``yolo26``).
        scale (str): Model scale (``n``, ``x``).
        p3_row (tuple[str, list]): YAML name (or alias) and args of the block after layer 4.
        p5_row (tuple[str, list]): YAML name (or alias) and args of the block after SPPF.
        cls (type[torch.nn.Module]): The block class both rows must build.

    Returns:
        (list[tuple[torch.nn.Module, int]]): Each built ``cls`` instance in model order (P3 first) with the channel
            count of the input it received in the forward pass.
    """
    cfg = insert_after(insert_after(yaml_model_load(f"{fam}{scale}.yaml"), SPPF, *p5_row), 4, *p3_row)
    model = DetectionModel(cfg, verbose=False).eval()
    found = [m for m in model.modules() if isinstance(m, cls)]
    seen: dict[int, int] = {}

    def record(module: torch.nn.Module, args: tuple, output: torch.Tensor) -> None:
        seen.setdefault(id(module), args[0].shape[1])

    handles = [m.register_forward_hook(record) for m in found]
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, 64, 64))
    finally:
        for handle in handles:
            handle.remove()
    assert len(found) == len(seen) == 2, "expected one block at P3 and one at P5"
    return [(m, seen[id(m)]) for m in found]
