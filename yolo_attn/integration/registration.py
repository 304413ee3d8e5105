"""Registration: the declarative list of patches that make registered blocks usable in Ultralytics.

`register` applies `PATCHES` in order and `unregister` undoes them in reverse, so Ultralytics is restored exactly.
Each entry is one touch point; its module documents what of Ultralytics it relies on.
"""

from __future__ import annotations

from ultralytics.engine import model as engine_model
from ultralytics.nn import tasks

from yolo_attn import registry
from yolo_attn.integration import fusing, loading, lookup, parse, run_yaml, workers
from yolo_attn.integration.patches import ORIGINALS, Hook, Patch

PATCHES: tuple[Patch | Hook, ...] = (
    Patch("parse_model", tasks, "parse_model", parse.parse_model),
    Patch("yaml_model_load", tasks, "yaml_model_load", lookup.yaml_model_load),
    Patch("engine.yaml_model_load", engine_model, "yaml_model_load", lookup.yaml_model_load),
    Patch("load", tasks.BaseModel, "load", loading.base_model_load),
    Hook("safe_globals", workers.add_safe_globals, workers.remove_safe_globals),
    Hook("ddp_callback", workers.add_ddp_callback, workers.remove_ddp_callback),
    Patch("fuse", tasks.BaseModel, "fuse", fusing.fuse),
    Hook("run_yaml", run_yaml.add_callback, run_yaml.remove_callback),
)

# a block may not take a name that a model YAML already resolves to an Ultralytics module (unless override=True)
registry.add_name_check(lookup.ultralytics_owner)


def register() -> None:
    """Make registered blocks usable from Ultralytics model YAMLs, checkpoints and DDP workers. Idempotent."""
    if is_registered():
        return
    for patch in PATCHES:
        patch.apply()


def unregister() -> None:
    """Restore Ultralytics exactly as it was before :func:`register`."""
    if not is_registered():
        return
    for patch in reversed(PATCHES):
        patch.undo()


def is_registered() -> bool:
    """Return True while Ultralytics builds models through the yolo_attn wrapper."""
    return ORIGINALS.get("parse_model") is not None and tasks.parse_model is parse.parse_model
