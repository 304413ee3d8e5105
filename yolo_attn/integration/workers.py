"""DDP workers and safe loading: registered blocks visible in every process and allow-listed for weights-only loads.

- DDP: a default training callback defined here (``on_pretrain_routine_start``) travels, pickled by reference, to
  every DDP worker; unpickling it imports yolo_attn (which registers and loads plugins) before the worker builds the
  model. It relies on ``ultralytics.utils.callbacks.base.default_callbacks`` (event name -> list of callables).
- ``ULTRALYTICS_SAFE_LOAD=1``: Ultralytics loads checkpoints with ``torch.load(weights_only=True)`` and allow-lists
  only its own and torch's classes, so every registered block class (and the generic identity mix's hook) is added
  to torch's safe globals while registered, including blocks registered later (a block-table listener), with each
  channel block's compositions (``C3k2_EMA``, made here for the list).
"""

from __future__ import annotations

from typing import Any

import torch
from ultralytics.utils.callbacks import base as callbacks_base

from yolo_attn import registry
from yolo_attn.modules.identity_start import IDENTITY_MIX_HOOK

DDP_EVENT = "on_pretrain_routine_start"


def register_in_worker(trainer: Any = None) -> None:
    """Training callback whose pickled reference makes a DDP worker import yolo_attn, and so register its blocks.

    Unpickling the reference imports this module, whose package's ``__init__`` registers the blocks before the worker
    parses its model YAML; in the process that added the callback the blocks are registered already. So the call
    itself has nothing left to do.

    Args:
        trainer (Any): The Ultralytics trainer calling back (unused).
    """


def add_ddp_callback() -> None:
    """Append `register_in_worker` to Ultralytics' default callbacks."""
    callbacks_base.default_callbacks.setdefault(DDP_EVENT, []).append(register_in_worker)


def remove_ddp_callback() -> None:
    """Remove `register_in_worker` from Ultralytics' default callbacks."""
    callbacks_base.default_callbacks[DDP_EVENT].remove(register_in_worker)


def _module_classes(cls: type) -> list[type]:
    """The block class and every nn.Module class defined in the same module (inner layers such as CA_C2f's)."""
    import sys

    module = sys.modules.get(cls.__module__)
    found = [cls]
    for obj in vars(module).values() if module is not None else ():
        if isinstance(obj, type) and issubclass(obj, torch.nn.Module) and obj.__module__ == cls.__module__:
            found.append(obj)
    return list(dict.fromkeys(found))


def allowed_globals() -> list[Any]:
    """The globals a checkpoint of registered blocks may reference: their modules' classes, the identity-mix hook."""
    from yolo_attn.modules import composed

    found: list[Any] = [IDENTITY_MIX_HOOK, composed.AttnBottleneck]
    for spec in registry.specs():
        found += _module_classes(spec.cls)
    found += composed.all_classes()  # C3k2_EMA...: made on demand, so made here for the allow-list
    found += [(cls, f"yolo_attn.modules.csp_coord_att.{name}") for name, cls in _legacy_names().items()]
    return list(dict.fromkeys(found))


def _legacy_names() -> dict[str, type]:
    from yolo_attn.modules import csp_coord_att

    return {n: getattr(csp_coord_att, n) for n in ("CA_C2f", "CA_C3k2", "CoordAttBottleneck")}


def _on_block_change(event: str, spec: registry.BlockSpec) -> None:
    """Block-table listener: allow-list a block registered while yolo_attn is registered (removal keeps it)."""
    if event == "add":
        from yolo_attn.modules import composed

        torch.serialization.add_safe_globals(_module_classes(spec.cls))
        if spec.kind == registry.CHANNEL:  # the block inside every host
            torch.serialization.add_safe_globals([composed.composed_class(h, spec) for h in composed.HOSTS.values()])


def add_safe_globals() -> None:
    """Allow-list every registered block for weights-only loading, and follow later registrations."""
    torch.serialization.add_safe_globals(allowed_globals())
    registry.add_listener(_on_block_change)


def remove_safe_globals() -> None:
    """Remove what `add_safe_globals` added (and anything later registered), keeping everything else."""
    registry.remove_listener(_on_block_change)
    ours = set(allowed_globals())
    kept = [g for g in torch.serialization.get_safe_globals() if (g[0] if isinstance(g, tuple) else g) not in ours]
    torch.serialization.clear_safe_globals()
    torch.serialization.add_safe_globals(kept)
