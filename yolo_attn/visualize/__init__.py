"""Attention maps over images: one PNG grid per image with the map of every yolo_attn block in a YOLO model."""

from yolo_attn.visualize.overlay import (
    ATTENTION_BLOCKS,
    AttentionBlock,
    AttentionMap,
    attention_maps,
    block_attention_map,
    capture_attention_maps,
    find_attention_blocks,
    image_files,
    letterbox_image,
    plot_attention_grid,
)

__all__ = (
    "ATTENTION_BLOCKS",
    "AttentionBlock",
    "AttentionMap",
    "attention_maps",
    "block_attention_map",
    "capture_attention_maps",
    "find_attention_blocks",
    "image_files",
    "letterbox_image",
    "plot_attention_grid",
)
