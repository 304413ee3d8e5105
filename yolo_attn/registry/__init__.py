"""The registry: the one declaration of every block, the checks of YAML rows that name them, and plugin loading.

- `table`: the block table (`register_block`, `BlockSpec`, lookups by name and class, listeners and name checks).
- `rows`: `YAMLRowError` and the checks of a model-YAML row against its block's declaration.
- `plugins`: blocks declared by the entry points of installed plugin packages (group ``yolo_attn.blocks``).

The registry is pure: it imports neither Ultralytics nor the blocks. Blocks import it to declare themselves.
"""

from yolo_attn.registry.plugins import PluginWarning, load_plugins
from yolo_attn.registry.rows import YAMLRowError
from yolo_attn.registry.table import (
    CHANNEL,
    EXTENDS,
    REPLACES,
    BlockRegistrationError,
    BlockSpec,
    add,
    add_listener,
    add_name_check,
    add_resolver,
    canonical_names,
    channel_blocks,
    channel_names,
    classes,
    get,
    identity_kind,
    names,
    register_block,
    remove,
    remove_listener,
    spec_of,
    specs,
    unregister_block,
)

__all__ = (
    "CHANNEL",
    "EXTENDS",
    "REPLACES",
    "BlockRegistrationError",
    "BlockSpec",
    "PluginWarning",
    "YAMLRowError",
    "add",
    "add_listener",
    "add_name_check",
    "add_resolver",
    "canonical_names",
    "channel_blocks",
    "channel_names",
    "classes",
    "get",
    "identity_kind",
    "load_plugins",
    "names",
    "register_block",
    "remove",
    "remove_listener",
    "spec_of",
    "specs",
    "unregister_block",
)
