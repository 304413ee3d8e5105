"""YAML lookup: Ultralytics' ``yaml_model_load`` made robust to scale-like folders, and shipped YAMLs by bare name.

Ultralytics finds ``yolov8-cbam.yaml`` for ``yolov8n-cbam.yaml`` by deleting the scale letter after the first "digit +
n/s/m/l/x" anywhere in the whole path, so a folder such as ``exp5s/`` or ``tmp.S5ngd/`` gets mangled and the file is not
found. The wrapper applies that rule to the file name only, and only when Ultralytics' own lookup would fail. It also
finds the YAMLs shipped in the package (``yolo_attn/cfg/model_yamls``) by bare name, as Ultralytics finds its own
``yolov8n.yaml``: ``model=yolo26n-cbam.yaml`` works from any folder; a local file of that name still wins. Last, a
bare name in the grammar of `cfg.generated` (``yolo11n-ema.yaml``, ``yolov8s-seg-simam.yaml``) is generated from
the family's own Ultralytics YAML with the block at the standard sites (`package_yaml_text` gives the text that the
run folder keeps, so a run reproduces without the generator).

It also answers which module names a model YAML row may use in Ultralytics (`ultralytics_names`), for the
unknown-name error and the name checks of block registration.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from ultralytics.nn import tasks
from ultralytics.utils import YAML

from yolo_attn.cfg import MODEL_YAMLS_DIR, generated  # MODEL_YAMLS_DIR: shipped variants, found by bare name
from yolo_attn.cfg.sites import standard_sites
from yolo_attn.integration.patches import original

SCALE_IN_NAME = re.compile(r"(\d+)([nslmx])(.+)?$")  # yolov8n-cbam -> yolov8-cbam, Ultralytics' naming rule


def resolves_in_ultralytics(name: str) -> bool:
    """Whether ``parse_model`` resolves a row's module name itself (``nn.X``, ``torchvision.ops.X`` or its globals)."""
    if name.startswith("nn."):
        return hasattr(torch.nn, name[3:])
    if name.startswith("torchvision.ops."):
        return True  # resolved by Ultralytics on import of torchvision; not ours to judge
    return name in vars(tasks)


def ultralytics_names() -> list[str]:
    """The module classes a YAML row may name in Ultralytics (``parse_model`` resolves names in its module globals)."""
    return [k for k, v in vars(tasks).items() if isinstance(v, type) and issubclass(v, torch.nn.Module)]


def ultralytics_owner(name: str) -> str | None:
    """Name check for block registration: who in Ultralytics resolves ``name`` in a YAML, or None when it is free."""
    if name in vars(tasks) and isinstance(vars(tasks)[name], type):
        cls = vars(tasks)[name]
        return f"Ultralytics' {cls.__module__}.{cls.__qualname__} (a model YAML row {name!r} builds it)"
    return None


def yaml_model_load(path: str | Path) -> dict:
    """Load a model YAML like Ultralytics' ``yaml_model_load``, also from scale-like folders and shipped bare names.

    Lookup order: the path as given (a local file wins), its file-name-unified twin next to it, Ultralytics' own lookup
    (its packaged configs), then, for a bare name only, :data:`MODEL_YAMLS_DIR` with the same scale-letter rule, then
    generation by name (`yolo_attn.cfg.generated`: ``yolo11n-ema.yaml`` for any registered block).

    Args:
        path (str | Path): Model YAML path, e.g. ``model_yamls/yolov8n-cbam.yaml``, or a bare name such as
            ``yolo26n-cbam.yaml``.

    Returns:
        (dict): The model dict, with ``scale`` taken from the file name and ``yaml_file`` set (to ``path`` as given), as
            Ultralytics does.

    Raises:
        FileNotFoundError: When no step finds the file; the message lists the shipped variants for a bare name, or
            names the unknown block of a name in the generated grammar.
    """
    ultralytics_load = original("yaml_model_load", tasks.yaml_model_load)
    path = Path(path)
    unified = _unified(path)
    if not path.exists() and unified != path and unified.exists():
        return _load_scaled(unified, path)
    try:
        return ultralytics_load(path)
    except FileNotFoundError:
        shipped = find_shipped_yaml(path)
        if shipped is None:
            made, why = _generated(path)
            if made is not None:
                made["scale"] = tasks.guess_model_scale(path)
                made["yaml_file"] = str(path)
                return made
            if path.name == str(path) and path.suffix in {".yaml", ".yml"}:
                names = ", ".join(p.name for p in sorted(MODEL_YAMLS_DIR.glob("*.yaml"))) or "none there"
                raise FileNotFoundError(
                    f"Model YAML '{path}' not found in the working folder, in Ultralytics' configs or among "
                    f"yolo_attn's shipped YAMLs ({MODEL_YAMLS_DIR}: {names}; add a scale letter, e.g. "
                    f"yolo26n-cbam.yaml), and it cannot be generated: {why}"
                ) from None
            raise
        return _load_scaled(shipped, path)


def find_shipped_yaml(name: str | Path) -> Path | None:
    """Return the shipped model YAML a bare name refers to, e.g. ``yolo26n-cbam.yaml`` -> ``.../yolo26-cbam.yaml``.

    Args:
        name (str | Path): A bare file name (no folder); a name with a folder returns None.

    Returns:
        (Path | None): The file in :data:`MODEL_YAMLS_DIR` (exact name first, then without the scale letter), or None.
    """
    name = Path(name)
    if name.name != str(name):
        return None
    for candidate in (MODEL_YAMLS_DIR / name.name, MODEL_YAMLS_DIR / _unified(name).name):
        if candidate.is_file():
            return candidate
    return None


def package_yaml_text(name: str | Path) -> str | None:
    """Return the text of the YAML the package provides for a bare name (shipped or generated), else None.

    None when the name is a file here (its twin included) or one of Ultralytics' own configs: those need no copy.

    Args:
        name (str | Path): A model name as given to Ultralytics, e.g. ``yolo11n-ema.yaml``.

    Returns:
        (str | None): The shipped file's text, or the generated YAML with a header saying what it was made from.
    """
    from ultralytics.utils import ROOT

    path = Path(name)
    if path.name != str(path) or path.exists() or _unified(path).exists():
        return None
    if next((ROOT / "cfg").rglob(path.name), None) or next((ROOT / "cfg").rglob(_unified(path).name), None):
        return None
    shipped = find_shipped_yaml(path)
    if shipped is not None:
        return shipped.read_text()
    made = generated.generate_for_name(path)
    if made is None:
        return None
    cfg, base, spec = made
    sites = standard_sites(generated.load_base(base), spec)
    return generated.to_text(cfg, generated.header_for(spec, str(base.relative_to(ROOT.parent)), sites, True))


def _generated(path: Path) -> tuple[dict | None, str]:
    """The generated model dict of a bare name, or (None, why it cannot be generated)."""
    grammar = "{" + "|".join(generated.FAMILIES) + "}{scale}[-{task}]-{block}.yaml"
    if path.name != str(path):
        return None, "only a bare name is generated"
    try:
        made = generated.generate_for_name(path)
    except generated.UnknownBlockError as e:
        return None, str(e)
    return (None, f"the name is not {grammar}") if made is None else (made[0], "")


def _unified(path: Path) -> Path:
    """Drop the scale letter from the file name only: ``exp5s/yolov8n-cbam.yaml`` -> ``exp5s/yolov8-cbam.yaml``."""
    return path.with_name(SCALE_IN_NAME.sub(r"\1\3", path.name))


def _load_scaled(file: Path, name: Path) -> dict:
    """Load ``file`` as Ultralytics loads a model YAML called ``name``: scale from the name, ``yaml_file`` = name."""
    d = YAML.load(file)
    d["scale"] = tasks.guess_model_scale(name)
    d["yaml_file"] = str(name)
    return d
