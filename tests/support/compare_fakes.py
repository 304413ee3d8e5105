"""Fakes for comparison tests: a trainer that records what it trains, deterministic metrics, costs and latencies.

The ``fakes`` fixture (in conftest.py) installs the cost fakes and returns ``install(trainer)``, which puts a
``FakeTrainer`` in place of ``train_and_evaluate``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import yolo_attn.experiments.cell as cell_module


def fake_metrics(model: str, seed: int) -> dict:
    """A deterministic stand-in for evaluate()'s result."""
    ap = 0.1 * (1 + len(Path(model).stem)) + 0.01 * seed
    return {"coco": {"AP": ap, "AP50": 2 * ap}, "ultralytics": {"mAP50-95": ap, "mAP50": 2 * ap}}


def fake_static_cost(model, imgsz=640):
    return {"params": 1000 * len(Path(model).stem), "gflops": 1.0, "gflops_torch": 1.0, "imgsz": imgsz}


def fake_latencies(models, imgsz=640, device="cpu", runs=50, warmup=10, threads=None):
    return {name: {"latency_ms": 2.0, "latency_p10_ms": 1.0, "latency_p90_ms": 3.0, "threads": 1} for name in models}


class FakeTrainer:
    """Records every (model, seed) it trains; on call ``fail_on`` (1-based) raises ``error`` (KeyboardInterrupt: a
    killed process, which writes nothing; any Exception: a failing cell, which records its error)."""

    def __init__(self, fail_on: int | None = None, error: BaseException | None = None) -> None:
        self.calls: list[tuple[str, int]] = []
        self.fail_on = fail_on
        self.error = error or KeyboardInterrupt("killed during training")

    def __call__(self, model: str, seed: int, settings: dict, device, out: Path) -> dict:
        self.calls.append((model, seed))
        if len(self.calls) == self.fail_on:
            raise self.error
        return {"metrics": fake_metrics(model, seed), "weights": f"{model}-{seed}.pt", "train_dir": str(out)}


@pytest.fixture
def fakes(monkeypatch):
    monkeypatch.setattr("yolo_attn.profiling.cost.static_cost", fake_static_cost)
    monkeypatch.setattr("yolo_attn.profiling.cost.deployed_model", lambda model, device="cpu": model)
    monkeypatch.setattr("yolo_attn.profiling.cost.measure_latencies", fake_latencies)

    def install(trainer: FakeTrainer) -> FakeTrainer:
        monkeypatch.setattr(cell_module, "train_and_evaluate", trainer)
        return trainer

    return install


GRID = {"models": ["base.yaml", "attn.yaml"], "seeds": [0, 1], "epochs": 3}
