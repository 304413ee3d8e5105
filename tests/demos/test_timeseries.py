"""The sensor time-series system: network shapes, the seed attention variant against its formula, gradients, the data
generator, a short training run and the script's outputs."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from yolo_attn.demos.timeseries import (
    N_CLASSES,
    TimeSeriesAttentionNet,
    TrainSettings,
    make_activity_windows,
    train_run,
)
from yolo_attn.modules import SpatialAttention
from yolo_attn.modules.random_weights import randomize_

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "timeseries_attention.py"


def test_shapes_and_bad_input() -> None:
    net = TimeSeriesAttentionNet(n_classes=5, modal=6)
    assert net(torch.randn(3, 1, 128, 6)).shape == (3, 5)
    assert net(torch.randn(2, 1, 50, 6)).shape == (2, 5)  # any series length
    gates = net.eval().attention_weights(torch.randn(2, 1, 128, 6))
    assert [tuple(g.shape) for g in gates] == [(2, 1, 64, 6), (2, 1, 32, 6), (2, 1, 16, 6)]
    with pytest.raises(ValueError, match=r"expected input of shape \(B, 1, series, 6\)"):
        net(torch.randn(2, 6, 128))
    with pytest.raises(ValueError, match="odd kernel"):
        TimeSeriesAttentionNet(kernel=4)


def test_uses_the_seed_spatial_attention_variant() -> None:
    net = TimeSeriesAttentionNet()
    assert len(net.attention) == len(net.convs) == 3
    for gate, conv in zip(net.attention, net.convs, strict=True):
        assert isinstance(gate, SpatialAttention)
        assert gate.kernel_size == (3, 1) and gate.pool == "mean" and isinstance(gate.bn, nn.Identity)
        assert gate.conv.in_channels == 1  # channel mean only
        assert conv.kernel_size[1] == 1  # convolutions run along time only
    plain = TimeSeriesAttentionNet(attention=False)
    assert not any(isinstance(m, SpatialAttention) for m in plain.modules())


def test_forward_equals_an_independent_restatement() -> None:
    """Each stage: conv -> x * sigmoid(conv_(3,1)(mean_c(x)) + b) -> BN -> ReLU; pool to (1, modal); linear."""
    torch.manual_seed(0)
    net = TimeSeriesAttentionNet(n_classes=4, modal=6).eval()
    randomize_(net.attention)  # a fresh gate is flat 0.5, which hides mistakes
    x = torch.randn(2, 1, 40, 6)
    h, expected_gates = x, []
    for conv, gate, norm in zip(net.convs, net.attention, net.norms, strict=True):
        h = conv(h)
        a = torch.sigmoid(F.conv2d(h.mean(1, keepdim=True), gate.conv.weight, gate.conv.bias, padding=(1, 0)))
        expected_gates.append(a)
        h = torch.relu(norm(h * a))
    expected = net.fc(h.mean(2).flatten(1))  # adaptive pool to (1, modal) = the mean over time
    with torch.no_grad():
        torch.testing.assert_close(net(x), expected)
        for got, want in zip(net.attention_weights(x), expected_gates, strict=True):
            torch.testing.assert_close(got, want)


def test_shared_layers_start_equal_with_and_without_attention() -> None:
    torch.manual_seed(3)
    with_attention = TimeSeriesAttentionNet(attention=True).state_dict()
    torch.manual_seed(3)
    without = TimeSeriesAttentionNet(attention=False).state_dict()
    assert set(without) < set(with_attention)
    for key, value in without.items():
        torch.testing.assert_close(with_attention[key], value)


def test_attention_receives_gradients() -> None:
    torch.manual_seed(0)
    net = TimeSeriesAttentionNet()
    loss = F.cross_entropy(net(torch.randn(8, 1, 64, 6)), torch.arange(8) % N_CLASSES)
    loss.backward()
    for gate in net.attention:
        assert gate.conv.weight.grad is not None and gate.conv.weight.grad.abs().sum() > 0
        assert gate.conv.bias.grad.abs() > 0


def test_data_is_deterministic_and_balanced() -> None:
    x, y = make_activity_windows(40, seed=1)
    x2, y2 = make_activity_windows(40, seed=1)
    assert x.shape == (40, 1, 128, 6) and x.dtype == torch.float32 and y.dtype == torch.int64
    torch.testing.assert_close(x, x2)
    assert torch.equal(y, y2)
    assert torch.bincount(y, minlength=N_CLASSES).tolist() == [10] * N_CLASSES
    assert not torch.equal(x, make_activity_windows(40, seed=2)[0])
    with pytest.raises(ValueError, match="series=16"):
        make_activity_windows(4, seed=0, series=16)


@pytest.mark.slow
def test_short_training_learns_and_writes_its_csv(tmp_path: Path) -> None:
    torch.manual_seed(0)
    data = (*make_activity_windows(192, seed=0), *make_activity_windows(96, seed=1))
    settings = TrainSettings(epochs=4, batch=32, lr=3e-3)
    _, history = train_run(True, 0, settings, data, tmp_path / "run.csv")
    with (tmp_path / "run.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert set(rows[0]) == {"epoch", "train_loss", "train_acc", "val_loss", "val_acc"}
    assert history[-1]["train_loss"] < 0.9 * history[0]["train_loss"]
    assert history[-1]["train_acc"] > 2 / N_CLASSES  # twice chance on the windows it trained on


@pytest.mark.slow
def test_script_writes_csvs_table_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    spec = importlib.util.spec_from_file_location("timeseries_attention", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    threads = torch.get_num_threads()
    try:
        args = ["--epochs", "1", "--seeds", "0", "1", "--n-train", "64", "--n-val", "32", "--out", str(tmp_path)]
        assert script.main(args) == 0
    finally:
        torch.set_num_threads(threads)
    names = {p.name for p in tmp_path.iterdir()}
    expected = {f"{m}_seed{s}.csv" for m in ("plain", "attention") for s in (0, 1)}
    assert expected | {"summary.md", "attention_over_time.png"} <= names
    table = (tmp_path / "summary.md").read_text()
    assert "| plain | 2 |" in table and "| attention | 2 |" in table
    assert "| model | seeds | val acc (%) | Δ vs plain (paired, %) |" in capsys.readouterr().out
