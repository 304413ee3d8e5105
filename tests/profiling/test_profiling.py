"""Cost measurement: parameter counts, the two FLOP counters, latency bookkeeping, the cost table."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from yolo_attn.profiling.cost import (
    cost_table,
    count_params,
    measure_latencies,
    measure_latency,
    model_cost,
    resolve_device,
    torch_gflops,
)


def conv_stack() -> nn.Module:
    """Conv(3->8, 3x3, no bias) + BN(8) + ReLU + Conv(8->4, 1x1, bias): 216 + 16 + 32 + 4 = 268 parameters."""
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 1))


class TokenAttention(nn.Module):
    """1x1 projection then single-head self-attention over the H*W tokens (work THOP module rules alone never see)."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, 8, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.proj(x).flatten(2).transpose(1, 2)  # (B, N, 8)
        return torch.softmax(tokens @ tokens.transpose(1, 2), dim=-1) @ tokens  # (B, N, 8)


def test_params_equal_hand_count_and_sum_numel():
    model = conv_stack()
    assert count_params(model) == 3 * 8 * 9 + 2 * 8 + 8 * 4 + 4 == 268
    assert model_cost(model, imgsz=32, runs=0)["params"] == sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="module")
def yolo_costs() -> dict[str, dict]:
    """FLOPs and params (no latency) of real Ultralytics models, measured once for this module."""
    return {
        "n64": model_cost("yolov8n.yaml", imgsz=64, runs=0),
        "n128": model_cost("yolov8n.yaml", imgsz=128, runs=0),
        "s64": model_cost("yolov8s.yaml", imgsz=64, runs=0),
    }


def test_params_of_yolov8n_match_ultralytics_summary(yolo_costs):
    # Ultralytics' published YOLOv8n summary: 3,157,200 parameters (unfused).
    assert yolo_costs["n64"]["params"] == 3_157_200


def test_flops_of_plain_convs_match_hand_count():
    size = 32
    macs = size * size * (8 * 3 * 9 + 4 * 8)  # per output pixel: conv1 8x(3x3x3) + conv2 4x8
    cost = model_cost(conv_stack(), imgsz=size, runs=0)
    # the BN is not folded in a plain nn.Sequential: THOP counts 2 ops per element for it, PyTorch's counter nothing
    assert cost["gflops_torch"] == pytest.approx(2 * macs / 1e9, rel=1e-6)
    assert cost["gflops"] >= cost["gflops_torch"] > 0


def test_attention_products_are_counted_by_both_counters():
    size = 16
    n = size * size
    macs = n * 3 * 8 + 2 * n * n * 8  # projection + (Q K^T) + (A V)
    cost = model_cost(TokenAttention(), imgsz=size, runs=0)
    assert cost["gflops_torch"] == pytest.approx(2 * macs / 1e9, rel=1e-6)
    assert cost["gflops"] >= cost["gflops_torch"]  # THOP also counts the softmax


class FusedTokenAttention(TokenAttention):
    """TokenAttention through ``scaled_dot_product_attention`` (unscaled, so the two products are the same)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.proj(x).flatten(2).transpose(1, 2).unsqueeze(1).contiguous()  # (B, 1, N, 8), CPU flash kernel
        return torch.nn.functional.scaled_dot_product_attention(tokens, tokens, tokens, scale=1.0).squeeze(1)


def test_fused_attention_on_cpu_is_counted_like_its_products():
    size = 16
    n = size * size
    macs = n * 3 * 8 + 2 * n * n * 8  # projection + (Q K^T) + (A V), as test_attention_products_are_counted_...
    assert torch_gflops(FusedTokenAttention().eval(), imgsz=size) == pytest.approx(2 * macs / 1e9, rel=1e-6)


def test_flops_positive_and_larger_for_bigger_model(yolo_costs):
    small, big = yolo_costs["n64"], yolo_costs["s64"]
    assert 0 < small["gflops"] < big["gflops"]
    assert 0 < small["gflops_torch"] < big["gflops_torch"]
    assert small["params"] < big["params"]


def test_flops_grow_with_image_size(yolo_costs):
    assert yolo_costs["n64"]["gflops"] < yolo_costs["n128"]["gflops"]
    assert yolo_costs["n128"]["params"] == yolo_costs["n64"]["params"]


def test_cost_leaves_the_model_untouched():
    model = conv_stack().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model_cost(model, imgsz=16, runs=1, warmup=0)
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_latency_record_is_ordered_and_threads_restored():
    threads = torch.get_num_threads()
    cost = model_cost(conv_stack(), imgsz=16, runs=5, warmup=1, threads=1)
    assert cost["threads"] == 1
    assert torch.get_num_threads() == threads
    assert cost["latency_p10_ms"] <= cost["latency_ms"] <= cost["latency_p90_ms"]
    assert cost["device"] == "cpu"


def test_latency_skipped_with_zero_runs():
    cost = model_cost(conv_stack(), imgsz=16, runs=0)
    assert cost["latency_ms"] is None


def test_measure_latency_rejects_bad_counts():
    with pytest.raises(ValueError, match="runs >= 1"):
        measure_latency(conv_stack().eval(), imgsz=16, runs=0)


@pytest.mark.parametrize(
    ("device", "expected"),
    [("cpu", "cpu"), ("0", "cuda:0"), ("1,2,3", "cuda:1"), ("cuda:2", "cuda:2"), ("[0, 1]", "cuda:0"), (3, "cuda:3")],
)
def test_resolve_device(device, expected):
    assert str(resolve_device(device)) == expected


def test_resolve_device_rejects_garbage():
    with pytest.raises(ValueError, match="not understood"):
        resolve_device("gpu-please")


SIZES = {"yolov8n": 1.0, "yolov8n-big": 1.5, "yolo11n": 2.0, "yolo11n-big": 5.0}


@pytest.fixture
def fake_models(monkeypatch):
    """Costs derived from the model name, so the table logic is tested without building models."""

    def static_cost(model, imgsz=640):
        size = SIZES[Path(model).stem]
        return {"params": int(size * 1e6), "gflops": 2 * size, "gflops_torch": 2 * size, "imgsz": imgsz}

    def measure_latencies(models, imgsz=640, device="cpu", runs=50, warmup=10, threads=None):
        return {name: {"latency_ms": 10 * SIZES[Path(name).stem]} for name in models}

    monkeypatch.setattr("yolo_attn.profiling.cost.static_cost", static_cost)
    monkeypatch.setattr("yolo_attn.profiling.cost.deployed_model", lambda model, device="cpu": model)
    monkeypatch.setattr("yolo_attn.profiling.cost.measure_latencies", measure_latencies)


def table_rows(table: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("|").split("|")] for line in table.splitlines()[2:]]


def test_cost_table_ratios_against_each_rows_baseline(fake_models):
    baselines = {"yolov8n-big.yaml": "yolov8n.yaml", "yolo11n-big.yaml": "yolo11n.yaml"}
    rows = table_rows(cost_table(["yolov8n-big.yaml", "yolo11n-big.yaml"], runs=1, baselines=baselines))
    # baselines are listed before the models that use them, ratios are to each row's own baseline
    assert [(r[0], r[1]) for r in rows] == [
        ("yolov8n", "yolov8n"),
        ("yolov8n-big", "yolov8n"),
        ("yolo11n", "yolo11n"),
        ("yolo11n-big", "yolo11n"),
    ]
    assert [r[2] for r in rows] == ["1.00", "1.50", "2.00", "5.00"]  # params in millions
    assert [r[3] for r in rows] == ["1.000", "1.500", "1.000", "2.500"]  # params ratio
    assert [r[9] for r in rows] == ["1.000", "1.500", "1.000", "2.500"]  # latency ratio


def test_cost_table_default_baseline_is_first_model(fake_models):
    rows = table_rows(cost_table(["yolo11n.yaml", "yolov8n.yaml"], runs=0))
    assert [r[1] for r in rows] == ["yolo11n", "yolo11n"]
    assert rows[1][5] == "0.500"  # GFLOPs ratio yolov8n / yolo11n
    assert rows[1][8] == rows[1][9] == "–"  # no latency with runs=0


def test_interleaved_latencies_cover_every_model():
    models = {"a": conv_stack().eval(), "b": TokenAttention().eval()}
    result = measure_latencies(models, imgsz=8, runs=3, warmup=1, threads=1)
    assert set(result) == {"a", "b"}
    assert all(
        r["threads"] == 1 and r["latency_p10_ms"] <= r["latency_ms"] <= r["latency_p90_ms"] for r in result.values()
    )
