"""The comparison grid: resume after an interruption, settings guard, aggregation math, and one real CLI run."""

from __future__ import annotations

import csv
import json
import math
import subprocess
from pathlib import Path

import pytest
from conftest import MODEL_YAMLS, subprocess_env, yolo_attn_command

import yolo_attn.experiments.compare as compare_module
from yolo_attn.experiments.compare import compare, load_runs, write_json_atomic
from yolo_attn.experiments.report import is_noise, mean_std, paired_delta, summarize


def fake_metrics(model: str, seed: int) -> dict:
    """A deterministic stand-in for evaluate()'s result."""
    ap = 0.1 * (1 + len(Path(model).stem)) + 0.01 * seed
    return {"coco": {"AP": ap, "AP50": 2 * ap}, "ultralytics": {"mAP50-95": ap, "mAP50": 2 * ap}}


def fake_static_cost(model, imgsz=640):
    return {"params": 1000 * len(Path(model).stem), "gflops": 1.0, "gflops_torch": 1.0, "imgsz": imgsz}


def fake_latencies(models, imgsz=640, device="cpu", runs=50, warmup=10, threads=None):
    return {name: {"latency_ms": 2.0, "latency_p10_ms": 1.0, "latency_p90_ms": 3.0, "threads": 1} for name in models}


class FakeTrainer:
    """Records every (model, seed) it trains; raises on the call number ``fail_on`` (1-based) like a killed run."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.calls: list[tuple[str, int]] = []
        self.fail_on = fail_on

    def __call__(self, model: str, seed: int, settings: dict, device, out: Path) -> dict:
        self.calls.append((model, seed))
        if len(self.calls) == self.fail_on:
            raise KeyboardInterrupt("killed during training")
        return {"metrics": fake_metrics(model, seed), "weights": f"{model}-{seed}.pt", "train_dir": str(out)}


@pytest.fixture
def fakes(monkeypatch):
    monkeypatch.setattr("yolo_attn.profiling.cost.static_cost", fake_static_cost)
    monkeypatch.setattr("yolo_attn.profiling.cost.deployed_model", lambda model, device="cpu": model)
    monkeypatch.setattr("yolo_attn.profiling.cost.measure_latencies", fake_latencies)

    def install(trainer: FakeTrainer) -> FakeTrainer:
        monkeypatch.setattr(compare_module, "train_and_evaluate", trainer)
        return trainer

    return install


GRID = {"models": ["base.yaml", "attn.yaml"], "seeds": [0, 1], "epochs": 3}


def test_resume_runs_only_unfinished_and_leaves_finished_untouched(tmp_path, fakes):
    out = tmp_path / "cmp"
    first = fakes(FakeTrainer(fail_on=3))
    with pytest.raises(KeyboardInterrupt):
        compare("data.yaml", **GRID, out=out, device="cpu")
    assert first.calls == [("base.yaml", 0), ("base.yaml", 1), ("attn.yaml", 0)]
    finished = sorted((out / "runs").iterdir())
    assert [p.name for p in finished] == ["base_seed0.json", "base_seed1.json"]  # no temp file left by the crash
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in finished}
    assert "2/4 runs finished" in (out / "compare.md").read_text()  # the partial report of the finished runs
    assert not (out / "latency.json").exists()  # latency waits for the end, to measure all models together

    second = fakes(FakeTrainer())
    assert compare("data.yaml", **GRID, out=out, device="cpu") == out.resolve()
    assert second.calls == [("attn.yaml", 0), ("attn.yaml", 1)]
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in finished} == before
    assert sorted(p.name for p in (out / "runs").iterdir()) == [
        "attn_seed0.json",
        "attn_seed1.json",
        "base_seed0.json",
        "base_seed1.json",
    ]

    third = fakes(FakeTrainer())
    compare("data.yaml", **GRID, out=out, device="cpu")
    assert third.calls == []  # everything done: nothing retrained, the report is rewritten

    with (out / "compare.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [(r["stem"], r["seeds"]) for r in rows] == [("base", "0;1"), ("attn", "0;1")]
    assert float(rows[1]["map50_95_mean"]) == pytest.approx(0.505)  # fake AP of "attn": 0.5 + 0.01 * seed
    assert [float(r["latency_ms"]) for r in rows] == [2.0, 2.0]
    assert "4/4 runs finished" in (out / "compare.md").read_text()
    assert (out / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| attn |" in (out / "compare.md").read_text()


def test_run_record_holds_settings_and_metrics(tmp_path, fakes):
    fakes(FakeTrainer())
    out = compare("data.yaml", ["base.yaml"], [7], 2, imgsz=64, batch=4, out=tmp_path, train_overrides={"lr0": 0.02})
    (record,) = load_runs(out)
    assert record["stem"] == "base" and record["seed"] == 7
    assert record["settings"] == {
        "data": "data.yaml",
        "epochs": 2,
        "imgsz": 64,
        "batch": 4,
        "train_overrides": {"lr0": 0.02},
        "backend": "pycocotools",
    }
    assert record["metrics"] == fake_metrics("base.yaml", 7)


def test_resume_refuses_runs_made_with_other_settings(tmp_path, fakes):
    fakes(FakeTrainer())
    compare("data.yaml", **GRID, out=tmp_path)
    trainer = fakes(FakeTrainer())
    with pytest.raises(ValueError, match=r"epochs: 3 before, 4 now"):
        compare("data.yaml", models=GRID["models"], seeds=GRID["seeds"], epochs=4, out=tmp_path)
    with pytest.raises(ValueError, match=r"train_overrides"):
        compare("data.yaml", **GRID, out=tmp_path, train_overrides={"mosaic": 0.0})
    assert trainer.calls == []


def test_more_seeds_extend_an_existing_comparison(tmp_path, fakes):
    fakes(FakeTrainer())
    compare("data.yaml", **GRID, out=tmp_path)
    trainer = fakes(FakeTrainer())
    compare("data.yaml", models=GRID["models"], seeds=[0, 1, 2], epochs=GRID["epochs"], out=tmp_path)
    assert trainer.calls == [("base.yaml", 2), ("attn.yaml", 2)]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [({"epochs": 5}, "compare argument"), ({"seed": 1}, "sets seed itself"), ({"project": "x"}, "sets project")],
)
def test_overrides_that_compare_owns_are_refused(tmp_path, fakes, overrides, message):
    trainer = fakes(FakeTrainer())
    with pytest.raises(ValueError, match=message):
        compare("data.yaml", **GRID, out=tmp_path, train_overrides=overrides)
    assert trainer.calls == []


@pytest.mark.parametrize(
    ("models", "seeds", "message"),
    [(["a/m.yaml", "b/m.yaml"], [0], "repeated: m"), (["a.yaml"], [1, 1], "repeated: 1"), ([], [0], "at least one")],
)
def test_bad_grids_are_refused(tmp_path, fakes, models, seeds, message):
    fakes(FakeTrainer())
    with pytest.raises(ValueError, match=message):
        compare("data.yaml", models, seeds, 1, out=tmp_path)


def test_default_out_increments(tmp_path, fakes, monkeypatch):
    fakes(FakeTrainer())
    monkeypatch.chdir(tmp_path)
    first = compare("data.yaml", ["base.yaml"], [0], 1)
    second = compare("data.yaml", ["base.yaml"], [0], 1)
    root = tmp_path.resolve() / "runs" / "compare"
    assert (first, second) == (root / "exp", root / "exp2")


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "run.json"
    with pytest.raises(TypeError):
        write_json_atomic(target, {"bad": object()})
    assert list(tmp_path.iterdir()) == []
    write_json_atomic(target, {"ok": 1, "path": tmp_path})
    assert json.loads(target.read_text()) == {"ok": 1, "path": str(tmp_path)}


# ---- aggregation math, against numbers computed by hand ----


def runs_from(table: dict[str, dict[int, float]]) -> list[dict]:
    return [
        {"stem": stem, "seed": seed, "metrics": {"coco": {"AP": ap, "AP50": ap + 0.2}, "ultralytics": None}}
        for stem, by_seed in table.items()
        for seed, ap in by_seed.items()
    ]


def test_mean_and_sample_std():
    assert mean_std([0.30, 0.34, 0.32]) == pytest.approx((0.32, 0.02))  # sqrt((0.02^2 + 0.02^2 + 0) / 2)
    assert mean_std([0.5]) == (0.5, None)
    assert mean_std([]) == (None, None)


def test_noise_flag():
    assert is_noise(0.04, 0.01) is False
    assert is_noise(-0.04, 0.01) is False
    assert is_noise(0.01, 0.02) is True
    assert is_noise(0.0, 0.0) is True  # identical runs: no difference to report
    assert is_noise(0.04, None) is True  # one seed: no spread to judge with


def test_paired_delta_uses_common_seeds_only():
    delta = paired_delta({0: 0.35, 1: 0.37, 5: 0.9}, {0: 0.30, 1: 0.34, 2: 0.32})
    assert delta["per_seed"] == pytest.approx({0: 0.05, 1: 0.03})
    assert delta["n"] == 2
    assert delta["mean"] == pytest.approx(0.04)
    assert delta["std"] == pytest.approx(math.sqrt(2 * 0.01**2))  # deviations +-0.01, n - 1 = 1
    assert delta["noise"] is False


def test_summarize_against_hand_computed_numbers():
    runs = runs_from(
        {
            "base": {0: 0.30, 1: 0.34, 2: 0.32},
            "better": {0: 0.35, 1: 0.37, 2: 0.36},  # deltas 0.05, 0.03, 0.04: mean 0.04, std 0.01
            "noisy": {0: 0.33, 1: 0.32, 2: 0.33},  # deltas 0.03, -0.02, 0.01: mean 0.00667, std 0.02517
            "single": {1: 0.40},  # one paired seed: delta 0.06, no spread
        }
    )
    base, better, noisy, single = summarize(runs, ["base", "better", "noisy", "single"], {"base": {"params": 10}})
    assert base["baseline"] and base["seeds"] == [0, 1, 2] and base["params"] == 10
    assert (base["map50_95_mean"], base["map50_95_std"]) == pytest.approx((0.32, 0.02))
    assert "delta_map50_95_mean" not in base

    assert better["map50_95_mean"] == pytest.approx(0.36)
    assert better["map50_95_std"] == pytest.approx(0.01)
    assert better["delta_map50_95_mean"] == pytest.approx(0.04)
    assert better["delta_map50_95_std"] == pytest.approx(0.01)
    assert better["delta_map50_95_noise"] is False
    assert better["delta_map50_mean"] == pytest.approx(0.04)  # AP50 = AP + 0.2 for every run: same deltas

    assert noisy["delta_map50_95_mean"] == pytest.approx(0.02 / 3)
    assert noisy["delta_map50_95_std"] == pytest.approx(math.sqrt(0.0038 / 3 / 2))  # sum of squared deviations 0.0038/3
    assert noisy["delta_map50_95_noise"] is True

    assert single["seeds"] == [1]
    assert single["map50_95_std"] is None
    assert (single["delta_map50_95_mean"], single["delta_map50_95_n"]) == (pytest.approx(0.06), 1)
    assert single["delta_map50_95_std"] is None and single["delta_map50_95_noise"] is True
    assert single["params"] is None  # no cost given for it
    assert single["ultralytics_map50_95_mean"] is None  # evaluate() ran without Ultralytics' val


# ---- end to end through the command line (real training) ----


@pytest.fixture(scope="module")
def synthetic_subset(tmp_path_factory) -> Path:
    from yolo_attn.data.subset import build_subset
    from yolo_attn.data.synthetic import make_synthetic_coco

    root = tmp_path_factory.mktemp("synthetic")
    coco = make_synthetic_coco(root / "coco", n_train=16, n_val=8, imgsz=64)
    return build_subset(coco, None, None, None, 0, root / "subset")


@pytest.mark.slow
def test_cli_compare_end_to_end_and_resume(tmp_path, synthetic_subset):
    out = tmp_path / "cmp"
    command = [*yolo_attn_command(), "compare", "--data", str(synthetic_subset)]
    command += ["--models", "yolov8n.yaml", str(MODEL_YAMLS / "yolov8n-se.yaml"), "--seeds", "0", "1", "--epochs", "1"]
    command += ["--imgsz", "64", "--batch", "8", "--device", "cpu", "--out", str(out), "workers=0"]
    proc = subprocess.run(command, cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    records = load_runs(out)
    assert sorted((r["stem"], r["seed"]) for r in records) == [
        ("yolov8n", 0),
        ("yolov8n", 1),
        ("yolov8n-se", 0),
        ("yolov8n-se", 1),
    ]
    for record in records:
        assert record["settings"]["train_overrides"] == {"workers": 0}
        assert Path(record["weights"]).is_file()
        assert 0.0 <= record["metrics"]["coco"]["AP"] <= record["metrics"]["coco"]["AP50"] <= 1.0
    with (out / "compare.csv").open() as f:
        base, se = csv.DictReader(f)
    assert (base["stem"], se["stem"]) == ("yolov8n", "yolov8n-se")
    assert int(base["params"]) == 3_157_200 < int(se["params"])
    assert float(base["latency_ms"]) > 0 and base["device"] == "cpu"
    assert se["delta_map50_95_n"] == "2"
    table = (out / "compare.md").read_text()
    assert "| yolov8n (baseline) | 2 |" in table and "| yolov8n-se | 2 |" in table
    assert (out / "compare.png").stat().st_size > 0

    again = subprocess.run(command, cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (again.stdout + again.stderr).count("done before, skipped") == 4
    assert [r["finished_at"] for r in load_runs(out)] == [r["finished_at"] for r in records]


def test_demo_builds_data_and_drives_compare(tmp_path, monkeypatch):
    from yolo_attn.demo import run_demo

    seen = {}

    def fake_compare(data, models, seeds, epochs, **kwargs):
        seen.update(data=Path(data), models=models, seeds=seeds, epochs=epochs, **kwargs)
        kwargs["out"].mkdir(parents=True)
        (kwargs["out"] / "compare.md").write_text("| table |\n")
        return kwargs["out"]

    monkeypatch.setattr(compare_module, "compare", fake_compare)
    assert run_demo(tmp_path / "demo") == (tmp_path / "demo").resolve()
    assert seen["data"].is_file() and "coco_gt" in seen["data"].read_text()
    assert seen["models"][0] == "yolov8n.yaml"
    assert all(Path(m).parent.name == "model_yamls" for m in seen["models"][1:])  # YAMLs of this checkout
    assert len(seen["seeds"]) >= 2  # at least two seeds, or the table has no spread to judge deltas with
    assert seen["device"] == "cpu" and seen["train_overrides"]["workers"] == 0
