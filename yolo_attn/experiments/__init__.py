"""Compare models x seeds under identical settings: training, COCO evaluation, cost, tables and a plot.

Entry point: ``yolo_attn.experiments.compare.compare`` (the ``yolo-attn compare`` command). It is not re-exported
here so that ``yolo_attn.experiments.compare`` stays the module.
"""

from yolo_attn.experiments.compare import load_runs
from yolo_attn.experiments.report import summarize, write_report

__all__ = ("load_runs", "summarize", "write_report")
