"""``yolo-attn yaml BASE [--block] BLOCK [ARG ...] [key=value ...] [--task T] [--at SITE ...] [-o OUT]``.

Writes a model YAML to edit.

- ``BASE``: a family with optional scale and task (``yolo11n``, ``yolov8s-seg``, ``yolo26``), any other Ultralytics
  model YAML by name (``yolov8-p2``, ``yolov9t``, ``yolo12n-pose``), or a model YAML file of yours (``my/model.yaml``).
- ``BLOCK`` (``--block NAME``, or the first word after ``BASE``): a registered block's YAML name or alias,
  case-insensitive (``cbam``, ``CoordAtt``).
- ``ARG ...`` and ``key=value``: the block's YAML args (each read as a YAML value: ``8``, ``null``, ``[3,1]``,
  ``mean``); keywords are placed at their position in the block's signature, with the defaults before them, so the
  row is plain positional YAML: ``CBAM k=3`` writes ``[-1, 1, CBAM, [16, 3]]``.
- ``--task``: ``seg``, ``pose``, ``obb`` or ``cls`` for a family base (same as writing ``yolo11n-seg``).
- ``--at``: named sites of the base (`yolo_attn.cfg.sites`: ``p3``, ``p4``, ``p5``, ``sppf``, ``neck``, ``all``) and/or
  layer indices, as separate words and/or joined by ``,`` or ``+`` (``--at p4 p5``, ``--at 4,6``), instead of the
  standard sites. A block goes after each; an extends block replaces the row. A site the base lacks is refused with the
  sites it has.
- ``--inside``: the block goes inside the CSP rows at the sites instead of after them: ``yolo-attn yaml yolo11n
  --block EMA factor=8 --inside --at p3 p4 p5`` replaces those C3k2 rows by ``C3k2_EMA`` rows with ``{factor: 8}``
  (C2f in YOLOv8, C3 in v5u). Default output ``{BASE}-{block}-inside.yaml``; the bare name ``yolo11n-c3k2_ema.yaml``
  generates the same at the standard sites.
- ``-o``: the output file; default ``{BASE}[-{task}]-{block}.yaml`` in the working folder (``yolo11n-seg-cbam.yaml``),
  which is then the file that name loads (a local file wins over generation).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from yolo_attn.cfg.generated import (
    FAMILIES,
    TASKS,
    base_yaml,
    find_block,
    header_for,
    insert_block,
    load_base,
    to_text,
    yaml_args_for,
)
from yolo_attn.cfg.sites import resolve_sites, site_label, standard_sites

FAMILY_BASE = re.compile(r"^(?P<family>" + "|".join(FAMILIES) + r")(?P<scale>[nslmx]?)(?:-(?P<task>[a-z]+))?$")


def resolve_base(base: str, task: str | None = None) -> tuple[Path, str]:
    """Return the base model YAML file and the stem of the names derived from it (scale and task included).

    Args:
        base (str): ``yolo11n``, ``yolov8s-seg``, an Ultralytics model YAML name, or a YAML file.
        task (str | None): ``seg``/``pose``/``obb``/``cls`` for a family base; None for detection or the base's own.

    Returns:
        (tuple[Path, str]): The file, and the stem such as ``yolo11n-seg``.

    Raises:
        ValueError: For a task that is unknown or contradicts the base's.
        FileNotFoundError: When no base of that name exists.
    """
    if task is not None and task not in TASKS:
        raise ValueError(f"--task {task!r}: one of {', '.join(TASKS)} (detection is the default, no task part)")
    path = Path(base)
    if path.suffix in {".yaml", ".yml"} and path.is_file():
        if task is not None:
            raise ValueError(f"--task {task} applies to a family base (yolo11n, yolov8s, ...), not to the file {base}")
        return path, path.stem
    stem = path.name.removesuffix(path.suffix) if path.suffix in {".yaml", ".yml"} else path.name
    m = FAMILY_BASE.match(stem)
    if m and (m["task"] is None or m["task"] in TASKS):
        if task and m["task"] and task != m["task"]:
            raise ValueError(f"base {base} is a {m['task']} model; --task {task} contradicts it")
        task = task or m["task"]
        stem = f"{m['family']}{m['scale']}{'-' + task if task else ''}"
        return base_yaml(m["family"], task), stem
    if task is not None:
        raise ValueError(f"--task applies to a family base ({', '.join(FAMILIES)}); put the task in {base}'s name")
    from ultralytics.nn.tasks import guess_model_scale
    from ultralytics.utils.checks import check_yaml

    scale = guess_model_scale(f"{stem}.yaml")
    unscaled = re.sub(rf"(\d+){scale}(.*)$", r"\1\2", stem) if scale else stem
    found = check_yaml(f"{unscaled}.yaml", hard=False) if unscaled != stem else None  # yolov8s -> yolov8.yaml
    return Path(found or check_yaml(f"{stem}.yaml")), stem  # or a file per scale: yolov10n.yaml


@dataclass(frozen=True)
class Written:
    """What `write_yaml` wrote.

    Attributes:
        path (Path): The file.
        rows (list[tuple[int, list]]): The block rows added (or replaced): layer index in the file, and the row.
        sites (list[int]): The layer indices of the base they follow (or replace).
    """

    path: Path
    rows: list[tuple[int, list]]
    sites: list[int]


def write_yaml(
    base: str,
    block: str,
    args: Sequence[Any] = (),
    keywords: dict[str, Any] | None = None,
    task: str | None = None,
    at: str | Sequence[str | int] | None = None,
    out: str | Path | None = None,
) -> Path:
    """Write a model YAML: ``base`` with ``block`` (and its args) at the standard sites or at ``at``.

    Args:
        base (str): See `resolve_base`.
        block (str): A registered YAML name or alias, case-insensitive.
        args (Sequence[Any]): Positional YAML args of the block.
        keywords (dict[str, Any] | None): Keyword args, placed at their position in the block's signature.
        task (str | None): Task of a family base.
        at (str | Sequence[str | int] | None): Site names and/or layer indices of the base
            (`yolo_attn.cfg.sites.resolve_sites`); None for the standard sites.
        out (str | Path | None): Output file; default ``{stem}-{block}.yaml`` in the working folder.

    Returns:
        (Path): The file written (`write_yaml_rows` also returns the rows added).

    Raises:
        ValueError: For args that do not fit the block, or sites that do not fit the base (`SiteError`).
    """
    return write_yaml_rows(base, block, args, keywords, task, at, out).path


def write_yaml_rows(
    base: str,
    block: str,
    args: Sequence[Any] = (),
    keywords: dict[str, Any] | None = None,
    task: str | None = None,
    at: str | Sequence[str | int] | None = None,
    out: str | Path | None = None,
    inside: bool = False,
) -> Written:
    """`write_yaml`, returning what it wrote: the file, the block rows added and the base's sites.

    With ``inside``, the block goes inside the CSP rows at the sites (``C3k2_EMA`` replaces the C3k2 rows of YOLO11,
    `yolo_attn.modules.composed`); its args are then keywords only, the rows' trailing mapping.
    """
    spec = find_block(block)
    path, stem = resolve_base(base, task)
    cfg = load_base(path)
    if inside:
        return _write_inside(cfg, spec, args, keywords, at, out, path, stem)
    made, added = insert_block(cfg, spec, args, at, keywords)
    row_args = yaml_args_for(spec, args, keywords) if args or keywords else []
    sites = standard_sites(cfg, spec) if at is None else resolve_sites(cfg, at)
    named = None if at is None else site_label(at)
    out = Path(out) if out is not None else Path(f"{stem}-{spec.name.lower()}.yaml")
    out.write_text(to_text(made, header_for(spec, _label(path), sites, at is None, row_args, named)))
    rows = made["backbone"] + made["head"]
    return Written(out, [(i, rows[i]) for i in added], sites)


def inside_sites(cfg: dict, block: str, at: Any = None) -> tuple[Any, list[int] | None]:
    """Return the composition that puts ``block`` inside the base's CSP rows, and the host rows at the sites ``at``.

    A stage's end may be SPPF or C2PSA (``p5`` in YOLO11): the stage's last host row stands for it.

    Args:
        cfg (dict): The base model dict.
        block (str): A channel block's name.
        at (Any): Sites (`yolo_attn.cfg.sites.resolve_sites`), or None for the standard sites.

    Returns:
        (tuple[BlockSpec, list[int] | None]): The composition's declaration (``C3k2_EMA``) and the host rows.
    """
    from yolo_attn.modules.composed import inside_name

    rows = cfg["backbone"] + cfg["head"]
    sites = None if at is None else resolve_sites(cfg, at)
    composed = find_block(inside_name(rows, block, sites))
    host = composed.parent.__name__
    if sites is not None:
        sites = list(dict.fromkeys(max((j for j in range(i + 1) if rows[j][2] == host), default=i) for i in sites))
    return composed, sites


def _write_inside(
    cfg: dict, spec: Any, args: Sequence[Any], keywords: dict | None, at: Any, out: Any, path: Path, stem: str
) -> Written:
    """`write_yaml_rows` for ``--inside``: the composition of the block and the base's CSP host replaces host rows."""
    if args:
        raise ValueError(f"with --inside, give {spec.name}'s args by name (key=value): they become the rows' mapping")
    composed, sites = inside_sites(cfg, spec.name, at)
    made, added = insert_block(cfg, composed, (), sites, None)
    made_rows = made["backbone"] + made["head"]
    for i in added:
        if keywords:
            made_rows[i][3] = [*made_rows[i][3], dict(keywords)]
    sites = standard_sites(cfg, composed) if at is None else sites
    named = None if at is None else site_label(at)
    out = Path(out) if out is not None else Path(f"{stem}-{spec.name.lower()}-inside.yaml")
    out.write_text(to_text(made, header_for(composed, _label(path), sites, at is None, [], named)))
    return Written(out, [(i, made_rows[i]) for i in added], sites)


def parse_values(tokens: Sequence[str]) -> list[Any]:
    """Read each command-line token as a YAML value (``8`` -> 8, ``null`` -> None, ``[3,1]`` -> [3, 1])."""
    return [yaml.safe_load(t) for t in tokens]


def _label(path: Path) -> str:
    """A base file's name as the header shows it: ``ultralytics/cfg/models/...`` for Ultralytics' own."""
    from ultralytics.utils import ROOT

    resolved = path.resolve()
    return str(resolved.relative_to(ROOT.parent)) if resolved.is_relative_to(ROOT) else str(path)
