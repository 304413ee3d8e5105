"""Placement grids in ``compare``: ``--base/--blocks/--at`` on the CLI and `PlacementGrid` in the Python API.

The fast tests run fake cells (`compare_fakes.fakes`); the slow one is a real 2 blocks x 2 sites x 2 seeds x 1 epoch
grid through the ``yolo-attn`` console script on a tiny data set (4 + 2 images at 32 px), then the same command
again (in process), which trains nothing: about 75-90 s on 2 shared CPU cores, both runs together.
"""

from __future__ import annotations

import csv
import subprocess
from pathlib import Path

import pytest
import yaml
from support.compare_fakes import FakeTrainer
from support.data import write_tiny_yolo_dataset
from support.env import subprocess_env, yolo_attn_command

from yolo_attn.cli import main
from yolo_attn.experiments.compare import PlacementGrid, compare, failed_cells
from yolo_attn.experiments.files import load_runs
from yolo_attn.experiments.plan import load_plan

LABELS = ["yolov8n", "yolov8n+SE@p5", "yolov8n+SE@p4+p5", "yolov8n+ECA@p5", "yolov8n+ECA@p4+p5"]


def test_python_api_grid_writes_its_yamls_in_the_folder_and_reports_the_heat_map(tmp_path, fakes):
    trainer = fakes(FakeTrainer())
    grid = PlacementGrid("yolov8n.yaml", ["SE"], ["p5", "p4+p5"])
    out = compare("data.yaml", grid, [0, 1], 1, out=tmp_path / "cmp", latency_runs=0)
    labels = LABELS[:3]
    assert sorted(p.name for p in (out / "models").iterdir()) == sorted(f"{label}.yaml" for label in labels)
    assert [Path(m).stem for m, _ in trainer.calls[::2]] == labels  # baseline first, then site by site
    plan = load_plan(out)
    assert plan.models == [str(out / "models" / f"{label}.yaml") for label in labels]
    assert plan.placement == [
        {"label": "yolov8n+SE@p5", "block": "SE", "site": "p5"},
        {"label": "yolov8n+SE@p4+p5", "block": "SE", "site": "p4+p5"},
    ]
    se = yaml.safe_load((out / "models" / "yolov8n+SE@p4+p5.yaml").read_text())
    assert sum(row[2] == "SE" for row in se["backbone"] + se["head"]) == 2  # the block at both sites

    text = (out / "compare.md").read_text()
    # fake AP = 0.1 * (1 + len(stem)) + 0.01 * seed: each variant's delta is 0.1 * (len(label) - len("yolov8n"))
    assert "| Δ mAP50-95 | p5 | p4+p5 |" in text and "| Δ mAP50 | p5 | p4+p5 |" in text
    assert "| SE | **+0.600** | **+0.900** |" in text  # seeds agree exactly: p 0, resolved under Holm (k=2)
    assert "![Δ mAP50-95 by block and site](placement_map50_95.png)" in text
    assert text.index("| Model |") < text.index("| Δ mAP50-95 | p5 |")  # beside (after) the main table
    for name in ("placement_map50_95.png", "placement_map50.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    again = fakes(FakeTrainer())
    compare("data.yaml", grid, [0, 1], 1, out=out, latency_runs=0)
    assert again.calls == []  # the same grid resumes: every cell was finished


def test_plain_grids_have_no_heat_map(tmp_path, fakes):
    fakes(FakeTrainer())
    out = compare("data.yaml", ["base.yaml", "attn.yaml"], [0], 1, out=tmp_path, latency_runs=0)
    assert "placement" not in (out / "plan.json").read_text() and not list(out.glob("placement_*.png"))
    assert "by block and site" not in (out / "compare.md").read_text()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--models", "a.yaml", "--base", "yolov8n.yaml"], "--models and --base are two ways to name the grid"),
        (["--base", "yolov8n.yaml", "--blocks", "SE"], "needs --base, --blocks and --at; missing --at"),
        (["--blocks", "SE", "--at", "p4"], "missing --base"),
        (["--base", "yolov8n.yaml", "--blocks", "NoSuchBlock", "--at", "p4"], "NoSuchBlock"),
        (["--base", "yolov8n.yaml", "--blocks", "SE", "--at", "p4", "p7"], "p7"),  # a site the base lacks
    ],
)
def test_grid_options_are_refused_when_mixed_or_incomplete(tmp_path, extra, message):
    with pytest.raises(SystemExit, match=message):
        main(["compare", "--data", "data.yaml", "--out", str(tmp_path / "cmp"), *extra])
    assert not (tmp_path / "cmp").exists()


def test_block_args_on_the_command_line(monkeypatch, tmp_path):
    seen = {}

    def fake_compare(data, models, seeds, epochs, **kwargs):
        seen["models"] = models
        raise SystemExit(0)

    monkeypatch.setattr("yolo_attn.experiments.compare.compare", fake_compare)
    with pytest.raises(SystemExit):
        main(["compare", "--data", "d.yaml", "--base", "yolov8n.yaml", "--blocks", "EMA", "CBAM:8,k=3", "--at", "p4"])
    assert seen["models"] == PlacementGrid("yolov8n.yaml", ["EMA", ("CBAM", [8], {"k": 3})], ["p4"])


@pytest.mark.slow
def test_placement_grid_end_to_end_through_the_cli_and_a_rerun_trains_nothing(tmp_path, monkeypatch):
    data = write_tiny_yolo_dataset(tmp_path / "data", n_train=4, n_val=2, imgsz=32)
    out = tmp_path / "cmp"
    args = ["compare", "--data", str(data), "--base", "yolov8n.yaml", "--blocks", "SE", "ECA", "--at", "p5", "p4+p5"]
    args += ["--seeds", "0", "1", "--epochs", "1", "--imgsz", "32", "--batch", "4", "--device", "cpu"]
    args += ["--latency-runs", "0", "--out", str(out), "workers=0"]
    proc = subprocess.run(
        [*yolo_attn_command(), *args], cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    runs = load_runs(out)
    assert sorted((r["stem"], r["seed"]) for r in runs) == sorted((m, s) for m in LABELS for s in (0, 1))
    assert sorted(p.name for p in (out / "models").iterdir()) == sorted(f"{label}.yaml" for label in LABELS)
    text = (out / "compare.md").read_text()
    assert "| Δ mAP50-95 | p5 | p4+p5 |" in text and "| SE |" in text and "| ECA |" in text
    assert (out / "placement_map50_95.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with (out / "compare.csv").open() as f:
        rows = {row["stem"]: row for row in csv.DictReader(f)}
    for label in LABELS[1:]:  # every variant has its verdict over the same family of comparisons
        assert rows[label]["delta_map50_95_resolved"] in {"True", "False"}
        assert rows[label]["delta_map50_95_holm_m"] == rows[LABELS[1]]["delta_map50_95_holm_m"]

    # the same command again (in this process, the same entry point): every cell is finished, nothing trains
    before = {p: p.stat().st_mtime_ns for p in [*(out / "runs").iterdir(), *(out / "models").iterdir()]}
    weights = {p: p.stat().st_mtime_ns for p in (out / "train").rglob("*.pt")}

    def no_training(*args, **kwargs):
        raise AssertionError("a finished cell was trained again")

    monkeypatch.setattr("yolo_attn.experiments.cell.train_and_evaluate", no_training)
    main(args)
    assert {p: p.stat().st_mtime_ns for p in before} == before  # no cell record, no YAML rewritten
    assert {p: p.stat().st_mtime_ns for p in (out / "train").rglob("*.pt")} == weights
    assert failed_cells(out) == [] and "10/10 runs finished" in (out / "compare.md").read_text()
