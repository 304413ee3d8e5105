"""Placement grids: a base model and each block at each site, written as model YAMLs a comparison trains.

``placement_grid(base, blocks, sites, out)`` writes the baseline and one YAML per block x site into ``out`` under
names such as ``yolo11n+EMA@p4.yaml`` (`yolo_attn.cfg.sites.variant_label`), and returns them in a fixed order: the
baseline first, then block by block, site by site, as given. A site spec is one variant: ``p4``, or ``p4+p5`` for the
block at both sites in one model. Sites are named or layer indices, resolved from the base's own structure
(`yolo_attn.cfg.sites.resolve_sites`). ``inside:p4`` is the other kind of site: the block inside the CSP rows there
(``C3k2_EMA`` in place of the C3k2 row, `yolo_attn.modules.composed`), labelled ``inside-p4``, so ``--at p4 inside:p4``
answers "after the stage or inside its bottlenecks?" in one report.

The function is deterministic and idempotent: the same arguments give the same names and the same file contents
(no dates in the headers), so a resumed grid finds its cells again; a file is rewritten only when its text differs.
Every variant is resolved before anything is written, so a site the base lacks leaves ``out`` untouched.

`PlacementGrid` is the same grid as a value that ``compare`` takes in place of its model list: it writes the YAMLs
into ``<comparison folder>/models/`` and the report adds the block x site heat map.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from yolo_attn.cfg.generated import find_block, header_for, insert_block, load_base, to_text, yaml_args_for
from yolo_attn.cfg.sites import args_label, resolve_sites, site_label, variant_label
from yolo_attn.cfg.yaml_command import resolve_base

BlockArg = str | tuple[str, Sequence[Any]] | tuple[str, Sequence[Any], dict[str, Any]]
INSIDE = "inside:"  # a site kind: ``inside:p4`` puts the block inside the CSP rows at p4 (C3k2_EMA), no row added


class Variant(NamedTuple):
    """One model of a placement grid.

    Attributes:
        label (str): Its name (the YAML's stem): ``yolo11n`` for the baseline, ``yolo11n+EMA@p4`` for a variant.
        path (Path): The YAML written.
        block (str | None): The block as the heat map's rows name it (``EMA``, ``CBAM-r8-k3``); None for the baseline.
        site (str | None): The site spec as the heat map's columns name it (``p4``, ``p4+p5``); None for the baseline.
    """

    label: str
    path: Path
    block: str | None
    site: str | None


@dataclass(frozen=True)
class PlacementGrid:
    """A placement grid as ``compare`` runs it: the baseline and each block at each site spec.

    ``compare(data, PlacementGrid("yolo11n.yaml", ["SE", "CBAM"], ["p3", "p4+p5"]), seeds, epochs)`` (or
    ``CompareSettings(models=PlacementGrid(...))``) is ``yolo-attn compare --base yolo11n.yaml --blocks SE CBAM --at
    p3 p4+p5``.

    Attributes:
        base (str | Path): Base model (`placement_grid`).
        blocks (Sequence[BlockArg]): Blocks, by name or with args.
        sites (Sequence[str | int | Sequence[str | int]]): Site specs, one variant each.
        task (str | None): Task of a family base (``seg``, ``pose``, ``obb``, ``cls``).
    """

    base: str | Path
    blocks: Sequence[BlockArg]
    sites: Sequence[str | int | Sequence[str | int]]
    task: str | None = None

    def write(self, folder: str | Path) -> list[Variant]:
        """Write the grid's YAMLs into ``folder`` (idempotent) and return its variants, baseline first."""
        return placement_grid(self.base, self.blocks, self.sites, folder, self.task)

    def model_task(self) -> str:
        """Return the Ultralytics task of the base (every variant has it), e.g. ``segment``."""
        from yolo_attn.experiments.tasks import model_task

        return model_task(resolve_base(str(self.base), self.task)[0])


def placement_grid(
    base: str | Path,
    blocks: Sequence[BlockArg],
    sites: Sequence[str | int | Sequence[str | int]],
    out: str | Path,
    task: str | None = None,
) -> list[Variant]:
    """Write the baseline and each block at each site spec as model YAMLs in ``out``.

    Args:
        base (str | Path): A family with scale and task (``yolo11n``, ``yolo11n-seg``), an Ultralytics model YAML
            name, or a YAML file (`yolo_attn.cfg.yaml_command.resolve_base`).
        blocks (Sequence[BlockArg]): Block names (``"EMA"``), or ``(name, args)`` / ``(name, args, keywords)`` for
            args other than the defaults.
        sites (Sequence[str | int | Sequence[str | int]]): Site specs, one variant each: ``"p4"``, ``"p4+p5"``,
            ``["p4", "p5"]``, ``6``.
        out (str | Path): Folder for the YAMLs (created).
        task (str | None): Task of a family base (``seg``, ``pose``, ``obb``, ``cls``).

    Returns:
        (list[Variant]): The baseline, then one variant per block x site spec, in that order.

    Raises:
        SiteError: For a site the base lacks (the message lists the sites it has).
        ValueError: For args that do not fit a block, no block or site, or two variants with one name.
    """
    if not blocks or not sites:
        raise ValueError("a placement grid needs at least one block and one site")
    path, stem = resolve_base(str(base), task)
    cfg = load_base(path)
    out = Path(out)
    texts: list[tuple[Variant, str]] = [
        (Variant(stem, out / f"{stem}.yaml", None, None), to_text(cfg, f"Baseline of a placement grid: {path.name}."))
    ]
    for choice in blocks:
        name, args, keywords = _block_arg(choice)
        spec = find_block(name)
        try:
            row_args = yaml_args_for(spec, args, keywords) if args or keywords else []
        except TypeError as e:
            raise ValueError(f"{name} {list(args)} {keywords or ''}: {e}. Expected {spec.expected()}") from None
        block = f"{spec.name}-{args_label(spec, row_args)}" if row_args else spec.name
        for site in sites:
            if isinstance(site, str) and site.lower().startswith(INSIDE):
                texts.append(_inside_variant(cfg, path, stem, out, spec, block, keywords, args, site))
                continue
            made, _ = insert_block(cfg, spec, row_args, site)
            label = variant_label(stem, block, site)
            at = resolve_sites(cfg, site)
            header = header_for(spec, path.name, at, False, row_args, site_label(site))
            texts.append((Variant(label, out / f"{label}.yaml", block, site_label(site)), to_text(made, header)))
    labels = [v.label for v, _ in texts]
    if len(set(labels)) != len(labels):
        twice = sorted({x for x in labels if labels.count(x) > 1})
        raise ValueError(f"two variants of the grid have one name: {', '.join(twice)}")
    out.mkdir(parents=True, exist_ok=True)
    for variant, text in texts:
        if not variant.path.is_file() or variant.path.read_text() != text:
            variant.path.write_text(text)
    return [v for v, _ in texts]


def _inside_variant(
    cfg: dict, path: Path, stem: str, out: Path, spec: Any, block: str, keywords: dict, args: Sequence[Any], site: str
) -> tuple[Variant, str]:
    """The variant of an ``inside:p4`` site: the block inside the CSP rows there (``C3k2_EMA``), no row inserted."""
    from yolo_attn.cfg.yaml_command import inside_sites

    if args:
        raise ValueError(f"{spec.name} inside a host takes its args by name (the rows' mapping), got {list(args)}")
    composed, at = inside_sites(cfg, spec.name, site[len(INSIDE) :])
    made, added = insert_block(cfg, composed, (), at)
    rows = made["backbone"] + made["head"]
    for i in added:
        if keywords:
            rows[i][3] = [*rows[i][3], dict(keywords)]
    column = f"inside-{site_label(site[len(INSIDE) :])}"
    label = variant_label(stem, block, column)
    header = header_for(composed, path.name, at, False, [], column)
    return Variant(label, out / f"{label}.yaml", block, column), to_text(made, header)


def _block_arg(choice: BlockArg) -> tuple[str, list[Any], dict[str, Any]]:
    """Split a block argument into its name, positional args and keywords."""
    if isinstance(choice, str):
        return choice, [], {}
    name, args, *rest = choice
    return name, list(args), dict(rest[0]) if rest else {}
