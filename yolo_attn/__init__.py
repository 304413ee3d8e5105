"""yolo_attn: attention blocks for Ultralytics YOLO model YAMLs.

``import yolo_attn`` registers the blocks with Ultralytics, so a model YAML may name ``CBAM``, ``SE``, ``ECA`` and
every other registered block (``yolo_attn.registry.names()``), including a user's (`register_block`) and those of
installed plugin packages (entry-point group ``yolo_attn.blocks``; ``YOLO_ATTN_DISABLE_PLUGIN_AUTOLOAD=1`` turns
their loading off). ``yolo_attn.unregister()`` restores Ultralytics exactly.
"""

from yolo_attn.utils.offline import apply_offline_env, invoked_as_cli

if invoked_as_cli():  # the `yolo-attn` command runs offline by default; must precede the first ultralytics import
    apply_offline_env()

from yolo_attn import registry as _registry
from yolo_attn.cfg.edit import insert_after
from yolo_attn.integration import is_registered, load_pretrained, register, unregister
from yolo_attn.modules import SHIPPED, CA_C2f, CA_C3k2, composed_class
from yolo_attn.registry import BlockRegistrationError, YAMLRowError, load_plugins, register_block, unregister_block
from yolo_attn.utils import moved

__version__ = "0.1.0"

# the shipped block classes by class name (yolo_attn.CBAM), from the block table: each is declared once, in its file
globals().update(SHIPPED)


def __getattr__(name: str):
    """``yolo_attn.BLOCKS``: YAML name -> class of the channel-preserving blocks registered now."""
    if name == "BLOCKS":
        return _registry.channel_blocks()
    raise AttributeError(f"module 'yolo_attn' has no attribute {name!r}")


moved.install()  # module paths of earlier releases (yolo_attn.protocol, ...) import with a DeprecationWarning
register()
load_plugins()

__all__ = (
    "BLOCKS",
    "CA_C2f",
    "CA_C3k2",
    "BlockRegistrationError",
    "YAMLRowError",
    "composed_class",
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
