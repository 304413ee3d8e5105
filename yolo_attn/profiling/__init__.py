"""Cost of a model: parameters, FLOPs and batch-1 latency."""

from yolo_attn.profiling.cost import (
    cost_table,
    count_params,
    measure_latency,
    model_cost,
    print_cost_table,
    resolve_device,
    torch_gflops,
)
from yolo_attn.profiling.saved import SavedTensors, count_saved, saved_by_module
from yolo_attn.utils.models import load_model

__all__ = (
    "SavedTensors",
    "cost_table",
    "count_params",
    "count_saved",
    "load_model",
    "measure_latency",
    "model_cost",
    "print_cost_table",
    "resolve_device",
    "saved_by_module",
    "torch_gflops",
)
