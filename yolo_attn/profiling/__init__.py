"""Cost of a model: parameters, FLOPs and batch-1 latency."""

from yolo_attn.profiling.cost import (
    cost_table,
    count_params,
    load_model,
    measure_latency,
    model_cost,
    print_cost_table,
    resolve_device,
    torch_gflops,
)

__all__ = (
    "cost_table",
    "count_params",
    "load_model",
    "measure_latency",
    "model_cost",
    "print_cost_table",
    "resolve_device",
    "torch_gflops",
)
