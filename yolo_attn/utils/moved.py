"""Module paths of earlier releases, kept importable with a DeprecationWarning: the one table of what moved where.

User code and scripts written against an earlier release import ``yolo_attn.protocol``, ``yolo_attn.blocks`` and the
like. A finder on ``sys.meta_path`` (installed by ``import yolo_attn``) answers those names with a module that warns
once and forwards every attribute to the module's new home, so ``from yolo_attn.protocol import attach`` keeps working
and returns the very same objects. The block classes never moved (``yolo_attn.modules.*``): checkpoints pickle those
paths.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
import warnings
from typing import Any

#: Old module path -> new module path.
MOVED = {
    "yolo_attn.blocks": "yolo_attn.registry.table",
    "yolo_attn.rows": "yolo_attn.registry.rows",
    "yolo_attn.plugins": "yolo_attn.registry.plugins",
    "yolo_attn.sites": "yolo_attn.cfg.sites",
    "yolo_attn.generated": "yolo_attn.cfg.generated",
    "yolo_attn.yaml_edit": "yolo_attn.cfg.edit",
    "yolo_attn.yaml_command": "yolo_attn.cfg.yaml_command",
    "yolo_attn.migrate": "yolo_attn.cfg.migrate",
    "yolo_attn.transfer": "yolo_attn.finetune.transfer",
    "yolo_attn.protocol": "yolo_attn.finetune.protocol",
    "yolo_attn.engagement": "yolo_attn.finetune.engagement",
    "yolo_attn.devices": "yolo_attn.utils.devices",
    "yolo_attn.offline": "yolo_attn.utils.offline",
}


class MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Import an old module path as a forwarding module over its new home, with a DeprecationWarning."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        """Return a spec for an old path in `MOVED`, else None (the other finders go on)."""
        return importlib.machinery.ModuleSpec(fullname, self) if fullname in MOVED else None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        """Let the import system create a plain module."""
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        """Warn, then forward the module's attributes to the new module.

        Args:
            module (types.ModuleType): The module created for the old path.
        """
        new = MOVED[module.__name__]
        warnings.warn(
            f"{module.__name__} moved to {new}; import from there (the old path will be removed)",
            DeprecationWarning,
            stacklevel=2,
        )
        target = importlib.import_module(new)
        module.__getattr__ = lambda name: getattr(target, name)  # PEP 562: every name the new module has
        module.__dir__ = lambda: dir(target)
        module.__doc__ = target.__doc__


def install() -> None:
    """Put the finder on ``sys.meta_path`` once (idempotent)."""
    if not any(isinstance(f, MovedModuleFinder) for f in sys.meta_path):
        sys.meta_path.append(MovedModuleFinder())
