"""The standard sites: where a block goes in a YOLO model, defined once for every registered block.

These are the sites of the shipped ``yolo_attn/model_yamls`` files, as rules on the layout of a family's own
Ultralytics YAML (so ``yolo11n-ema.yaml`` is generated with EMA where ``yolo11-cbam.yaml`` has CBAM):

- Detect, Segment, Pose and OBB models (the last head row reads several levels, P3/P4/P5):
    - backbone: one block after the last backbone row (``"end"``: SPPF in YOLOv8, C2PSA in YOLO11/YOLO26), or
      after the last row before SPPF (``"before_sppf"``), or ``"before_own_attention"``: before SPPF where the
      backbone already has its own attention (C2PSA), else at the end;
    - neck: one block after each row the head reads (the last C2f/C3k2 of each level), in line, so each refined map
      also feeds the bottom-up path; ``neck`` (a count) keeps only the lowest-resolution inputs.
- Classify models (no neck): one block at the end of each backbone stage (the row before each stride-2 Conv, and the
  last backbone row); ``stages`` (a count) keeps only the lowest-resolution stages.
- Blocks that extend an Ultralytics block (``CA_C2f`` extends ``C2f``) replace rows of their parent instead: the last
  parent row before SPPF and the parent rows the head reads (classification: the parent rows that end a stage).

A block picks its placement by the class attribute ``standard_sites`` (a key of `PLACEMENTS`, default
``"channel"``): ``"positional"`` for gates that encode where (CoordAtt, SAM: before SPPF's max-pools blur it),
``"global"`` for attention over all H*W tokens (MHSA: O((HW)^2), so the highest-resolution level gets none).

This module is pure: it reads model dicts (``backbone``/``head`` rows) and imports neither Ultralytics nor the blocks.
"""

from __future__ import annotations

from dataclasses import dataclass

from yolo_attn.blocks import EXTENDS, BlockSpec

OWN_ATTENTION = frozenset({"C2PSA", "C2fPSA", "PSA", "A2C2f"})  # Ultralytics rows that already are attention
SPPF_NAMES = frozenset({"SPPF", "SPP", "SPPELAN"})


class SiteError(ValueError):
    """The standard sites cannot be found in a model dict; the message says what is missing."""


@dataclass(frozen=True)
class Placement:
    """Where a block goes in a model, as rules on the layout (see the module docstring).

    Attributes:
        backbone (str): ``"end"``, ``"before_sppf"`` or ``"before_own_attention"``.
        neck (int | None): How many of the head's inputs get a block, lowest resolution first; None: all.
        stages (int | None): Classification: how many backbone stages get a block, lowest resolution first; None: all.
    """

    backbone: str = "end"
    neck: int | None = None
    stages: int | None = None


PLACEMENTS: dict[str, Placement] = {
    "channel": Placement("end"),
    "positional": Placement("before_sppf"),
    "global": Placement("before_own_attention", neck=2, stages=2),
}


def placement_of(spec: BlockSpec) -> Placement:
    """Return the placement a block declares (class attribute ``standard_sites``, default ``"channel"``).

    Raises:
        SiteError: For a ``standard_sites`` value that is not a key of `PLACEMENTS`.
    """
    key = getattr(spec.cls, "standard_sites", "channel")
    if key not in PLACEMENTS:
        raise SiteError(f"{spec.cls.__name__}.standard_sites = {key!r}; expected one of {sorted(PLACEMENTS)}")
    return PLACEMENTS[key]


def is_classifier(cfg: dict) -> bool:
    """Whether the model's last head row is a ``Classify`` head (a single-input head)."""
    return not isinstance(cfg["head"][-1][0], list)


def standard_sites(cfg: dict, spec: BlockSpec) -> list[int]:
    """Return the layer indices (of ``cfg``) where ``spec`` goes: insert after them, or replace them (extends kind).

    Args:
        cfg (dict): Model dict with ``backbone`` and ``head`` rows, e.g. Ultralytics' ``yolo11-seg.yaml``.
        spec (BlockSpec): The block.

    Returns:
        (list[int]): Sorted layer indices.

    Raises:
        SiteError: When the layout lacks what the rules need (no SPPF, no parent rows, ...).
    """
    rows = cfg["backbone"] + cfg["head"]
    placement = placement_of(spec)
    if is_classifier(cfg):
        sites = _stage_ends(cfg)
        if spec.kind == EXTENDS:
            sites = [i for i in sites if rows[i][2] == spec.parent.__name__]
        sites = sites[-placement.stages :] if placement.stages else sites
    else:
        inputs = [_absolute(f, len(rows) - 1) for f in rows[-1][0]]
        inputs = inputs[-placement.neck :] if placement.neck else inputs
        sites = [_backbone_site(cfg, spec, placement), *inputs]
    if spec.kind == EXTENDS:
        wrong = [i for i in sites if rows[i][2] != spec.parent.__name__]
        if wrong or not sites:
            found = ", ".join(f"{i} {rows[i][2]}" for i in wrong) or "none"
            raise SiteError(
                f"{spec.name} extends {spec.parent.__name__} and replaces {spec.parent.__name__} rows, but the "
                f"standard sites of this model are not {spec.parent.__name__} rows ({found})"
            )
    return sorted(set(sites))


def _backbone_site(cfg: dict, spec: BlockSpec, placement: Placement) -> int:
    backbone = [row[2] for row in cfg["backbone"]]
    sppf = next((i for i, m in enumerate(backbone) if m in SPPF_NAMES), None)
    rule = placement.backbone
    if rule == "before_own_attention":
        rule = "before_sppf" if OWN_ATTENTION & set(backbone) else "end"
    if spec.kind == EXTENDS or rule == "before_sppf":
        if sppf is None or sppf == 0:
            raise SiteError(f"no SPPF in the backbone ({', '.join(backbone)}): the site before SPPF is undefined")
        return sppf - 1
    return len(backbone) - 1


def _stage_ends(cfg: dict) -> list[int]:
    """Backbone rows that end a stage: the row before each stride-2 Conv (not itself a Conv), and the last row."""
    backbone = cfg["backbone"]
    ends = [
        i - 1
        for i, (_, _, m, a) in enumerate(backbone)
        if i > 0 and m == "Conv" and len(a) > 2 and a[2] == 2 and backbone[i - 1][2] != "Conv"
    ]
    return sorted({*ends, len(backbone) - 1})


def _absolute(f: int, j: int) -> int:
    return f if f >= 0 else j + f
