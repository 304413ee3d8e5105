"""compare --pretrained end to end for the inside placement: yolo11n against its C3k2_EMA twin, through the CLI."""

from __future__ import annotations

import copy
import subprocess

import pytest
import torch
from support.env import subprocess_env, yolo_attn_command
from ultralytics.nn.tasks import DetectionModel

from yolo_attn.experiments.files import load_runs
from yolo_attn.modules.random_weights import randomize_

pytestmark = pytest.mark.slow


def test_compare_yolo11n_against_its_c3k2_ema_twin_from_a_pretrained_baseline(tiny_data, tmp_path):
    model = randomize_(DetectionModel("yolo11n.yaml", nc=2, verbose=False), fan_in=True)
    weights = tmp_path / "base.pt"
    torch.save({"model": copy.deepcopy(model).half(), "train_args": {}}, weights)
    n_tensors = len(model.state_dict())
    env = subprocess_env() | {"YOLO_ATTN_CACHE_DIR": str(tmp_path / "cache")}
    grid = ["--models", "yolo11n.yaml", "yolo11n-ema-inside.yaml", "--seeds", "0", "--epochs", "1", "--imgsz", "64"]
    grid += ["--batch", "8", "--device", "cpu", "--latency-runs", "3", "--out", "cmp", "workers=0"]
    command = [*yolo_attn_command(), "compare", "--data", str(tiny_data), *grid, "--pretrained", str(weights)]
    proc = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    runs = {r["stem"]: r for r in load_runs(tmp_path / "cmp")}
    assert sorted(runs) == ["yolo11n", "yolo11n-ema-inside"]
    for run in runs.values():  # no row inserted: every tensor of the source lands under its own key
        transfer = run["transfer"]
        assert transfer["transferred"] == transfer["source_tensors"] == n_tensors, transfer["summary"]
        assert all(s == t for s, t in transfer["layer_map"])
    inside = runs["yolo11n-ema-inside"]
    assert inside["transfer"]["identity_start"] and set(inside["transfer"]["new_blocks"].values()) == {"EMA"}
    engagement = inside["engagement"]["blocks"]
    assert sorted(engagement) == sorted(inside["transfer"]["new_blocks"])  # the inner blocks engage, like rows
    assert all(".m." in path and path.endswith(".attn") for path in engagement)
    assert "| Engagement (mean [min, max]) |" in (tmp_path / "cmp" / "compare.md").read_text()
