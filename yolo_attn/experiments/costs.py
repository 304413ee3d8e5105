"""Measure each model's cost into the comparison folder: params and GFLOPs per model, latency of all models together.

This is the one measuring step after the cells. It runs once, at report time, in one process on one device, so that
the latencies of all models are taken together (interleaved passes) under the same conditions, whichever executor
trained the cells. The report then reads the files this writes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch

from yolo_attn.experiments.cell import first_device
from yolo_attn.experiments.files import read_json, write_json_atomic

# CPU threads of a fresh process, read before any training here lowers them (Ultralytics' select_device sets
# torch.set_num_threads on CPU): latency is always measured with this many, however often a comparison is resumed.
LATENCY_THREADS = torch.get_num_threads()


def latency_key(stems: Sequence[str], imgsz: int, device: str, runs: int, threads: int | None) -> dict:
    """Return what a cached ``latency.json`` must match to be reused."""
    return {"stems": list(stems), "imgsz": imgsz, "device": device, "runs": runs, "threads": threads}


def measure_costs(
    out: Path,
    models: Sequence[str],
    stems: Sequence[str],
    imgsz: int,
    device: str | int | None,
    latency_runs: int,
    threads: int | None = LATENCY_THREADS,
    measure_latency: bool = True,
) -> None:
    """Write ``out/costs/<stem>.json`` (params, GFLOPs) and ``out/latency.json``, measuring only what is missing.

    Params and FLOPs are cached per model. Latencies are measured for all ``models`` together, with interleaved
    passes so that they compare (``measure_latencies``), and cached in ``out/latency.json`` for exactly this set of
    models and settings; a different set (e.g. more finished models) is measured again.

    Args:
        out (Path): Comparison folder.
        models (Sequence[str]): Model YAMLs or weights (those with a finished cell).
        stems (Sequence[str]): Their stems.
        imgsz (int): Image size of FLOPs and latency.
        device (str | int | None): Compare device; latency uses its first device.
        latency_runs (int): Timed passes per model, 0 to skip latency.
        threads (int | None): CPU threads pinned during the latency measurement (see ``measure_latencies``).
        measure_latency (bool): False measures params and FLOPs only (partial reports while cells still train).
    """
    from yolo_attn.profiling.cost import deployed_model, measure_latencies, resolve_device, static_cost

    out = Path(out)
    (out / "costs").mkdir(parents=True, exist_ok=True)
    for model, stem in zip(models, stems, strict=True):
        path = out / "costs" / f"{stem}.json"
        cached = read_json(path) if path.exists() else {}
        if cached.get("imgsz") != imgsz:
            write_json_atomic(path, static_cost(model, imgsz))
    if not (measure_latency and latency_runs and stems):
        return
    latency_device = str(resolve_device(first_device(device)))
    key = latency_key(stems, imgsz, latency_device, latency_runs, threads)
    path = out / "latency.json"
    cached = json.loads(path.read_text()) if path.exists() else {}
    if cached.get("key") != key:
        deployed = {stem: deployed_model(model, latency_device) for model, stem in zip(models, stems, strict=True)}
        latencies = measure_latencies(deployed, imgsz, latency_device, runs=latency_runs, threads=threads)
        write_json_atomic(path, {"key": key, "latency": latencies})


def measure_runtime(
    out: Path,
    models: Sequence[str],
    stems: Sequence[str],
    imgsz: int,
    runtime: str,
    rounds: int,
    threads: int | None = LATENCY_THREADS,
) -> None:
    """Write ``out/runtime.json``: params, GFLOPs and batch-1 CPU latency in a deployment runtime, paired rounds.

    The models are timed as ``yolo-attn profile --runtime`` times them (``yolo_attn.profiling.runtime.runtime_costs``:
    every model once per round in a shuffled order, median of the per-round ratios to the first model, with their
    spread), cached for exactly this set of models and settings.

    Args:
        out (Path): Comparison folder.
        models (Sequence[str]): Model YAMLs or weights (those with a finished cell); the first is the baseline.
        stems (Sequence[str]): Their stems.
        imgsz (int): Square input size.
        runtime (str): ``"torch"`` (PyTorch eager) or ``"onnxruntime"``.
        rounds (int): Timed rounds.
        threads (int | None): CPU threads during the measurement.
    """
    from yolo_attn.profiling.runtime import runtime_costs

    path = Path(out) / "runtime.json"
    key = {"stems": list(stems), "imgsz": imgsz, "runtime": runtime, "rounds": rounds, "threads": threads}
    if (read_json(path) if path.exists() else {}).get("key") != key:
        rows = runtime_costs(list(models), imgsz, runtime, rounds=rounds, threads=threads, names=list(stems))
        write_json_atomic(path, {"key": key, "rows": rows})
