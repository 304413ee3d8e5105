"""Cost measurement: parameter counts, the two FLOP counters, latency bookkeeping, the cost table."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from yolo_attn.profiling.cost import cost_table, count_params, measure_latency, model_cost, resolve_device


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


def test_params_of_yolov8n_match_ultralytics_summary():
    # Ultralytics' published YOLOv8n summary: 3,157,200 parameters (unfused).
    assert model_cost("yolov8n.yaml", imgsz=64, runs=0)["params"] == 3_157_200


def test_flops_of_plain_convs_match_hand_count():
    size = 32
    macs = size * size * (8 * 3 * 9 + 4 * 8)  # per output pixel: conv1 8x(3x3x3) + conv2 4x8 (BN folds away in eval)
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


def test_flops_positive_and_larger_for_bigger_model():
    small = model_cost("yolov8n.yaml", imgsz=64, runs=0)
    big = model_cost("yolov8s.yaml", imgsz=64, runs=0)
    assert 0 < small["gflops"] < big["gflops"]
    assert 0 < small["gflops_torch"] < big["gflops_torch"]
    assert small["params"] < big["params"]


def test_flops_grow_with_image_size():
    assert (
        model_cost("yolov8n.yaml", imgsz=64, runs=0)["gflops"] < model_cost("yolov8n.yaml", imgsz=128, runs=0)["gflops"]
    )


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


def test_cost_table_ratios_against_each_rows_baseline():
    table = cost_table(["yolov8n.yaml", "yolov8s.yaml"], imgsz=64, runs=0, baselines={"yolov8s.yaml": "yolov8s.yaml"})
    rows = [line.split(" | ") for line in table.splitlines()[2:]]
    assert [r[0].strip("| ") for r in rows] == ["yolov8n", "yolov8s"]
    assert all(r[1] == r[0].strip("| ") for r in rows)  # each its own baseline here
    assert all(r[3] == "1.000" and r[5] == "1.000" for r in rows)

    table = cost_table(["yolov8n.yaml", "yolov8s.yaml"], imgsz=64, runs=0)  # default baseline: the first model
    n_row, s_row = (line.split(" | ") for line in table.splitlines()[2:])
    assert s_row[1] == "yolov8n"
    assert float(s_row[3]) == pytest.approx(float(s_row[2]) / float(n_row[2]), rel=0.01)  # params ratio
    assert float(s_row[3]) > 1
