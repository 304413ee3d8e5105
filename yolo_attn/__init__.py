"""yolo_attn: attention blocks for Ultralytics YOLO model YAMLs.

``import yolo_attn`` registers the blocks with Ultralytics, so a model YAML may name ``CBAM``, ``SE``, ``ECA`` and
every other registered block (``yolo_attn.blocks.names()``), including a user's (`register_block`) and those of
installed plugin packages (entry-point group ``yolo_attn.blocks``; ``YOLO_ATTN_DISABLE_PLUGIN_AUTOLOAD=1`` turns
their loading off). ``yolo_attn.unregister()`` restores Ultralytics exactly.
"""

from yolo_attn.offline import apply_offline_env, invoked_as_cli

if invoked_as_cli():  # the `yolo-attn` command runs offline by default; must precede the first ultralytics import
    apply_offline_env()

from yolo_attn import blocks as _blocks
from yolo_attn.blocks import BlockRegistrationError, register_block, unregister_block
from yolo_attn.integration import is_registered, load_pretrained, register, unregister
from yolo_attn.modules import SHIPPED
from yolo_attn.plugins import load_plugins
from yolo_attn.rows import YAMLRowError
from yolo_attn.yaml_edit import insert_after

__version__ = "0.1.0"

globals().update(SHIPPED)  # the shipped block classes, e.g. yolo_attn.CBAM


def __getattr__(name: str):
    """``yolo_attn.BLOCKS``: YAML name -> class of the channel-preserving blocks registered now."""
    if name == "BLOCKS":
        return _blocks.channel_blocks()
    raise AttributeError(f"module 'yolo_attn' has no attribute {name!r}")


register()
load_plugins()

__all__ = (
    "BLOCKS",
    "BlockRegistrationError",
    "YAMLRowError",
    "insert_after",
    "is_registered",
    "load_plugins",
    "load_pretrained",
    "register",
    "register_block",
    "unregister",
    "unregister_block",
    *sorted(SHIPPED),
)
