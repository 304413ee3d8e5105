"""Seeds that really differ: find seeds of one model whose runs trained identically.

Ultralytics has had releases where ``seed`` did not change a fine-tuned run (ultralytics/ultralytics#6820). Two runs
of one model with different seeds should differ from the first epoch on (another data order, another augmentation,
another initialisation of new layers). This module compares the first epoch's losses that each run wrote to its
``results.csv`` (every column whose name holds ``loss``: ``train/box_loss``, ``val/cls_loss``, ...): two seeds whose
values are all equal (to the 6 significant digits Ultralytics writes, which no two genuinely different runs share across
every loss) are reported as identical, and the report then states so in bold and claims no interval for that model.

Pure functions over run folders (``<out>/train/<stem>_seed<s>/results.csv``); nothing is imported from the rest of
``yolo_attn.experiments``.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from itertools import combinations
from pathlib import Path

RESULTS = "results.csv"


def first_epoch_losses(run_dir: str | Path) -> dict[str, float] | None:
    """Return the loss columns of the first row (epoch 1) of a run's ``results.csv``.

    Args:
        run_dir (str | Path): An Ultralytics run folder (holding ``results.csv``), or the CSV file itself.

    Returns:
        (dict[str, float] | None): Column name (stripped) -> value; None when there is no file, no row or no loss
            column (a run that did not finish an epoch cannot be compared).
    """
    path = Path(run_dir)
    path = path if path.suffix == ".csv" else path / RESULTS
    if not path.is_file():
        return None
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    if len(rows) < 2:
        return None
    header = [h.strip() for h in rows[0]]
    losses = {}
    for name, value in zip(header, rows[1], strict=False):
        if "loss" in name:
            try:
                losses[name] = float(value)
            except ValueError:
                return None
    return losses or None


def identical_seed_pairs(run_dirs: Mapping[int, str | Path]) -> list[tuple[int, int]]:
    """Return the pairs of seeds of one model whose first-epoch losses are all identical.

    Args:
        run_dirs (Mapping[int, str | Path]): Seed -> that seed's run folder (or ``results.csv``).

    Returns:
        (list[tuple[int, int]]): ``(seed_a, seed_b)`` with ``seed_a < seed_b``, sorted; runs without a first epoch
            are left out.
    """
    losses = {s: first_epoch_losses(p) for s, p in run_dirs.items()}
    known = sorted(s for s, v in losses.items() if v is not None)
    return [(a, b) for a, b in combinations(known, 2) if losses[a] == losses[b]]


def identical_seeds(runs: Mapping[str, Mapping[int, str | Path]]) -> dict[str, list[tuple[int, int]]]:
    """Run `identical_seed_pairs` for every model of a grid; only the models with identical seeds are returned.

    Args:
        runs (Mapping[str, Mapping[int, str | Path]]): Model name -> seed -> run folder.

    Returns:
        (dict[str, list[tuple[int, int]]]): Model name -> its identical pairs, in the order of ``runs``.
    """
    found = {model: identical_seed_pairs(dirs) for model, dirs in runs.items()}
    return {model: pairs for model, pairs in found.items() if pairs}


def identical_seeds_warning(model: str, pairs: Sequence[tuple[int, int]]) -> str:
    """Return the report's bold warning for a model whose seeds trained identically, or ``""`` for none.

    Args:
        model (str): The model's name in the report.
        pairs (Sequence[tuple[int, int]]): Its identical seed pairs (`identical_seed_pairs`).

    Returns:
        (str): One markdown paragraph.
    """
    if not pairs:
        return ""
    which = ", ".join(f"{a} and {b}" for a, b in pairs)
    plural = "s" if len(pairs) > 1 else ""
    return (
        f"**{model}: seed{plural} {which} trained identically (bit-identical first-epoch losses in results.csv), so "
        f"the seeds did not vary the run (as in ultralytics/ultralytics#6820). Its spread over seeds is not seed "
        f"noise and no 95% interval is claimed for it.**"
    )
