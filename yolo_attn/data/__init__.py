"""Data: a deterministic synthetic COCO-format data set and a reproducible COCO -> YOLO subset builder."""

from yolo_attn.data.subset import build_subset, yolo_class_to_category_id
from yolo_attn.data.synthetic import CATEGORIES, make_synthetic_coco, synthetic_detection_case

__all__ = (
    "CATEGORIES",
    "build_subset",
    "make_synthetic_coco",
    "synthetic_detection_case",
    "yolo_class_to_category_id",
)
