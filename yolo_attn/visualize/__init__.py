"""What a YOLO model looks at: attention maps, feature maps and Grad-CAM over images.

One PNG grid per image with the map of every yolo_attn block (``attention_maps``), or the strongest channels of chosen
layers beside those maps, with Grad-CAM for classifiers (``feature_maps``).
"""

from yolo_attn.utils.images import letterbox_image
from yolo_attn.visualize.features import (
    capture_layer_outputs,
    feature_maps,
    grad_cam,
    head_input_layer,
    parse_layers,
    strongest_channels,
)
from yolo_attn.visualize.overlay import (
    AttentionBlock,
    AttentionMap,
    attention_block_classes,
    attention_maps,
    block_attention_map,
    capture_attention_maps,
    find_attention_blocks,
    image_files,
    plot_attention_grid,
)

__all__ = (
    "AttentionBlock",
    "AttentionMap",
    "attention_block_classes",
    "attention_maps",
    "block_attention_map",
    "capture_attention_maps",
    "capture_layer_outputs",
    "feature_maps",
    "find_attention_blocks",
    "grad_cam",
    "head_input_layer",
    "image_files",
    "letterbox_image",
    "parse_layers",
    "plot_attention_grid",
    "strongest_channels",
)
