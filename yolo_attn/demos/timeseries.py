"""Spatial attention on sensor time series: the network, a synthetic activity data set, and a with/without comparison.

The network takes windows of shape ``(B, 1, series, modal)``: time steps by sensor channels (e.g. 3 accelerometer and 3
gyroscope axes). Each stage is ``Conv2d((k, 1)) -> SpatialAttention -> BatchNorm2d -> ReLU``, where the attention is
the seed variant of our CBAM spatial gate, ``SpatialAttention(c, k=(3, 1), pool="mean", bn=False)``: the channel mean,
a (3, 1) convolution along time only, sigmoid, multiply. Convolutions run along time only, so each sensor channel keeps
its own column until the end: adaptive average pooling to ``(1, modal)``, then one linear classifier.

The data: every window is a gait-like oscillation on all channels with noise, plus distractors (smooth bumps, and the
class shapes on a single channel), plus ONE short event (16 steps of 128) on all three channels of a sensor group that
alone decides the class: its shape (a spike train or a sine burst) times the group (channels 0-2 or 3-5). Where the
event is, is random; a model has to find it in time.

``run_comparison`` trains the network with and without attention over seeds with identical settings (same data, same
batches, the same initial weights for every shared layer: the attention blocks are built last) and writes one CSV per
run with the loss and accuracy of every epoch. The training loop is a plain PyTorch loop on purpose.

Examples:
    >>> net = TimeSeriesAttentionNet(n_classes=4, modal=6)
    >>> net(torch.randn(8, 1, 128, 6)).shape
    torch.Size([8, 4])
"""

from __future__ import annotations

import csv
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from yolo_attn.modules.cbam import SpatialAttention

SERIES, MODAL, N_CLASSES = 128, 6, 4
EVENT_LENGTH = 16
CLASS_NAMES = ("spikes@acc", "burst@acc", "spikes@gyro", "burst@gyro")  # event shape @ sensor group
SENSOR_GROUPS = ((0, 1, 2), (3, 4, 5))


class TimeSeriesAttentionNet(nn.Module):
    """A small CNN for sensor windows, with the seed spatial-attention gate after each convolution.

    Stage ``s``: ``Conv2d(c_in, c_s, (k, 1), stride (2, 1)) -> SpatialAttention(c_s, k=(3, 1), pool="mean", bn=False)
    -> BatchNorm2d(c_s) -> ReLU``; the attention is left out (identity) when ``attention=False``. Then
    ``AdaptiveAvgPool2d((1, modal))``, flatten and ``Linear(c_last * modal, n_classes)``.

    The attention blocks are constructed after every other layer, so a network with and one without attention built
    under the same torch seed start from the same weights in every layer they share.

    Attributes:
        convs (nn.ModuleList): One convolution per stage, kernel (k, 1) along time.
        norms (nn.ModuleList): One BatchNorm2d per stage.
        attention (nn.ModuleList): One `SpatialAttention` per stage, or ``nn.Identity`` without attention.
        pool (nn.AdaptiveAvgPool2d): Pooling to (1, modal).
        fc (nn.Linear): The classifier.
    """

    def __init__(
        self,
        n_classes: int = N_CLASSES,
        modal: int = MODAL,
        channels: Sequence[int] = (16, 32, 32),
        kernel: int = 5,
        attention: bool = True,
    ) -> None:
        """Initialize the network.

        Args:
            n_classes (int): Number of classes.
            modal (int): Number of sensor channels (the input's last dimension).
            channels (Sequence[int]): Output channels of each stage.
            kernel (int): Odd temporal kernel size of the stage convolutions.
            attention (bool): Whether to put the spatial-attention gate after each convolution.
        """
        super().__init__()
        if n_classes < 2 or modal < 1 or not channels or kernel < 1 or kernel % 2 == 0:
            raise ValueError(
                f"TimeSeriesAttentionNet: got n_classes={n_classes}, modal={modal}, channels={tuple(channels)}, "
                f"kernel={kernel}; expected n_classes >= 2, modal >= 1, at least one stage and an odd kernel"
            )
        widths = [1, *channels]
        self.modal = modal
        self.convs = nn.ModuleList(
            nn.Conv2d(c_in, c_out, (kernel, 1), stride=(2, 1), padding=(kernel // 2, 0), bias=False)
            for c_in, c_out in itertools.pairwise(widths)
        )
        self.norms = nn.ModuleList(nn.BatchNorm2d(c) for c in channels)
        self.pool = nn.AdaptiveAvgPool2d((1, modal))
        self.fc = nn.Linear(channels[-1] * modal, n_classes)
        # Built last, so that the layers above get the same initial weights with and without attention.
        self.attention = nn.ModuleList(
            SpatialAttention(c, k=(3, 1), pool="mean", bn=False) if attention else nn.Identity() for c in channels
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Classify windows.

        Args:
            x (torch.Tensor): Windows of shape (B, 1, series, modal).

        Returns:
            (torch.Tensor): Logits of shape (B, n_classes).
        """
        if x.ndim != 4 or x.shape[1] != 1 or x.shape[3] != self.modal:
            raise ValueError(f"expected input of shape (B, 1, series, {self.modal}), got {tuple(x.shape)}")
        for conv, gate, norm in zip(self.convs, self.attention, self.norms, strict=True):
            x = torch.relu(norm(gate(conv(x))))
        return self.fc(self.pool(x).flatten(1))

    @torch.no_grad()
    def attention_weights(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Return each stage's gate for a batch (empty without attention); runs in the current train/eval mode.

        Args:
            x (torch.Tensor): Windows of shape (B, 1, series, modal).

        Returns:
            (list[torch.Tensor]): Per stage, the gate of shape (B, 1, series / 2**s, modal), values in (0, 1).
        """
        gates = []
        for conv, gate, norm in zip(self.convs, self.attention, self.norms, strict=True):
            x = conv(x)
            if isinstance(gate, SpatialAttention):
                gates.append(gate.gate(x))
            x = torch.relu(norm(gate(x)))
        return gates


def _event(shape: str, length: int) -> np.ndarray:
    """One event signature: ``"spikes"`` (three sharp peaks) or ``"burst"`` (two sine cycles), peak 1."""
    t = np.arange(length, dtype=np.float32)
    if shape == "spikes":
        return np.maximum(0.0, 1.0 - np.abs((t % (length / 3)) - length / 6) / 1.5).astype(np.float32)
    return np.sin(2 * math.pi * 2 * t / length).astype(np.float32)


def make_activity_windows(
    n: int, seed: int, series: int = SERIES, amplitude: float = 1.0, noise: float = 0.5
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw synthetic 6-channel activity windows whose class is decided by one short event.

    Each window: per channel a gait-like sine (period 12-40 steps, random phase, amplitude 0.6) plus Gaussian noise;
    1-3 distracting Gaussian bumps (width 2-6 steps, amplitude +-amplitude, any channel, any time); 1-2 distracting
    events, a class's shape on one channel only; and the one real event of ``EVENT_LENGTH`` steps at a random time on
    all three channels of one sensor group. The class is
    ``2 * group + (shape == "burst")``, see ``CLASS_NAMES``. Classes are balanced (window i has class i % 4, then the
    order is shuffled). The same ``(n, seed, ...)`` gives identical tensors.

    Args:
        n (int): Number of windows.
        seed (int): Seed of the generator.
        series (int): Time steps per window (>= 2 * EVENT_LENGTH).
        amplitude (float): Peak amplitude of the event (per-channel gain 0.7-1.3 on top) and of the distractors.
        noise (float): Standard deviation of the Gaussian noise.

    Returns:
        windows (torch.Tensor): Shape (n, 1, series, 6), float32.
        labels (torch.Tensor): Shape (n,), int64 in [0, 4).
    """
    if n < 1 or series < 2 * EVENT_LENGTH:
        raise ValueError(f"make_activity_windows: n={n} must be >= 1 and series={series} >= {2 * EVENT_LENGTH}")
    rng = np.random.default_rng(seed)
    t = np.arange(series, dtype=np.float32)[:, None]
    labels = rng.permutation(np.arange(n) % N_CLASSES)
    windows = np.empty((n, series, MODAL), dtype=np.float32)
    for i, label in enumerate(labels):
        period = rng.uniform(12, 40, size=MODAL)
        x = 0.6 * np.sin(2 * math.pi * t / period + rng.uniform(0, 2 * math.pi, size=MODAL))
        x += rng.normal(0.0, noise, size=(series, MODAL))
        for _ in range(int(rng.integers(1, 4))):  # distractors: smooth bumps, the wrong shape for any class
            center, width, channel = rng.uniform(0, series), rng.uniform(2, 6), int(rng.integers(MODAL))
            x[:, channel] += rng.choice((-1, 1)) * amplitude * np.exp(-0.5 * ((t[:, 0] - center) / width) ** 2)
        for _ in range(int(rng.integers(1, 3))):  # distractors: a class's shape on ONE channel, not a whole group
            start, channel = int(rng.integers(0, series - EVENT_LENGTH)), int(rng.integers(MODAL))
            shape = "burst" if rng.integers(2) else "spikes"
            x[start : start + EVENT_LENGTH, channel] += amplitude * rng.uniform(0.7, 1.3) * _event(shape, EVENT_LENGTH)
        group, shape = divmod(int(label), 2)
        start = int(rng.integers(4, series - EVENT_LENGTH - 4))
        event = _event("burst" if shape else "spikes", EVENT_LENGTH)
        for channel in SENSOR_GROUPS[group]:
            x[start : start + EVENT_LENGTH, channel] += amplitude * rng.uniform(0.7, 1.3) * event
        windows[i] = x
    return torch.from_numpy(windows).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))


@dataclass(frozen=True)
class TrainSettings:
    """Settings shared by every run of a comparison.

    Attributes:
        epochs (int): Passes over the training windows.
        batch (int): Batch size.
        lr (float): Initial Adam learning rate, annealed to zero over the epochs (cosine, stepped per epoch).
        n_train (int): Training windows.
        n_val (int): Validation windows.
        data_seed (int): Seed of the data set (the same for every run).
    """

    epochs: int = 10
    batch: int = 64
    lr: float = 2e-3
    n_train: int = 1000
    n_val: int = 500
    data_seed: int = 0


def evaluate(model: nn.Module, windows: torch.Tensor, labels: torch.Tensor, batch: int = 256) -> tuple[float, float]:
    """Return the mean cross-entropy loss and the accuracy of ``model`` (put in eval mode) on windows.

    Args:
        model (nn.Module): The classifier.
        windows (torch.Tensor): Shape (N, 1, series, modal).
        labels (torch.Tensor): Shape (N,).
        batch (int): Windows per forward pass.

    Returns:
        (tuple[float, float]): ``(loss, accuracy)``, accuracy in [0, 1].
    """
    model.eval()
    loss, correct = 0.0, 0
    with torch.no_grad():
        for x, y in zip(windows.split(batch), labels.split(batch), strict=True):
            logits = model(x)
            loss += nn.functional.cross_entropy(logits, y, reduction="sum").item()
            correct += int((logits.argmax(1) == y).sum())
    return loss / len(labels), correct / len(labels)


def train_run(
    attention: bool,
    seed: int,
    settings: TrainSettings,
    data: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
    csv_path: Path | None = None,
) -> tuple[TimeSeriesAttentionNet, list[dict[str, float]]]:
    """Train one network with a plain loop and log every epoch.

    Args:
        attention (bool): With or without the spatial-attention gates.
        seed (int): Seed of the initial weights and of the batch order.
        settings (TrainSettings): Shared settings.
        data (tuple): ``(x_train, y_train, x_val, y_val)``.
        csv_path (Path | None): Where to write the per-epoch CSV (columns ``epoch, train_loss, train_acc, val_loss,
            val_acc``); None writes nothing.

    Returns:
        model (TimeSeriesAttentionNet): The trained network (eval mode).
        history (list[dict[str, float]]): One row per epoch, the CSV's columns.
    """
    x_train, y_train, x_val, y_val = data
    torch.manual_seed(seed)
    model = TimeSeriesAttentionNet(modal=x_train.shape[-1], attention=attention)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=settings.epochs)
    order = torch.Generator().manual_seed(seed)
    history = []
    for epoch in range(1, settings.epochs + 1):
        model.train()
        loss_sum, correct = 0.0, 0
        for idx in torch.randperm(len(y_train), generator=order).split(settings.batch):
            x, y = x_train[idx], y_train[idx]
            logits = model(x)
            loss = nn.functional.cross_entropy(logits, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss_sum += loss.item() * len(y)
            correct += int((logits.argmax(1) == y).sum())
        schedule.step()
        val_loss, val_acc = evaluate(model, x_val, y_val)
        row = {
            "epoch": epoch,
            "train_loss": loss_sum / len(y_train),
            "train_acc": correct / len(y_train),
            "val_loss": val_loss,
            "val_acc": val_acc,
        }
        history.append(row)
        if csv_path is not None:
            _write_csv(csv_path, history)
    model.eval()
    return model, history


def _write_csv(path: Path, rows: list[dict[str, float]]) -> None:
    """Write rows (all with the same keys) as a CSV file, rounding floats to 6 digits."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({k: round(v, 6) if isinstance(v, float) else v for k, v in row.items()} for row in rows)


def summary_table(final_acc: dict[str, dict[int, float]]) -> str:
    """Format final val accuracy as mean ± std per model and the paired delta of attention vs plain.

    Args:
        final_acc (dict[str, dict[int, float]]): ``{"plain": {seed: acc}, "attention": {seed: acc}}``.

    Returns:
        (str): A markdown table (accuracy in %), the delta flagged *noise* when its 95% Student-t interval over seeds
            contains 0 or only one seed ran (see ``yolo_attn.experiments.stats.paired_delta``).
    """
    from yolo_attn.experiments.stats import mean_std, paired_delta

    def pm(mean: float | None, std: float | None, sign: str = "") -> str:
        return "-" if mean is None else f"{100 * mean:{sign}.2f}" + ("" if std is None else f" ± {100 * std:.2f}")

    lines = ["| model | seeds | val acc (%) | Δ vs plain (paired, %) |", "| --- | ---: | ---: | ---: |"]
    for name in ("plain", "attention"):
        values = final_acc.get(name, {})
        mean, std = mean_std(list(values.values()))
        delta = "-"
        if name != "plain":
            d = paired_delta(values, final_acc.get("plain", {}))
            delta = pm(d["mean"], d["std"], "+") + (" *noise*" if d["noise"] else "")
        lines.append(f"| {name} | {len(values)} | {pm(mean, std)} | {delta} |")
    return "\n".join(lines)


def plot_attention_over_time(
    model: TimeSeriesAttentionNet, windows: torch.Tensor, labels: torch.Tensor, path: Path
) -> Path:
    """Plot a few windows with each stage's attention gate over time (one heat strip per stage, sensors as rows).

    Args:
        model (TimeSeriesAttentionNet): A network with attention.
        windows (torch.Tensor): Shape (K, 1, series, modal), a handful of windows.
        labels (torch.Tensor): Shape (K,).
        path (Path): PNG file to write.

    Returns:
        (Path): ``path``.
    """
    from matplotlib.figure import Figure

    model.eval()
    gates = model.attention_weights(windows)
    if not gates:
        raise ValueError("plot_attention_over_time needs a network built with attention=True")
    k, series = len(windows), windows.shape[2]
    fig = Figure(figsize=(4 * k, 2 + 1.2 * len(gates)), layout="constrained")
    axes = fig.subplots(1 + len(gates), k, squeeze=False, sharex=True)
    for j in range(k):
        signal = windows[j, 0].numpy()
        for c in range(signal.shape[1]):
            axes[0, j].plot(signal[:, c] - 4 * c, lw=0.8)
        axes[0, j].set_title(f"class {CLASS_NAMES[int(labels[j])]}", fontsize=9)
        axes[0, j].set_yticks([-4 * c for c in range(signal.shape[1])], [f"ch{c}" for c in range(signal.shape[1])])
        for s, gate in enumerate(gates):
            strip = gate[j, 0].T.numpy()  # (modal, series / 2**s)
            image = axes[1 + s, j].imshow(
                strip, aspect="auto", cmap="magma", extent=(0, series, strip.shape[0] - 0.5, -0.5)
            )
            axes[1 + s, j].set_ylabel(f"stage {s + 1}\ngate", fontsize=8)
            fig.colorbar(image, ax=axes[1 + s, j], fraction=0.04, pad=0.01)
    axes[-1, 0].set_xlabel("time step")
    fig.suptitle("Spatial-attention gate over time (rows: sensor channels)", fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    return path


def run_comparison(
    out: str | Path, seeds: Sequence[int] = (0, 1, 2), settings: TrainSettings | None = None
) -> tuple[str, dict[str, dict[int, float]]]:
    """Train the network with and without attention for each seed and write CSVs, a summary and an attention plot.

    Output folder layout::

        plain_seed0.csv, attention_seed0.csv, ...   per-epoch train/val loss and accuracy
        summary.md                                  the table of ``summary_table``
        attention_over_time.png                     gates of the first seed's attention network, one window per class

    Args:
        out (str | Path): Output folder.
        seeds (Sequence[int]): Seeds; each trains one plain and one attention network.
        settings (TrainSettings | None): Shared settings; None takes the defaults.

    Returns:
        table (str): The markdown summary table.
        final_acc (dict[str, dict[int, float]]): Last-epoch val accuracy per model and seed.
    """
    settings = settings or TrainSettings()
    if not seeds:
        raise ValueError("run_comparison: expected at least one seed")
    out = Path(out)
    x_train, y_train = make_activity_windows(settings.n_train, seed=settings.data_seed)
    x_val, y_val = make_activity_windows(settings.n_val, seed=settings.data_seed + 10_000)
    data = (x_train, y_train, x_val, y_val)
    final: dict[str, dict[int, float]] = {"plain": {}, "attention": {}}
    first_attention_model = None
    for seed in seeds:
        for name in ("plain", "attention"):
            model, history = train_run(name == "attention", seed, settings, data, out / f"{name}_seed{seed}.csv")
            final[name][seed] = history[-1]["val_acc"]
            if name == "attention" and first_attention_model is None:
                first_attention_model = model
            print(f"{name:9s} seed {seed}: val acc {100 * history[-1]['val_acc']:.2f}% after {settings.epochs} epochs")
    table = summary_table(final)
    (out / "summary.md").write_text(table + "\n")
    picks = torch.stack([torch.nonzero(y_val == c)[0, 0] for c in range(N_CLASSES) if (y_val == c).any()])
    plot_attention_over_time(first_attention_model, x_val[picks], y_val[picks], out / "attention_over_time.png")
    return table, final
