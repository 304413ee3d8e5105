"""Compare models x seeds under identical settings: training, COCO evaluation, cost, tables and a plot."""

from yolo_attn.experiments.compare import compare, load_runs
from yolo_attn.experiments.report import summarize, write_report

__all__ = ("compare", "load_runs", "summarize", "write_report")
