"""compare --pretrained end to end on a plain YOLO-label data set (no coco_gt): 2 models x 2 seeds x 1 epoch."""

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


def random_baseline_checkpoint(path, nc: int = 2):
    """A yolov8n checkpoint with random (not zero) weights and BatchNorm statistics, as a stand-in for yolov8n.pt."""
    model = randomize_(DetectionModel("yolov8n.yaml", nc=nc, verbose=False), fan_in=True)
    torch.save({"model": copy.deepcopy(model).half(), "train_args": {}}, path)
    return path, len(model.state_dict())


def test_compare_from_pretrained_weights_on_a_plain_yolo_dataset(tiny_data, tmp_path, monkeypatch):
    assert "coco_gt" not in tiny_data.read_text()
    weights, n_tensors = random_baseline_checkpoint(tmp_path / "base.pt")
    env = subprocess_env() | {"YOLO_ATTN_CACHE_DIR": str(tmp_path / "cache")}
    grid = ["--models", "yolov8n.yaml", "yolov8n-cbam.yaml", "--seeds", "0", "1", "--epochs", "1", "--imgsz", "64"]
    grid += ["--batch", "8", "--device", "cpu", "--latency-runs", "3", "--out", "cmp", "workers=0"]
    command = [*yolo_attn_command(), "compare", "--data", str(tiny_data), *grid]

    proc = subprocess.run(
        [*command, "--pretrained", str(weights)], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    runs = load_runs(tmp_path / "cmp")
    cells = [(m, s) for m in ("yolov8n", "yolov8n-cbam") for s in (0, 1)]
    assert sorted((r["stem"], r["seed"]) for r in runs) == cells
    for run in runs:  # every model, the baseline included, started from every tensor of the same source
        transfer = run["transfer"]
        assert run["pretrained"] == str(weights.resolve())
        assert transfer["transferred"] == transfer["source_tensors"] == n_tensors, transfer["summary"]
        assert 0.0 <= run["metrics"]["coco"]["AP"] <= 1.0
    cbam = [r["transfer"] for r in runs if r["stem"] == "yolov8n-cbam"]
    assert all(t["identity_start"] and sorted(set(t["new_blocks"].values())) == ["CBAM"] for t in cbam)
    assert all(len(t["new_blocks"]) == 4 for t in cbam)
    report = (tmp_path / "cmp" / "compare.md").read_text()
    assert f"every model fine-tuned from `{weights.resolve()}`" in report
    assert "new attention blocks: mix without weight decay" in report  # the default protocol, stated
    for run in runs:  # engagement of the evaluated (EMA) weights on the val sample, for every block
        engagement = run["engagement"]
        assert engagement["weights"] == run["weights"] and engagement["imgsz"] == 64
        if run["stem"] == "yolov8n":
            assert engagement["blocks"] == {} and engagement["mean"] is None
            continue
        assert engagement["images"] == 4 and sorted(engagement["blocks"]) == sorted(run["transfer"]["new_blocks"])
        for block in engagement["blocks"].values():
            assert block["block"] == "CBAM" and isinstance(block["identity_mix"], float)
            assert 0.0 <= block["engagement"] < 1.0
    engaged = [b["engagement"] for r in runs for b in r["engagement"]["blocks"].values()]
    assert "| Engagement (mean [min, max]) |" in report
    assert f"{sum(engaged) / len(engaged):.2%} [{min(engaged):.2%}, {max(engaged):.2%}]" in report
    near = "**yolov8n-cbam**: the new blocks stayed within 1% of the identity"
    assert (near in report) == (sum(engaged) / len(engaged) < 0.01)  # the mean over blocks and seeds decides
    assert "compare: yolov8n-cbam_seed0: engagement of 4 attention block(s)" in proc.stdout  # each run's summary
    assert all((tmp_path / "cmp" / "train" / f"yolov8n-cbam_seed{s}" / "weights" / "best.attn_fp32.pt").is_file()
               for s in (0, 1))  # fmt: skip
    assert list((tmp_path / "cache").rglob("*.json")), "the COCO ground truth is built and cached outside the data"
    assert not list(tiny_data.parent.rglob("*.json"))

    other = subprocess.run([*command], cwd=tmp_path, env=env, capture_output=True, text=True)  # now from scratch
    assert other.returncode != 0
    assert "pretrained" in other.stdout + other.stderr
