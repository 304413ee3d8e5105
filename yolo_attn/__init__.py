"""yolo_attn: attention blocks for Ultralytics YOLO model YAMLs.

``import yolo_attn`` registers the blocks with Ultralytics, so a model YAML may name ``CBAM``, ``SE``, ``ECA``, ``SAM``,
``CoordAtt``, ``CA_C2f``, ``CA_C3k2``, ``MHSA`` and the rest. ``yolo_attn.unregister()`` restores Ultralytics exactly.
"""

from yolo_attn.offline import apply_offline_env, invoked_as_cli

if invoked_as_cli():  # the `yolo-attn` command runs offline by default; must precede the first ultralytics import
    apply_offline_env()

from yolo_attn.modules import (
    CBAM,
    ECA,
    MHSA,
    SAM,
    SE,
    CA_C2f,
    CA_C3k2,
    ChannelAttention,
    CoordAtt,
    SeparableSelfAttention,
    SpatialAttention,
)
from yolo_attn.registry import BLOCKS, is_registered, load_pretrained, register, unregister
from yolo_attn.yaml_edit import insert_after

__version__ = "0.1.0"

register()

__all__ = (
    "BLOCKS",
    "CBAM",
    "ECA",
    "MHSA",
    "SAM",
    "SE",
    "CA_C2f",
    "CA_C3k2",
    "ChannelAttention",
    "CoordAtt",
    "SeparableSelfAttention",
    "SpatialAttention",
    "insert_after",
    "is_registered",
    "load_pretrained",
    "register",
    "unregister",
)
