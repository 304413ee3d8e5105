"""Training benchmarks: the exact saved-tensor counter, fine-tuned blocks, and ``bench_blocks --train`` end to end."""

from __future__ import annotations

import gc
import importlib.util
import sys
import weakref
from pathlib import Path

import pytest
import torch
from torch import nn

from yolo_attn import registry
from yolo_attn.profiling.blocks import bench_blocks_table, bench_levels_of
from yolo_attn.profiling.saved import count_saved, saved_by_module
from yolo_attn.profiling.training import bench_blocks_train, fine_tuned, with_mix
from yolo_attn.registry import register_block, unregister_block

F32 = 4  # bytes per float32


class WeightGate(nn.Module):
    """``x * sigmoid(w)`` with a per-channel weight: saves its input and sigmoid(w) (C floats), nothing else."""

    def __init__(self, c1: int) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(c1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.w)


@pytest.fixture
def weight_gate():
    """WeightGate registered as a user's block for the duration of one test."""
    register_block(WeightGate, name="WeightGateTest")
    yield WeightGate
    unregister_block("WeightGateTest")


def test_clone_saves_nothing():
    x = torch.randn(2, 3, 4, 5, requires_grad=True)
    _, saved = count_saved(lambda: x.clone(), [x])
    assert (saved.activation_bytes, saved.input_bytes, saved.parameter_bytes, saved.storages) == (0, 0, 0, 0)


def test_gate_saves_its_input_and_the_gate_by_hand_count():
    gate = WeightGate(4)
    x = torch.randn(1, 4, 5, 5)
    saved = saved_by_module(gate, x)
    # mul saves x (input) and sigmoid(w); sigmoid saves its output, the same storage: counted once
    assert saved.input_bytes == 1 * 4 * 5 * 5 * F32 == 400
    assert saved.activation_bytes == 4 * F32
    assert saved.parameter_bytes == 0  # w itself is not saved (sigmoid saves its result)
    assert saved.saved == 3 and saved.storages == 2


def test_views_of_one_storage_count_once_and_parameters_apart():
    x = torch.randn(4, 10, requires_grad=True)
    conv_w = nn.Parameter(torch.randn(3, 10))

    def forward() -> torch.Tensor:
        a = x.exp()  # saves a (160 bytes)
        b = a[:2] * a[2:]  # saves two views of a: the same storage
        return b @ conv_w.t()  # saves b (80 bytes) and the parameter (its own storage)

    _, saved = count_saved(forward, [x], [conv_w])
    assert saved.activation_bytes == 4 * 10 * F32 + 2 * 10 * F32
    assert saved.parameter_bytes == 3 * 10 * F32
    assert saved.input_bytes == 0  # exp saves its output, not x


def test_counting_leaves_the_graph_free_to_go():
    # sigmoid saves its own output; handed back as itself it would hold its grad_fn, a cycle no collector frees (a
    # training-step benchmark grew by 0.8 GiB per model that way)
    x = torch.randn(64, 64, requires_grad=True)
    gates: list[torch.Tensor] = []

    def forward() -> torch.Tensor:
        gates.append(torch.sigmoid(x))
        return gates[0] * 2

    out, saved = count_saved(forward, [x])
    assert saved.activation_bytes == 64 * 64 * 4  # the gate, saved by sigmoid (its output) and by nothing else
    alive = weakref.ref(gates.pop())
    del out  # no backward ran: the graph, and the gate it saved, go with the output
    gc.collect()
    assert alive() is None
    out, _ = count_saved(forward, [x])
    out.sum().backward()  # a counted graph still runs backward
    torch.testing.assert_close(x.grad, 2 * torch.sigmoid(x) * (1 - torch.sigmoid(x)))


def test_every_registered_channel_block_is_benchmarked_at_its_sites():
    bench = bench_blocks_table()
    channel = {s.name for s in registry.specs(registry.CHANNEL)}
    assert set(bench) == channel  # the zoo's blocks included, the extends blocks (CA_C2f) not
    assert bench["MHSA"][1] == ("P4", "P5")  # declared
    assert bench["EMA"][1] == ("P3", "P4", "P5")  # derived from its standard sites
    assert bench_levels_of(registry.get("CA_C2f")) == ()


def test_fine_tuned_sets_the_mix_of_a_block_and_of_the_blocks_inside_a_model():
    from yolo_attn import CBAM, SE

    se = fine_tuned(SE(16), 0.3)
    assert se.identity_mix.item() == pytest.approx(0.3)
    cbam = fine_tuned(CBAM(16), 0.3)  # the outer block only: its inner gates keep no mix
    assert cbam.identity_mix.item() == pytest.approx(0.3)
    assert all(getattr(m, "identity_mix", None) is None for m in cbam.modules() if m is not cbam)
    model = fine_tuned(nn.Sequential(nn.Conv2d(3, 16, 1), SE(16), nn.Sequential(SE(16))), 0.5)
    assert [m.identity_mix.item() for m in model.modules() if isinstance(m, SE)] == [0.5, 0.5]


def test_with_mix_keeps_the_weights_and_skips_zero_output_blocks():
    from yolo_attn import MHSA, SE

    se = SE(16)
    mixed = with_mix(se, 0.3)
    assert mixed.identity_mix.item() == pytest.approx(0.3) and se.identity_mix is None
    weights = mixed.state_dict()
    assert all(torch.equal(value, weights[key]) for key, value in se.state_dict().items())
    assert with_mix(MHSA(32), 0.3) is None


def test_block_training_rows_count_the_gate_exactly(weight_gate):
    rows = bench_blocks_train(["WeightGateTest"], imgsz=64, rounds=2, threads=1, batch=2)
    assert [r["level"] for r in rows] == ["P3", "P4", "P5"]
    for r in rows:
        channels = r["shape"][1]
        assert r["clone_bytes"] == 0
        assert r["scratch_bytes"] == channels * F32  # sigmoid(w) only; the input is not counted
        assert r["input_bytes"] == torch.Size(r["shape"]).numel() * F32
        assert r["tuned_bytes"] >= r["scratch_bytes"] and r["mixed"]
        assert r["scratch"] > 0 and r["tuned"] > 0


def _bench_script(repo: Path):
    spec = importlib.util.spec_from_file_location("bench_blocks_script", repo / "scripts" / "bench_blocks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.seam  # model.loss with the trainer's hyperparameters
def test_bench_blocks_train_end_to_end(repo, weight_gate, monkeypatch, capsys):
    argv = ["bench_blocks.py", "--train", "--blocks", "WeightGateTest", "SE", "--imgsz", "64", "--threads", "1"]
    argv += ["--train-rounds", "2", "--mix-rounds", "2", "--step-rounds", "2", "--step-imgsz", "64"]
    argv += ["--step-batch", "1", "--allocator", "default"]
    monkeypatch.setattr(sys, "argv", argv)
    _bench_script(repo).main()
    out = capsys.readouterr().out
    tables = [t for t in out.split("\n\n") if "| Block |" in t]
    assert len(tables) == 3  # block training, mix, whole-model steps
    for table in tables:
        lines = [line for line in table.splitlines() if line.startswith("| ")]
        names = [line.split("|")[1].strip() for line in lines[1:]]
        assert names == ["WeightGateTest", "SE"]
        assert len({line.count("|") for line in lines}) == 1  # every row has the header's columns
    train_rows = [line for line in tables[0].splitlines() if line.startswith("| WeightGateTest")]
    # saved beyond the input at P3: sigmoid(w) = 64 floats over (2, 64, 8, 8) floats
    assert f"{64 / (2 * 64 * 8 * 8):.2f} / " in train_rows[0].split("|")[5]
    assert "fine-tuned" in tables[2] and "saved for backward" in tables[2]


def test_bench_blocks_takes_a_block_without_a_plain_formulation():
    from yolo_attn.profiling.blocks import bench_blocks, blocks_table

    rows = bench_blocks(["SimAM"], imgsz=64, rounds=2, threads=1)
    assert [r["level"] for r in rows] == ["P3", "P4", "P5"]
    assert all("plain" not in r and "ours_vs_plain" not in r and r["ops_plain"] is None for r in rows)
    line = blocks_table(rows).splitlines()[2]
    assert line.startswith("| SimAM |") and line.endswith(" / – |")


def test_cost_table_counts_params_added_and_marks_what_it_did_not_measure():
    from yolo_attn.profiling.block_costs import block_costs, block_costs_table

    rows, skipped = block_costs(["ECA", "CA_C3k2"], imgsz=64, runtimes=())
    assert [r["block"] for r in rows] == ["ECA"] and list(skipped) == ["CA_C3k2"]  # no C3k2 row in yolov8n
    assert rows[0]["params_added"] == 3 + 5 + 5 + 5  # ECA's k at 64 / 128 / 256 / 256 channels (gamma=2, b=1)
    table = block_costs_table(rows, skipped)
    assert table.splitlines()[2].count("not measured") == 4 and "CA_C3k2: not measured" in table
