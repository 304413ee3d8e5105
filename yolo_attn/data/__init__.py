"""Data: a synthetic COCO-format data set, a COCO -> YOLO subset builder, and COCO ground truth from YOLO labels."""

from yolo_attn.data.subset import build_subset, yolo_class_to_category_id
from yolo_attn.data.synthetic import CATEGORIES, make_synthetic_coco, synthetic_detection_case
from yolo_attn.data.yolo_to_coco import LabelError, build_coco_gt, ground_truth_for

__all__ = (
    "CATEGORIES",
    "LabelError",
    "build_coco_gt",
    "build_subset",
    "ground_truth_for",
    "make_synthetic_coco",
    "synthetic_detection_case",
    "yolo_class_to_category_id",
)
