"""Former home of the Ultralytics seam, kept importable for scripts and user code written against it.

The seam is now `yolo_attn.integration` (one file per Ultralytics touch point), the block table `yolo_attn.blocks`
and the row checks `yolo_attn.rows`. This module only re-exports their public names.
"""

from yolo_attn.blocks import channel_blocks
from yolo_attn.integration import is_registered, load_pretrained, register, transfer_report_of, unregister
from yolo_attn.integration.lookup import MODEL_YAMLS_DIR, find_shipped_yaml, yaml_model_load
from yolo_attn.integration.parse import parse_model
from yolo_attn.rows import YAMLRowError

BLOCKS = channel_blocks()  # a snapshot at import: read `yolo_attn.blocks` for blocks registered later

__all__ = (
    "BLOCKS",
    "MODEL_YAMLS_DIR",
    "YAMLRowError",
    "find_shipped_yaml",
    "is_registered",
    "load_pretrained",
    "parse_model",
    "register",
    "transfer_report_of",
    "unregister",
    "yaml_model_load",
)
