"""Plugin packages: blocks declared by entry point, loaded at ``import yolo_attn``.

A package declares its blocks in the entry-point group ``yolo_attn.blocks``; each entry point's name is the YAML name
and its value the class::

    [project.entry-points."yolo_attn.blocks"]
    SimAM = "mypkg.attn:SimAM"

Because ``import yolo_attn`` loads them, they reach the ``yolo-attn`` CLI, checkpoint unpickling, DDP workers,
``--parallel`` and Slurm cells alike. Loading runs third-party code, so ``YOLO_ATTN_DISABLE_PLUGIN_AUTOLOAD=1`` turns
it off (as ``PYTEST_DISABLE_PLUGIN_AUTOLOAD`` does for pytest). A plugin that fails to import or register gives a
`PluginWarning` naming it and never breaks the import; a model YAML that then names its block raises a `YAMLRowError`
that says why (in a worker too). Two packages that claim one name are both refused, naming both.
"""

from __future__ import annotations

import os
import warnings
from importlib import metadata

from yolo_attn.registry import table

GROUP = "yolo_attn.blocks"
DISABLE_ENV = "YOLO_ATTN_DISABLE_PLUGIN_AUTOLOAD"

#: Entry-point name -> why its plugin was not loaded (read by the unknown-name error).
FAILED: dict[str, str] = {}
#: Entry-point name -> the distribution that registered it.
LOADED: dict[str, str] = {}


class PluginWarning(UserWarning):
    """A plugin package's block could not be loaded."""


def autoload_disabled() -> bool:
    """Whether ``YOLO_ATTN_DISABLE_PLUGIN_AUTOLOAD`` is set to a true value."""
    return os.environ.get(DISABLE_ENV, "").strip().lower() not in {"", "0", "false", "no", "off"}


def _distribution(ep: metadata.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return dist.metadata["Name"] if dist is not None else "an unknown package"


def load_plugins() -> dict[str, str]:
    """Register the blocks of every installed plugin package (entry-point group ``yolo_attn.blocks``).

    Returns:
        (dict[str, str]): Entry-point name -> distribution, for the plugins loaded by this call (empty when autoload
            is disabled).
    """
    if autoload_disabled():
        return {}
    claims: dict[str, dict[tuple[str, str], metadata.EntryPoint]] = {}
    for ep in metadata.entry_points(group=GROUP):
        claims.setdefault(ep.name, {})[(ep.value, _distribution(ep))] = ep  # the same entry seen twice counts once
    loaded = {}
    for name, entries in claims.items():
        if name in LOADED:
            continue
        if len(entries) > 1:
            packages = " and ".join(sorted(f"{dist} ({value})" for value, dist in entries))
            _fail(name, f"the block name {name!r} is claimed by {packages}; neither is loaded. Uninstall one")
            continue
        (value, dist), ep = next(iter(entries.items()))
        try:
            cls = ep.load()
            spec = table.get(name)
            if spec is None or spec.cls is not cls:
                table.register_block(cls, name=name, origin=dist)
        except Exception as e:  # third-party code: any failure is reported with its name, never raised
            _fail(name, f"plugin {name} = {value!r} from package {dist} failed to load: {type(e).__name__}: {e}")
            continue
        LOADED[name] = loaded[name] = dist
    return loaded


def _fail(name: str, why: str) -> None:
    FAILED[name] = why
    warnings.warn(f"yolo_attn: {why}", PluginWarning, stacklevel=3)
