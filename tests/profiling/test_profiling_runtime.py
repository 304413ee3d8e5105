"""Paired latency rounds, the ONNX Runtime path of `yolo-attn profile`, and the block micro-benchmark's table."""

from __future__ import annotations

import pytest
import torch

from yolo_attn.cli import main
from yolo_attn.profiling.blocks import bench_blocks, blocks_table
from yolo_attn.profiling.paired import paired_times, ratio_stats
from yolo_attn.profiling.runtime import ONNX_OPSET, model_opset, onnx_bytes, runtime_costs


def test_ratio_stats_are_per_round_ratios():
    times = {"base": [1.0, 2.0, 4.0, 1.0], "other": [2.0, 4.0, 8.0, 3.0]}
    stats = ratio_stats(times, "other", "base")
    # per-round ratios 2, 2, 2, 3: a slow round (4.0) slows both and leaves the ratio alone
    assert stats["ratio"] == 2.0 and stats["min"] == 2.0 and stats["max"] == 3.0
    assert stats["q1"] <= stats["ratio"] <= stats["q3"]
    assert ratio_stats(times, "base", "base")["ratio"] == 1.0
    with pytest.raises(ValueError, match="'missing' is not one of the timed variants"):
        ratio_stats(times, "missing", "base")


def test_paired_times_runs_every_variant_every_round():
    calls: list[str] = []
    times = paired_times({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, rounds=7, inner=2)
    assert len(times["a"]) == len(times["b"]) == 7
    assert calls.count("a") == calls.count("b") == 14
    with pytest.raises(ValueError, match="rounds=0"):
        paired_times({"a": lambda: None}, rounds=0)


def test_runtime_costs_rejects_unknown_runtime():
    with pytest.raises(ValueError, match="expected one of"):
        runtime_costs(["yolov8n.yaml"], runtime="tensorrt")


@pytest.mark.parametrize(
    ("model_yaml", "opset"), [("yolov8n-cbam.yaml", ONNX_OPSET), ("yolov8n-deformablelka.yaml", 19)]
)
def test_onnx_export_of_a_fused_model_with_blocks_matches_torch(model_yaml, opset):
    """The whole model exports at the opset its blocks need (DeformableLKA's DeformConv: 19) and runs in ORT."""
    ort = pytest.importorskip("onnxruntime")
    from yolo_attn.profiling.cost import deployed_model

    model = deployed_model(model_yaml)
    assert model_opset(model) == opset
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    session = ort.InferenceSession(onnx_bytes(model, imgsz=64), providers=["CPUExecutionProvider"])
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    (y,) = session.run(None, {"images": x.numpy()})
    with torch.no_grad():
        expected = model(x)[0]
    torch.testing.assert_close(torch.from_numpy(y), expected, atol=1e-5 * expected.abs().max().item(), rtol=1e-5)


@pytest.mark.slow
def test_profile_onnxruntime_cli(repo, capsys):
    pytest.importorskip("onnxruntime")
    sam = str(repo / "model_yamls" / "yolov8n-sam.yaml")
    main(["profile", "--models", "yolov8n.yaml", sam, "--imgsz", "32", "--runtime", "onnxruntime", "--rounds", "3"])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| yolov8n")]
    assert [line.split("|")[1].strip() for line in lines] == ["yolov8n", "yolov8n-sam"]
    base, sam_row = ([c.strip() for c in line.strip("|").split("|")] for line in lines)
    assert base[2] == "1.000" and base[6].startswith("1.000")  # the first model is the baseline
    assert float(sam_row[2]) > 1.0  # SAM adds a C x C convolution per block
    assert float(sam_row[5]) > 0


def test_bench_blocks_rows_and_table():
    rows = bench_blocks(["SAM"], imgsz=64, rounds=2, threads=1)
    assert [r["level"] for r in rows] == ["P3", "P4", "P5"]
    assert [r["shape"] for r in rows] == [(1, 64, 8, 8), (1, 128, 4, 4), (1, 256, 2, 2)]
    assert all(r["ops"] == 3 and r["ops_plain"] == 4 for r in rows)  # the BatchNorm is folded
    table = blocks_table(rows)
    assert table.splitlines()[2].startswith("| SAM |") and "3 / 4" in table
    with pytest.raises(ValueError, match="unknown blocks"):
        bench_blocks(["Nope"])
