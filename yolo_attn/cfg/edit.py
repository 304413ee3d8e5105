"""Insert a block into a model YAML dict with every ``from`` index renumbered.

Inserting a row by hand shifts the index of every later layer, and each absolute ``from`` (Concat, Detect) must be
fixed. :func:`insert_after` does that bookkeeping: the new block reads the chosen layer and takes its place for every
later consumer, so it sits in-line.

Examples:
    >>> from ultralytics.nn.tasks import yaml_model_load
    >>> cfg = yaml_model_load("yolov8n.yaml")
    >>> cfg = insert_after(cfg, 9, "CBAM")  # CBAM after SPPF; Concat [-1, 9] becomes [-1, 10], Detect is renumbered
"""

from __future__ import annotations

import copy
from typing import Any


def insert_after(cfg: dict, index: int, module: str, args: list | None = None) -> dict:
    """Return a copy of ``cfg`` with ``[-1, 1, module, args]`` inserted after layer ``index``.

    Every later reference to layer ``index`` (relative or absolute) is redirected to the new block, every reference to
    a later layer is shifted by one, and relative references keep their relative form.

    Args:
        cfg (dict): Model dict with ``backbone`` and ``head`` rows ``[from, repeats, module, args]``.
        index (int): Layer whose output the block refines (0-based over backbone + head).
        module (str): Block name as written in a YAML, e.g. ``"ECA"``.
        args (list | None): The block's YAML args.

    Returns:
        (dict): The new model dict; ``cfg`` is left unchanged.
    """
    cfg = copy.deepcopy(cfg)
    n_backbone = len(cfg["backbone"])
    rows = cfg["backbone"] + cfg["head"]
    if not 0 <= index < len(rows):
        raise IndexError(f"layer {index} does not exist: the model has layers 0..{len(rows) - 1}")
    position = index + 1
    renumbered = []
    for j, (f, n, m, a) in enumerate(rows):
        new_j = j + (j >= position)
        renumbered.append([_renumber(f, j, new_j, index, position), n, m, a])
    renumbered.insert(position, [-1, 1, module, list(args or [])])
    split = n_backbone + (position <= n_backbone)
    cfg["backbone"], cfg["head"] = renumbered[:split], renumbered[split:]
    return cfg


def _renumber(f: Any, j: int, new_j: int, index: int, position: int) -> Any:
    """Map a row's ``from`` (int or list of ints) from the old layer numbering to the new one."""
    if isinstance(f, list):
        return [_renumber(x, j, new_j, index, position) for x in f]
    target = f if f >= 0 else j + f
    new_target = position if target == index else target + (target >= position)
    return new_target - new_j if f < 0 else new_target
