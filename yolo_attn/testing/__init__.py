"""The block contract anyone can run: ``check_block(cls, **kwargs)`` and ``yolo-attn check-block module:Class|NAME``."""

from yolo_attn.testing.contract import PROPERTIES, check_block, export_onnx, resolve
from yolo_attn.testing.report import CheckReport, PropertyResult

__all__ = ("PROPERTIES", "CheckReport", "PropertyResult", "check_block", "export_onnx", "resolve")
