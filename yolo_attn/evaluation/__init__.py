"""Evaluation: COCO box metrics (pycocotools, or faster-coco-eval) for YOLO models trained on a subset."""

from yolo_attn.evaluation.coco_eval import BACKENDS, METRIC_NAMES, coco_metrics, evaluate, format_metrics
from yolo_attn.evaluation.predictions import predict_detections

__all__ = ("BACKENDS", "METRIC_NAMES", "coco_metrics", "evaluate", "format_metrics", "predict_detections")
