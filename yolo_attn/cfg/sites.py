"""Where a block goes in a YOLO model: the named sites of any model YAML, and the standard sites of every block.

**Named sites** (`named_sites`, `resolve_sites`) are read off a model YAML's own rows, so they exist for any
Ultralytics model of any task (v3, v5u, v8, v9, v10, 11, 12, 26, RT-DETR backbones where their rows allow it):

- ``p2`` ... ``p6``: the end of each backbone stage, the last backbone row whose output has stride 4, 8, 16, 32 or 64
  (the map fed onward to the neck). Strides are followed row by row from the rows' modules and args (a stride-2
  ``Conv``/``ADown``/``SCDown``/pool halves the map, ``nn.Upsample`` doubles it, a multi-input row keeps its last
  input's). A level made only of its downsampling row (the stem Conv of P1) is no stage.
- ``sppf``: the SPPF / SPP / SPPELAN row.
- ``neck``: each input of the head (the rows the last row, Detect/Segment/Pose/OBB/v10Detect/Classify, reads).
- ``up``: the ``nn.Upsample`` rows (the neck's top-down path), where a model has them.
- ``all``: every stage from ``p3`` up, ``sppf`` and ``neck`` together.
- a raw layer index (``6``) is a site too.

A block goes after each site (in line: every later consumer of the site reads the block), or, for a block that
extends an Ultralytics block, replaces the row at the site (which must be a row of its parent); so does a block that
replaces rows of another module (an upsampler such as DySample at ``nn.Upsample`` rows).

**Standard sites** (`standard_sites`): the sites of the shipped ``cfg/model_yamls`` files, as rules on the same
structure (so ``yolo11n-ema.yaml`` is generated with EMA where ``yolo11-cbam.yaml`` has CBAM):

- Detect, Segment, Pose and OBB models (the last head row reads several levels, P3/P4/P5):
    - backbone: one block after the last backbone row (``"end"``: SPPF in YOLOv8, C2PSA in YOLO11/YOLO26), or
      after the last row before SPPF (``"before_sppf"``), or ``"before_own_attention"``: before SPPF where the
      backbone already has its own attention (C2PSA), else at the end;
    - neck: one block after each row the head reads (the ``neck`` sites), in line, so each refined map also feeds the
      bottom-up path; ``neck`` (a count) keeps only the lowest-resolution inputs.
- Classify models (no neck): one block at the end of each backbone stage (the ``p2``... sites, and the last backbone
  row); ``stages`` (a count) keeps only the lowest-resolution stages.
- Blocks that extend an Ultralytics block (``CA_C2f`` extends ``C2f``) replace rows of their parent instead: the last
  parent row before SPPF and the parent rows the head reads (classification: the parent rows that end a stage).
- Blocks that replace rows of another module (kind ``"replaces"``: DySample for ``nn.Upsample``) replace every such
  row of the model (a model without one, such as a classifier, has no standard site for them).

A block picks its placement by the class attribute ``standard_sites`` (a key of `PLACEMENTS`, default
``"channel"``): ``"positional"`` for gates that encode where (CoordAtt, SAM: before SPPF's max-pools blur it),
``"global"`` for attention over all H*W tokens (MHSA: O((HW)^2), so the highest-resolution level gets none).

X
(`insert_block` imports `yolo_attn.cfg.generated` when called).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from yolo_attn.registry import EXTENDS, REPLACES, BlockSpec

OWN_ATTENTION = frozenset({"C2PSA", "C2fPSA", "PSA", "A2C2f"})  # Ultralytics rows that already are attention
SPPF_NAMES = frozenset({"SPPF", "SPP", "SPPELAN"})
# Rows whose only job is to change the resolution; the stride is args[2] (Conv-like [c2, k, s]) or fixed.
STRIDE_ARG2 = frozenset({"Conv", "DWConv", "GhostConv", "SCDown", "RepConv", "LightConv", "Conv2", "CBS"})
HALVING = frozenset({"ADown", "AConv"})
POOLS = frozenset({"nn.MaxPool2d", "nn.AvgPool2d", "MaxPool2d", "AvgPool2d"})
UPSAMPLE = frozenset({"nn.Upsample", "Upsample"})
TRANSPOSED = frozenset({"ConvTranspose", "DWConvTranspose2d"})  # args [c2, k, s]: the map grows by s
LEVELS = range(2, 7)  # p2 .. p6
SITE_NAME = re.compile(r"^p\d$|^sppf$|^neck$|^up$|^all$")


class SiteError(ValueError):
    """The sites asked for cannot be found in a model dict; the message says what is missing and what there is."""


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


def strides(cfg: dict) -> list[float | None]:
    """Return the output stride of every row (backbone + head) relative to the input image, None where unknown.

    Args:
        cfg (dict): Model dict with ``backbone`` and ``head`` rows.

    Returns:
        (list[float | None]): One stride per row (1 for the input resolution, 8 for a P3 map); None after a row whose
            effect on the resolution is not known here (``TorchVision``, ``ResNetLayer`` with unusual args, ...).
    """
    rows = cfg["backbone"] + cfg["head"]
    out: list[float | None] = []
    for j, (f, _, m, a) in enumerate(rows):
        sources = f if isinstance(f, list) else [f]
        src = _absolute(sources[-1], j)  # a multi-input row (Concat, CBFuse) has its last input's size
        before = 1.0 if src < 0 else out[src]
        factor = _stride_factor(m, list(a) if isinstance(a, list) else [])
        out.append(None if before is None or factor is None else before * factor)
    return out


def stage_sites(cfg: dict) -> dict[str, int]:
    """Return ``{"p3": 4, "p4": 6, ...}``: the last backbone row of each level p2..p6 that is a stage.

    A level counts when its last row is not a pure downsampling row (the stem Conv of P1/P2 is no stage).
    """
    n_backbone = len(cfg["backbone"])
    s = strides(cfg)[:n_backbone]
    found: dict[str, int] = {}
    for level in LEVELS:
        rows = [i for i, v in enumerate(s) if v is not None and math.isclose(v, 2**level)]
        if rows and not _downsamples(cfg["backbone"][rows[-1]]):
            found[f"p{level}"] = rows[-1]
    return found


def head_inputs(cfg: dict) -> list[int]:
    """Return the absolute layer indices the head (the model's last row) reads, in its order."""
    rows = cfg["backbone"] + cfg["head"]
    f = rows[-1][0]
    return [_absolute(x, len(rows) - 1) for x in (f if isinstance(f, list) else [f])]


def sppf_sites(cfg: dict) -> list[int]:
    """Return the SPPF / SPP / SPPELAN rows of the model."""
    return [i for i, row in enumerate(cfg["backbone"] + cfg["head"]) if row[2] in SPPF_NAMES]


def named_sites(cfg: dict) -> dict[str, list[int]]:
    """Return every named site of a model and its layer indices (see the module docstring).

    Args:
        cfg (dict): Model dict, e.g. Ultralytics' ``yolo11-pose.yaml``.

    Returns:
        (dict[str, list[int]]): ``p2``..``p6`` (those the model has), ``sppf`` (if any), ``neck``, ``up`` (if any)
            and ``all``.
    """
    sites = {name: [i] for name, i in stage_sites(cfg).items()}
    if sppf := sppf_sites(cfg):
        sites["sppf"] = sppf
    sites["neck"] = sorted(set(head_inputs(cfg)))
    if up := [i for i, row in enumerate(cfg["backbone"] + cfg["head"]) if row[2] in UPSAMPLE]:
        sites["up"] = up
    union = {i for name, v in sites.items() if name not in ("p2", "up") for i in v}
    sites["all"] = sorted(union)
    return sites


def split_site_specs(tokens: str | Sequence[str | int]) -> list[str]:
    """Split site tokens (``["p4", "p5"]``, ``"p4,p5"``, ``"p4+p5"``, ``[6]``) into single site names or indices."""
    tokens = [tokens] if isinstance(tokens, (str, int)) else list(tokens)
    return [t for tok in tokens for t in re.split(r"[,+\s]+", str(tok).strip()) if t]


def resolve_sites(cfg: dict, tokens: str | Sequence[str | int]) -> list[int]:
    """Return the sorted layer indices of ``cfg`` that site tokens name.

    Args:
        cfg (dict): Model dict.
        tokens (str | Sequence[str | int]): Site names (``p3``, ``sppf``, ``neck``, ``all``) and layer indices, as a
            list and/or joined by ``,`` or ``+``.

    Returns:
        (list[int]): Sorted, without repeats (``p5`` and ``sppf`` are one row in YOLOv8).

    Raises:
        SiteError: For no token, a name the model lacks, or an index out of range; the message lists the model's sites.
    """
    names = named_sites(cfg)
    n_rows = len(cfg["backbone"]) + len(cfg["head"])
    parts = split_site_specs(tokens)
    if not parts:
        raise SiteError(f"no site given; {describe_sites(cfg)}")
    out: set[int] = set()
    for part in parts:
        key = part.lower()
        if re.fullmatch(r"\d+", key):
            i = int(key)
            if not 0 <= i < n_rows - 1:
                raise SiteError(f"site {part}: a site is a layer index 0..{n_rows - 2} (not the head's last row)")
            out.add(i)
        elif key in names:
            out.update(names[key])
        else:
            why = "this model has no such site" if SITE_NAME.match(key) else "not a site name or layer index"
            raise SiteError(f"site {part!r}: {why}; {describe_sites(cfg)}")
    return sorted(out)


def describe_sites(cfg: dict) -> str:
    """Return the sites of a model as the error messages list them: ``its sites are p3 (4), ..., or a layer index``."""
    names = named_sites(cfg)
    listed = ", ".join(f"{k} ({', '.join(map(str, v))})" for k, v in names.items())
    n_rows = len(cfg["backbone"]) + len(cfg["head"])
    return f"its sites are {listed}, or a layer index 0..{n_rows - 2}"


def site_label(sites: str | Sequence[str | int]) -> str:
    """Return site tokens as a label part: ``["p4", "p5"]``, ``"p4,p5"`` and ``"P4+p5"`` give ``p4+p5``."""
    return "+".join(t.lower() for t in split_site_specs(sites))


def variant_label(stem: str, block: str, sites: str | Sequence[str | int], args_label: str = "") -> str:
    """Return a placement variant's name: ``yolo11n+EMA@p4``, ``yolo11n+EMA@p4+p5``, ``yolo11n+CBAM-r8-k3@p5``.

    Args:
        stem (str): The base's name with its scale (``yolo11n``, ``yolo11n-seg``).
        block (str): The block's YAML name.
        sites (str | Sequence[str | int]): Site tokens.
        args_label (str): The block's args as a label part (`args_label`); empty for the defaults.
    """
    return f"{stem}+{block}{'-' + args_label if args_label else ''}@{site_label(sites)}"


def args_label(spec: BlockSpec, row_args: Sequence[Any]) -> str:
    """Return a block's YAML args as a file-name-safe label part, named by parameter: ``[8, 3]`` -> ``r8-k3``."""
    names = [p.name for p in spec.yaml_parameters()]
    parts = []
    for i, value in enumerate(row_args):
        text = "x".join(map(_value_text, value)) if isinstance(value, (list, tuple)) else _value_text(value)
        parts.append(f"{names[i] if i < len(names) else f'a{i}'}{text}")
    return "-".join(parts)


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
    if spec.kind == REPLACES:
        sites = [i for i, row in enumerate(rows[:-1]) if row[2] == spec.stands_for]
        if not sites:
            raise SiteError(f"{spec.name} replaces {spec.stands_for} rows, but this model has none")
        return sites
    placement = placement_of(spec)
    if is_classifier(cfg):
        sites = sorted({*stage_sites(cfg).values(), len(cfg["backbone"]) - 1})
        if spec.kind == EXTENDS:
            sites = [i for i in sites if rows[i][2] == spec.parent.__name__]
        sites = sites[-placement.stages :] if placement.stages else sites
    else:
        inputs = head_inputs(cfg)
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
    sppf = next((i for i in sppf_sites(cfg) if i < len(backbone)), None)
    rule = placement.backbone
    if rule == "before_own_attention":
        rule = "before_sppf" if OWN_ATTENTION & set(backbone) else "end"
    if spec.kind == EXTENDS or rule == "before_sppf":
        if sppf is None or sppf == 0:
            raise SiteError(f"no SPPF in the backbone ({', '.join(backbone)}): the site before SPPF is undefined")
        return sppf - 1
    return len(backbone) - 1


def _stride_factor(module: str, args: list) -> float | None:
    """How a row changes the stride: 2 for a stride-2 Conv, 0.5 for a 2x upsample, None when unknown."""
    if module in STRIDE_ARG2:
        return float(_number(args, 2, 1))
    if module in HALVING:
        return 2.0
    if module in POOLS:
        return float(_number(args, 1, _number(args, 0, 1)))
    if module in UPSAMPLE:
        scale = _number(args, 1, None)
        return None if not scale else 1 / float(scale)
    if module in TRANSPOSED:
        return 1 / float(_number(args, 2, 1))
    if module == "Focus":
        return 2.0 * float(_number(args, 2, 1))
    if module == "HGStem":
        return 4.0
    if module == "ResNetLayer":  # [c1, c2, s, is_first, n]: the first layer is a stride-2 stem and a max-pool
        return 4.0 if len(args) > 3 and args[3] is True else float(_number(args, 2, 1))
    if module == "TorchVision":
        return None
    return 1.0


def _downsamples(row: list) -> bool:
    """Whether a row only changes the resolution (a stride-2 Conv, ADown, a pool): it ends no stage."""
    m, a = row[2], list(row[3]) if isinstance(row[3], list) else []
    factor = _stride_factor(m, a)
    return (m in STRIDE_ARG2 | HALVING | POOLS | UPSAMPLE | TRANSPOSED) and factor is not None and factor != 1


def _number(args: list, i: int, default: Any) -> Any:
    value = args[i] if len(args) > i else default
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else default


def _value_text(value: Any) -> str:
    text = "none" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
    return re.sub(r"[^A-Za-z0-9.]+", "_", text)


def _absolute(f: int, j: int) -> int:
    return f if f >= 0 else j + f
