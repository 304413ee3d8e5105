"""Batch-1 latency of whole models in the runtime they are deployed with, against the first model, paired and shuffled.

``runtime="torch"`` times the fused eval-mode PyTorch model (eager); ``runtime="onnxruntime"`` exports each fused
model to ONNX (``torch.onnx.export``, the TorchScript-based exporter that Ultralytics' ``export format=onnx`` uses,
offline) and times an onnxruntime CPU session. Every model runs once per round in a shuffled order, and each model's
latency ratio is the median over rounds of its time divided by the first model's time in the same round, with the
interquartile range and the min-max of those per-round ratios as its spread.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from yolo_attn.profiling.cost import _input_channels, deployed_model, static_cost
from yolo_attn.profiling.paired import paired_times, ratio_stats
from yolo_attn.utils.models import load_model

RUNTIMES = ("torch", "onnxruntime")
ONNX_OPSET = 17


class _Predictions(nn.Module):
    """Return only the first output of a model (Ultralytics' decoded predictions), as a deployed graph does."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.model(x)
        return y[0] if isinstance(y, (list, tuple)) else y


def model_opset(model: nn.Module, opset: int = ONNX_OPSET) -> int:
    """Return the opset a model exports at: ``opset``, or the highest ``onnx_min_opset`` of its modules if higher.

    A block whose operator exists only in a later opset (DeformableLKA's ``DeformConv``: 19) declares it as its
    ``onnx_min_opset`` class attribute, as `yolo_attn.testing.contract` reads it for ``check-block``.

    Args:
        model (nn.Module): The model.
        opset (int): The opset wanted when no module needs a later one.

    Returns:
        (int): The opset to export at.
    """
    return max([opset, *(getattr(m, "onnx_min_opset", opset) for m in model.modules())])


def onnx_bytes(model: nn.Module, imgsz: int = 640, opset: int | None = None) -> bytes:
    """Export a (fused, eval-mode) model to ONNX in memory, with a fixed batch-1 input of ``imgsz`` x ``imgsz``.

    Args:
        model (nn.Module): The model, e.g. from ``deployed_model``; only its first output is exported.
        imgsz (int): Square input size in pixels.
        opset (int | None): ONNX opset; None exports at ``model_opset(model)`` (17, or a block's later minimum).

    Returns:
        (bytes): The serialised ONNX model, input ``images``, output ``output0`` (Ultralytics' names).
    """
    image = torch.zeros(1, _input_channels(model), imgsz, imgsz)
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer and deprecation warnings; the session is checked by running it
        torch.onnx.export(
            _Predictions(model).eval(),
            image,
            buffer,
            opset_version=model_opset(model) if opset is None else opset,
            dynamo=False,
            input_names=["images"],
            output_names=["output0"],
        )
    return buffer.getvalue()


def onnxruntime_runner(model: nn.Module, imgsz: int = 640, threads: int | None = 2) -> Callable[[], Any]:
    """Export ``model`` to ONNX and return a zero-argument call of one batch-1 onnxruntime CPU inference.

    Args:
        model (nn.Module): Fused, eval-mode float32 model on CPU.
        imgsz (int): Square input size in pixels.
        threads (int | None): Intra-op threads of the session (inter-op: 1); None lets onnxruntime choose.

    Returns:
        (Callable[[], Any]): Runs the session on a fixed random image.
    """
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise ImportError("runtime='onnxruntime' needs the onnxruntime package: pip install onnxruntime") from e
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.inter_op_num_threads = 1
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(onnx_bytes(model, imgsz), options, providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(1, _input_channels(model), imgsz, imgsz, generator=generator).numpy()
    return lambda: session.run(None, {"images": image})


def torch_runner(model: nn.Module, imgsz: int = 640) -> Callable[[], Any]:
    """Return a zero-argument call of one batch-1 no-grad forward of ``model`` (fused, eval mode, on CPU)."""
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(1, _input_channels(model), imgsz, imgsz, generator=generator)

    def run() -> Any:
        with torch.no_grad():
            return model(image)

    return run


def runtime_costs(
    models: Sequence[str | Path | nn.Module],
    imgsz: int = 640,
    runtime: str = "torch",
    rounds: int = 60,
    warmup: int = 5,
    threads: int | None = 2,
    seed: int = 0,
    names: Sequence[str] | None = None,
    static: bool = True,
) -> list[dict[str, Any]]:
    """Measure params, GFLOPs and batch-1 CPU latency of models, each against the first, in paired shuffled rounds.

    Args:
        models (Sequence[str | Path | nn.Module]): Model YAMLs, checkpoints or modules; the first is the baseline.
        imgsz (int): Square input size in pixels.
        runtime (str): ``"torch"`` (PyTorch eager) or ``"onnxruntime"`` (ONNX export, CPU session).
        rounds (int): Timed rounds; each runs every model once, in a shuffled order.
        warmup (int): Untimed runs of each model first.
        threads (int | None): CPU threads (``torch.set_num_threads`` and the session's intra-op threads), restored
            afterwards; None keeps the current setting.
        seed (int): Seed of the shuffling.
        names (Sequence[str] | None): Display names, one per model; None takes file stems (class names for modules).
        static (bool): Also count params and GFLOPs (``static_cost``); False leaves them out of the rows, for a caller
            that counts them once for several runtimes.

    Returns:
        (list[dict[str, Any]]): One dict per model, in order: ``model`` (name), ``params``, ``gflops``,
            ``gflops_torch``, ``latency_ms`` (median), ``ratio`` (median per-round latency ratio to the first model),
            ``ratio_q1`` / ``ratio_q3`` (its quartiles), ``ratio_min`` / ``ratio_max``, ``runtime``, ``threads``,
            ``rounds``, ``imgsz``.
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime={runtime!r} is not supported; expected one of {RUNTIMES}")
    if not models:
        raise ValueError("runtime_costs needs at least one model (the first is the baseline)")
    if rounds < 1 or warmup < 0:
        raise ValueError(f"rounds={rounds}, warmup={warmup}: expected rounds >= 1 and warmup >= 0")
    if names is not None and (len(names) != len(models) or len(set(names)) != len(names)):
        raise ValueError(f"names={list(names)}: expected {len(models)} distinct names, one per model")
    names = list(names) if names is not None else _unique_names(models)
    previous = torch.get_num_threads()
    try:
        if threads:
            torch.set_num_threads(threads)
        used_threads = torch.get_num_threads()
        rows, runners = [], {}
        for name, model in zip(names, models, strict=True):
            model = load_model(model)  # built once for both the static cost and the fused copy
            rows.append({"model": name, "imgsz": imgsz, **(static_cost(model, imgsz) if static else {})})
            fused = deployed_model(model, "cpu")
            if runtime == "torch":
                runners[name] = torch_runner(fused, imgsz)
            else:
                runners[name] = onnxruntime_runner(fused, imgsz, threads)
        for run in runners.values():
            for _ in range(warmup):
                run()
        times = paired_times(runners, rounds=rounds, inner=1, seed=seed)
    finally:
        torch.set_num_threads(previous)
    for row in rows:
        stats = ratio_stats(times, row["model"], names[0])
        row.update(
            latency_ms=stats["ms"],
            ratio=stats["ratio"],
            ratio_q1=stats["q1"],
            ratio_q3=stats["q3"],
            ratio_min=stats["min"],
            ratio_max=stats["max"],
            runtime=runtime,
            threads=used_threads,
            rounds=rounds,
        )
    return rows


def runtime_table(rows: Sequence[dict[str, Any]]) -> str:
    """Return a markdown table of `runtime_costs` rows, ratios to the first row.

    Args:
        rows (Sequence[dict[str, Any]]): Output of `runtime_costs`.

    Returns:
        (str): Markdown table: params, GFLOPs and latency, each with its ratio to the first model; the latency ratio
            is the median of per-round ratios, with its interquartile range and min-max.
    """
    first = rows[0]
    where = f"{first['runtime']} CPU, {first['threads']} threads, bs1, {first['imgsz']} px, {first['rounds']} rounds"
    head = ["Model", "Params (M)", "× params", "GFLOPs", "× GFLOPs", f"Latency (ms, {where})"]
    head.append("× latency [IQR] (min-max)")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [
            row["model"],
            f"{row['params'] / 1e6:.2f}",
            f"{row['params'] / first['params']:.3f}",
            f"{row['gflops']:.2f}",
            f"{row['gflops'] / first['gflops']:.3f}" if first["gflops"] else "–",
            f"{row['latency_ms']:.1f}",
            f"{row['ratio']:.3f} [{row['ratio_q1']:.3f}-{row['ratio_q3']:.3f}]"
            f" ({row['ratio_min']:.2f}-{row['ratio_max']:.2f})",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _unique_names(models: Sequence[str | Path | nn.Module]) -> list[str]:
    """Return a display name per model (file stem or class name), made unique with a suffix where they repeat."""
    names: list[str] = []
    for model in models:
        base = type(model).__name__ if isinstance(model, nn.Module) else Path(str(model)).stem
        name, k = base, 2
        while name in names:
            name, k = f"{base}#{k}", k + 1
        names.append(name)
    return names
