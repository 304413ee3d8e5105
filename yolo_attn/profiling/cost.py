"""What a model costs: parameters, FLOPs and batch-1 latency.

FLOPs are counted by two independent real counters, 2 FLOPs per multiply-accumulate, on the fused model (convolution and
BatchNorm folded, as ``yolo val`` / ``predict`` run it):

- ``gflops``: Ultralytics' own number (``ultralytics.utils.torch_utils.get_flops``: THOP module rules plus functional
  matrix products and ``scaled_dot_product_attention``, extrapolated from small stride-aligned proxy images), the figure
  ``yolo`` prints in its model summary. It also counts normalisation, softmax and average pooling.
- ``gflops_torch``: PyTorch's dispatcher-level counter (``torch.utils.flop_counter.FlopCounterMode``) on one real
  forward at the full image size: convolutions and matrix products (attention included) only.

For convolution-only networks the two agree; a gap flags a block one of the counters sees differently (e.g. a BatchNorm
that does not fold, or an operation THOP's extrapolation mis-scales). Element-wise gates (sigmoid, products) are free in
both.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode
from ultralytics.utils import LOGGER, TQDM
from ultralytics.utils.torch_utils import get_flops

from yolo_attn.utils.devices import parse_device
from yolo_attn.utils.models import load_model


def count_params(model: nn.Module) -> int:
    """Return the number of parameters of ``model`` (trainable or not, buffers excluded).

    Args:
        model (nn.Module): Any PyTorch module.

    Returns:
        (int): Sum of ``numel()`` over ``model.parameters()``.
    """
    return sum(p.numel() for p in model.parameters())


def resolve_device(device: str | int | torch.device | None) -> torch.device:
    """Turn an Ultralytics-style device string into one ``torch.device`` for single-process measurement.

    Args:
        device (str | int | torch.device | None): ``None`` or ``""`` (first GPU if any, else CPU), ``"cpu"``, ``"mps"``,
            a CUDA index (``0``, ``"0"``, ``"cuda:1"``) or an Ultralytics multi-GPU list (``"0,1,2,3"``, the first one
            is used).

    Returns:
        (torch.device): The device to measure on.
    """
    if isinstance(device, torch.device):
        return device
    spec = parse_device(device)  # raises on text that is no device
    if spec.kind == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    if spec.kind in {"cpu", "mps"}:
        return torch.device(spec.kind)
    first = spec.first
    return torch.device(f"cuda:{first}")


def _fused_eval_copy(model: nn.Module) -> nn.Module:
    """Return a fused, eval-mode, float32 copy of ``model``; the caller's model is left untouched."""
    model = copy.deepcopy(model).float().eval()
    if hasattr(model, "fuse"):
        model = model.fuse(verbose=False)
    return model


def _input_channels(model: nn.Module) -> int:
    """Return the number of image channels a model expects (3 unless its YAML says otherwise)."""
    yaml_dict = getattr(model, "yaml", None)
    return int(yaml_dict.get("channels", 3)) if isinstance(yaml_dict, dict) else 3


def _cpu_sdpa_flops(query_shape, key_shape, value_shape, *args: Any, **kwargs: Any) -> int:
    """FLOPs of CPU flash attention: the two matrix products of attention, as PyTorch counts them on the GPU kernels."""
    return flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape)


# PyTorch's counter knows the GPU attention kernels, but not the one ``scaled_dot_product_attention`` runs on CPU, which
# it would count as 0 FLOPs (torch 2.14).
_CPU_ATTENTION_OP = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
_CPU_ATTENTION_FLOPS = {_CPU_ATTENTION_OP: _cpu_sdpa_flops} if _CPU_ATTENTION_OP is not None else {}


def torch_gflops(model: nn.Module, imgsz: int = 640) -> float:
    """Count GFLOPs of one batch-1 forward with PyTorch's dispatcher-level FLOP counter.

    Args:
        model (nn.Module): The model, in eval mode, on CPU.
        imgsz (int): Square input size in pixels.

    Returns:
        (float): Billions of floating point operations (2 per multiply-accumulate) of convolutions and matrix products,
            attention included.
    """
    image = torch.zeros(1, _input_channels(model), imgsz, imgsz)
    counter = FlopCounterMode(display=False, custom_mapping=_CPU_ATTENTION_FLOPS)
    with torch.no_grad(), counter:
        model(image)
    return counter.get_total_flops() / 1e9


def measure_latencies(
    models: Mapping[str, nn.Module],
    imgsz: int = 640,
    device: str | torch.device | None = "cpu",
    runs: int = 50,
    warmup: int = 10,
    threads: int | None = None,
) -> dict[str, dict[str, float]]:
    """Time batch-1 forward passes of several models, interleaved so that they share the machine's conditions.

    Each model gets ``warmup`` untimed passes (allocator, cuDNN autotuning, caches), then ``runs`` rounds follow, in
    which every model runs one timed pass in turn. A burst of load from another process therefore slows all models
    alike instead of the one that happened to be measured then. On CUDA each pass is bracketed by
    ``torch.cuda.synchronize`` so the time covers the kernels, not only their launch.

    Args:
        models (Mapping[str, nn.Module]): Models by name, run as given (eval mode, fused, on ``device``).
        imgsz (int): Square input size in pixels.
        device (str | torch.device | None): Where they run, see ``resolve_device``.
        runs (int): Timed passes per model.
        warmup (int): Untimed passes per model before timing.
        threads (int | None): CPU threads (``torch.set_num_threads``) during the measurement, restored afterwards;
            None keeps the current setting.

    Returns:
        (dict[str, dict[str, float]]): Per name: ``latency_ms`` (median), ``latency_p10_ms`` and ``latency_p90_ms``
            (10th and 90th percentiles, the spread shows how noisy the machine was) and ``threads`` (the CPU threads
            used, which CPU latency depends on).
    """
    if runs < 1 or warmup < 0:
        raise ValueError(f"runs={runs}, warmup={warmup}: expected runs >= 1 and warmup >= 0")
    device = resolve_device(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    generator = torch.Generator().manual_seed(0)
    images = {}
    for name, model in models.items():
        dtype = next(model.parameters()).dtype
        images[name] = torch.rand(1, _input_channels(model), imgsz, imgsz, generator=generator).to(device, dtype)
    times_ms: dict[str, list[float]] = {name: [] for name in models}
    previous_threads = torch.get_num_threads()
    try:
        if threads:
            torch.set_num_threads(threads)
        used_threads = torch.get_num_threads()
        with torch.no_grad():
            for name, model in models.items():
                for _ in range(warmup):
                    model(images[name])
            for _ in range(runs):
                for name, model in models.items():
                    sync()
                    start = time.perf_counter()
                    model(images[name])
                    sync()
                    times_ms[name].append((time.perf_counter() - start) * 1000)
    finally:
        torch.set_num_threads(previous_threads)
    result = {}
    for name, times in times_ms.items():
        deciles = statistics.quantiles(times, n=10) if len(times) > 1 else times * 9
        result[name] = {
            "latency_ms": statistics.median(times),
            "latency_p10_ms": deciles[0],
            "latency_p90_ms": deciles[-1],
            "threads": used_threads,
        }
    return result


def measure_latency(
    model: nn.Module,
    imgsz: int = 640,
    device: str | torch.device | None = "cpu",
    runs: int = 50,
    warmup: int = 10,
    threads: int | None = None,
) -> dict[str, float]:
    """Time batch-1 forward passes of one model: ``measure_latencies`` with a single model (same arguments)."""
    return measure_latencies({"model": model}, imgsz, device, runs=runs, warmup=warmup, threads=threads)["model"]


def deployed_model(model_or_cfg: nn.Module | str | Path, device: str | torch.device | None = "cpu") -> nn.Module:
    """Return a fused, eval-mode, float32 copy of a model on ``device``: what latency should be measured on.

    Args:
        model_or_cfg (nn.Module | str | Path): A model, model YAML or checkpoint, see ``load_model``.
        device (str | torch.device | None): Target device, see ``resolve_device``.

    Returns:
        (nn.Module): The copy; the input model is left untouched.
    """
    return _fused_eval_copy(load_model(model_or_cfg)).to(resolve_device(device))


def static_cost(model_or_cfg: nn.Module | str | Path, imgsz: int = 640) -> dict[str, Any]:
    """Parameters and GFLOPs of a model (the machine-independent part of its cost).

    The parameter count is of the model as given (unfused, as Ultralytics prints at build time); both FLOP counts use
    a fused eval-mode float32 copy on CPU (Conv+BN folded, the form ``yolo val`` and ``predict`` run).

    Args:
        model_or_cfg (nn.Module | str | Path): A model, model YAML or checkpoint, see ``load_model``.
        imgsz (int): Square input size in pixels.

    Returns:
        (dict[str, Any]): ``params`` (int), ``gflops`` (Ultralytics' ``get_flops``), ``gflops_torch`` (PyTorch's
            counter) and ``imgsz``.
    """
    model = load_model(model_or_cfg)
    fused = _fused_eval_copy(model).cpu()
    gflops = get_flops(fused, imgsz)
    if not gflops:  # get_flops hides every failure behind 0.0
        LOGGER.warning(f"Ultralytics get_flops returned 0 for {type(model).__name__}: is ultralytics-thop installed?")
    return {"params": count_params(model), "gflops": gflops, "gflops_torch": torch_gflops(fused, imgsz), "imgsz": imgsz}


def model_cost(
    model_or_cfg: nn.Module | str | Path,
    imgsz: int = 640,
    device: str | torch.device | None = "cpu",
    runs: int = 50,
    warmup: int = 10,
    threads: int | None = None,
) -> dict[str, Any]:
    """Measure what a model costs: parameters, GFLOPs (two counters) and batch-1 latency.

    ``static_cost`` plus ``measure_latency`` on the fused model. To compare the latency of several models, prefer
    ``measure_latencies`` (interleaved passes) or ``cost_table``.

    Args:
        model_or_cfg (nn.Module | str | Path): A model, a model YAML (e.g. ``"model_yamls/yolov8n-cbam.yaml"``) or a
            checkpoint, see ``load_model``.
        imgsz (int): Square input size in pixels for FLOPs and latency.
        device (str | torch.device | None): Latency device, see ``resolve_device``. FLOPs are always counted on CPU.
        runs (int): Timed forward passes; 0 skips the latency measurement (latency keys are then None).
        warmup (int): Untimed forward passes before timing.
        threads (int | None): CPU threads during the latency measurement, restored afterwards; None keeps the current
            setting. Pin it when latencies measured at different times must compare: training on CPU lowers the
            thread count of the process (Ultralytics' ``select_device``).

    Returns:
        (dict[str, Any]): ``params`` (int), ``gflops`` (Ultralytics/THOP), ``gflops_torch`` (PyTorch counter),
            ``latency_ms`` / ``latency_p10_ms`` / ``latency_p90_ms`` (batch 1, median and 10th/90th percentiles),
            ``threads`` (CPU threads used for latency), ``imgsz`` and ``device`` (str).
    """
    model = load_model(model_or_cfg)
    cost = static_cost(model, imgsz)
    device = resolve_device(device)
    latency: dict[str, Any] = dict.fromkeys(("latency_ms", "latency_p10_ms", "latency_p90_ms", "threads"))
    if runs:
        latency = measure_latency(
            deployed_model(model, device), imgsz, device, runs=runs, warmup=warmup, threads=threads
        )
    return {**cost, **latency, "device": str(device)}


def cost_table(
    models: Sequence[str | Path],
    imgsz: int = 640,
    device: str | torch.device | None = "cpu",
    runs: int = 50,
    warmup: int = 10,
    baselines: Mapping[str, str | Path] | None = None,
) -> str:
    """Measure models and return a markdown table of their cost and its ratio to a baseline.

    Latencies are measured with interleaved passes over all models (``measure_latencies``), so that they compare.

    Args:
        models (Sequence[str | Path]): Model YAMLs or checkpoints, in table order.
        imgsz (int): Square input size for FLOPs and latency.
        device (str | torch.device | None): Latency device, see ``resolve_device``.
        runs (int): Timed forward passes per model.
        warmup (int): Untimed forward passes per model.
        baselines (Mapping[str, str | Path] | None): Baseline of each model (``{model: baseline}``); models missing
            from it, or all when None, are compared with the first model. A baseline that is not in ``models`` is
            measured and listed before the models that use it.

    Returns:
        (str): Markdown table, one row per model, ratios (×) to the row's baseline.
    """
    models = [str(m) for m in models]
    base_of = {m: str((baselines or {}).get(m, models[0])) for m in models}
    order = list(dict.fromkeys(x for m in models for x in (base_of[m], m)))
    costs = {model: static_cost(model, imgsz) for model in TQDM(order, desc="params and FLOPs")}
    deployed = {m: deployed_model(m, device) for m in order} if runs else {}
    latencies = measure_latencies(deployed, imgsz, device, runs, warmup) if runs else {}
    for model in order:
        costs[model]["latency_ms"] = latencies.get(model, {}).get("latency_ms")
    device = resolve_device(device)
    where = f"{device}, {torch.get_num_threads()} threads" if device.type == "cpu" else str(device)
    head = ["Model", "Baseline", "Params (M)", "× params", "GFLOPs", "× GFLOPs", "GFLOPs (torch)", "× GFLOPs (torch)"]
    head += [f"Latency bs1 (ms, {where}, {imgsz} px)", "× latency"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for model in order:
        cost, base = costs[model], costs[base_of.get(model, model)]
        cells = [Path(model).stem, Path(base_of.get(model, model)).stem]
        for key, scale, digits in (("params", 1e-6, 2), ("gflops", 1, 2), ("gflops_torch", 1, 2), ("latency_ms", 1, 1)):
            value, reference = cost[key], base[key]
            cells.append("–" if value is None else f"{value * scale:.{digits}f}")
            cells.append("–" if value is None or not reference else f"{value / reference:.3f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def print_cost_table(
    models: Sequence[str | Path],
    imgsz: int = 640,
    device: str | torch.device | None = "cpu",
    runs: int = 50,
    warmup: int = 10,
    baselines: Mapping[str, str | Path] | None = None,
) -> str:
    """Print and return ``cost_table`` (same arguments); the first model is the baseline unless ``baselines`` says."""
    table = cost_table(models, imgsz=imgsz, device=device, runs=runs, warmup=warmup, baselines=baselines)
    print(table)
    return table
