"""The comparison grid: plan, cells, resume, failures, settings guard, a pure report, and the statistics by hand."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
from support.compare_fakes import GRID, FakeTrainer, fake_metrics

import yolo_attn.experiments.cell as cell_module
import yolo_attn.experiments.compare as compare_module
import yolo_attn.profiling.cost as cost_module
import yolo_attn.profiling.runtime as runtime_module
from yolo_attn.experiments.compare import compare, failed_cells, refresh_report
from yolo_attn.experiments.executors import Slot, child_env, device_slots
from yolo_attn.experiments.files import load_records, load_runs, write_json_atomic
from yolo_attn.experiments.plan import load_plan
from yolo_attn.experiments.report import summarize, write_report
from yolo_attn.experiments.stats import (
    interval95,
    is_noise,
    mean_std,
    paired_delta,
    seeds_to_resolve,
    t_quantile,
    t_two_sided_probability,
)


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
    assert record["stem"] == "base" and record["seed"] == 7 and record["status"] == "done"
    assert record["settings"] == {
        "data": "data.yaml",
        "epochs": 2,
        "imgsz": 64,
        "batch": 4,
        "train_overrides": {"lr0": 0.02},
        "backend": "pycocotools",
        "pretrained": None,
        "task": "detect",
        "protocol": {
            "attn_mix_decay": False,
            "attn_lr_mult": 30.0,
            "attn_warmup_epochs": 0,
            "attn_mix_init": 0.0,
            "attn_mix_lr": 0.03,
        },
    }
    assert record["metrics"] == fake_metrics("base.yaml", 7)
    assert record["started"] <= record["ended"] and isinstance(record["pid"], int)


def test_plan_is_written_at_start_and_other_settings_are_refused(tmp_path, fakes):
    weights = tmp_path / "source.pt"
    weights.write_bytes(b"not read: compare only records which weights it was given")
    trainer = fakes(FakeTrainer(fail_on=1))
    with pytest.raises(KeyboardInterrupt):  # killed in the very first cell: no run JSON, but the plan is there
        compare("data.yaml", **GRID, out=tmp_path, pretrained=weights, device="cpu")
    assert trainer.calls == [("base.yaml", 0)] and not list((tmp_path / "runs").iterdir())
    plan = load_plan(tmp_path)
    assert (plan.models, plan.seeds, plan.device) == (GRID["models"], GRID["seeds"], "cpu")
    assert plan.settings["pretrained"] == str(weights.resolve()) and plan.settings["epochs"] == 3

    trainer = fakes(FakeTrainer())
    with pytest.raises(ValueError, match=r"pretrained: '.*source.pt' before, None now"):
        compare("data.yaml", **GRID, out=tmp_path)
    with pytest.raises(ValueError, match=r"pretrained: .* before, 'other.pt' now"):
        compare("data.yaml", **GRID, out=tmp_path, pretrained="other.pt")
    with pytest.raises(ValueError, match=r"epochs: 3 before, 4 now"):
        compare("data.yaml", models=GRID["models"], seeds=GRID["seeds"], epochs=4, out=tmp_path, pretrained=weights)
    assert trainer.calls == []
    compare("data.yaml", **GRID, out=tmp_path, pretrained=weights)  # the same settings go on
    assert len(trainer.calls) == 4
    assert {r["pretrained"] for r in load_runs(tmp_path)} == {str(weights.resolve())}
    assert f"fine-tuned from `{weights.resolve()}`" in (tmp_path / "compare.md").read_text()


def test_resume_refuses_runs_made_with_other_settings(tmp_path, fakes):
    fakes(FakeTrainer())
    compare("data.yaml", **GRID, out=tmp_path)
    (tmp_path / "plan.json").unlink()  # a folder from before plan.json: the cells' own records still guard it
    trainer = fakes(FakeTrainer())
    with pytest.raises(ValueError, match=r"attn_seed0.json was made with other settings \(epochs: 3 before, 4 now"):
        compare("data.yaml", models=GRID["models"], seeds=GRID["seeds"], epochs=4, out=tmp_path)
    with pytest.raises(ValueError, match=r"train_overrides"):
        compare("data.yaml", **GRID, out=tmp_path, train_overrides={"mosaic": 0.0})
    assert trainer.calls == []


def test_failing_cell_is_recorded_the_others_finish_and_a_rerun_redoes_it(tmp_path, fakes):
    trainer = fakes(FakeTrainer(fail_on=2, error=RuntimeError("CUDA out of memory")))
    compare("data.yaml", **GRID, out=tmp_path)
    assert len(trainer.calls) == 4  # the failure did not stop the grid
    records = {f"{r['stem']}_seed{r['seed']}": r for r in load_records(tmp_path)}
    failed = records["base_seed1"]
    assert failed["status"] == "failed" and failed["error"] == "RuntimeError: CUDA out of memory"
    assert "Traceback" in failed["traceback"] and "metrics" not in failed
    assert [k for k, r in records.items() if r["status"] == "done"] == ["attn_seed0", "attn_seed1", "base_seed0"]
    assert failed_cells(tmp_path) == ["base_seed1"]
    table = (tmp_path / "compare.md").read_text()
    assert "3/4 runs finished, 1 failed (base_seed1" in table
    assert "| base (baseline) | 1 |" in table

    rerun = fakes(FakeTrainer())
    compare("data.yaml", **GRID, out=tmp_path)
    assert rerun.calls == [("base.yaml", 1)]
    assert failed_cells(tmp_path) == [] and "4/4 runs finished." in (tmp_path / "compare.md").read_text()


def test_report_is_a_pure_function_of_the_files(tmp_path, fakes):
    fakes(FakeTrainer(fail_on=4, error=RuntimeError("boom")))
    compare("data.yaml", models=[*GRID["models"], "third.yaml"], seeds=[0, 1], epochs=1, out=tmp_path)
    (tmp_path / "runs" / "third_seed1.json").unlink()  # a partial grid: one missing, one failed cell
    names = ("compare.md", "compare.csv", "compare.png")
    for name in names:
        (tmp_path / name).unlink()
    inputs = {p: p.read_bytes() for p in tmp_path.rglob("*.json")}
    write_report(tmp_path)
    first = {name: (tmp_path / name).read_bytes() for name in names}
    assert "4/6 runs finished, 1 failed (attn_seed1" in first["compare.md"].decode()
    write_report(tmp_path)
    assert {name: (tmp_path / name).read_bytes() for name in names} == first
    assert {p: p.read_bytes() for p in tmp_path.rglob("*.json")} == inputs  # it wrote nothing else

    refresh_report(tmp_path)  # the --report command: costs already measured, so the same tables again
    assert (tmp_path / "compare.md").read_bytes() == first["compare.md"]
    assert (tmp_path / "compare.csv").read_bytes() == first["compare.csv"]


def test_more_seeds_extend_an_existing_comparison(tmp_path, fakes):
    fakes(FakeTrainer())
    compare("data.yaml", **GRID, out=tmp_path)
    trainer = fakes(FakeTrainer())
    compare("data.yaml", models=GRID["models"], seeds=[0, 1, 2], epochs=GRID["epochs"], out=tmp_path)
    assert trainer.calls == [("base.yaml", 2), ("attn.yaml", 2)]
    assert load_plan(tmp_path).seeds == [0, 1, 2]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"epochs": 5}, "compare argument"),
        ({"pretrained": "x.pt"}, "compare argument"),
        ({"seed": 1}, "sets seed itself"),
        ({"project": "x"}, "sets project"),
    ],
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


# ---- where cells run: device slots of --parallel (the device count mocked, nothing trained) ----


def test_parallel_slots_pin_one_gpu_per_process(monkeypatch):
    monkeypatch.setattr("torch.cuda.device_count", lambda: 4)
    assert device_slots("0,1", per_device=2) == [Slot("0", "0"), Slot("0", "1"), Slot("0", "0"), Slot("0", "1")]
    assert device_slots("3") == [Slot("0", "3")]
    assert device_slots(None) == [Slot("0", str(i)) for i in range(4)]  # every GPU of the machine
    assert device_slots("cpu", per_device=3) == [Slot("cpu")] * 3
    env = child_env(Slot("0", "3"))
    assert env["CUDA_VISIBLE_DEVICES"] == "3"  # set in the child's environment, before it imports anything
    assert str(Path(cell_module.__file__).parents[2]) in env["PYTHONPATH"].split(":")
    with pytest.raises(ValueError, match=r"expected distinct GPU indices below 4.*bad: 4"):
        device_slots("0,4")
    with pytest.raises(ValueError, match="at least 1"):
        device_slots("0", per_device=0)
    monkeypatch.setattr("torch.cuda.device_count", lambda: 0)
    assert device_slots(None, per_device=2) == [Slot("cpu"), Slot("cpu")]


def test_slurm_options_pass_through():
    pytest.importorskip("submitit")
    from yolo_attn.experiments.submitit_executor import parse_slurm_options

    options = parse_slurm_options(
        ["partition=gpu,time=720,gpus_per_task=1,cpus_per_task=8,account=lab,mem_gb=32", "nodelist=n1,n2,qos=high"]
    )
    assert options == {
        "partition": "gpu",
        "time": 720,
        "gpus_per_task": 1,
        "cpus_per_task": 8,
        "account": "lab",
        "mem": 32.0,
        "nodelist": "n1,n2",
        "qos": "high",
    }
    extra = parse_slurm_options("partition=gpu,reservation=r1,mail-type=END,licenses=matlab:1")
    assert extra == {
        "partition": "gpu",
        "mail_type": "END",  # a submitit parameter, spelt as sbatch spells it
        "additional_parameters": {"reservation": "r1", "licenses": "matlab:1"},  # the rest goes to sbatch as is
    }
    with pytest.raises(ValueError, match="key=value"):
        parse_slurm_options("partition")


# ---- statistics, against numbers computed by hand or read from a t table ----


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


@pytest.mark.parametrize(
    ("df", "table"), [(1, 12.706), (2, 4.303), (3, 3.182), (4, 2.776), (9, 2.262), (30, 2.042), (100, 1.984)]
)
def test_t_quantile_matches_the_t_table(df, table):
    assert t_quantile(0.975, df) == pytest.approx(table, abs=5e-4)


def test_t_distribution_closed_forms():
    assert t_two_sided_probability(1.0, 1) == pytest.approx(0.5)  # Cauchy: P(|T| < 1) = 2 atan(1) / pi
    assert t_two_sided_probability(math.sqrt(2 / 3), 2) == pytest.approx(0.5)  # df 2: t / sqrt(2 + t^2)
    assert t_quantile(0.95, 1) == pytest.approx(math.tan(0.45 * math.pi))  # Cauchy quantile, exactly
    import scipy.stats as scipy_stats  # a test-only reference, in the dev extra

    for df in (1, 2, 5, 17, 60):
        assert t_quantile(0.975, df) == pytest.approx(scipy_stats.t.ppf(0.975, df), rel=1e-10)


def test_interval_noise_and_seeds_needed_by_hand():
    # deltas 0.05, 0.03, 0.04: mean 0.04, sd 0.01, n 3: half width 4.303 * 0.01 / sqrt(3) = 0.024841
    low, high = interval95(0.04, 0.01, 3)
    assert (low, high) == pytest.approx((0.04 - 0.024841, 0.04 + 0.024841), abs=1e-6)
    assert is_noise((low, high)) is False
    assert is_noise((-0.001, 0.03)) is True and is_noise((0.0, 0.0)) is True and is_noise(None) is True
    assert interval95(0.06, None, 1) is None
    # n=2: 12.706 * 0.01 / 1.414 = 0.0898 > 0.04; n=3: 0.0248 < 0.04 -> 3 seeds
    assert seeds_to_resolve(0.04, 0.01) == 3
    # mean 0.01, sd 0.02: n=18 gives 2.1098 * 0.02 / 4.2426 = 0.009946 < 0.01, n=17 gives 2.1199 * 0.02 / 4.1231
    # = 0.010283 > 0.01
    assert seeds_to_resolve(0.01, 0.02) == 18
    assert seeds_to_resolve(-0.01, 0.02) == 18  # the size of the delta counts, not its sign
    assert seeds_to_resolve(0.0, 0.0) is None and seeds_to_resolve(0.04, None) is None
    assert seeds_to_resolve(0.04, 0.0) == 2


def test_paired_delta_uses_common_seeds_only():
    delta = paired_delta({0: 0.35, 1: 0.37, 5: 0.9}, {0: 0.30, 1: 0.34, 2: 0.32})
    assert delta["per_seed"] == pytest.approx({0: 0.05, 1: 0.03})
    assert delta["n"] == 2
    assert delta["mean"] == pytest.approx(0.04)
    sd = math.sqrt(2 * 0.01**2)  # deviations +-0.01, n - 1 = 1
    assert delta["std"] == pytest.approx(sd)
    half = 12.706205 * sd / math.sqrt(2)  # = 0.12706: the interval holds 0 with two seeds
    assert (delta["low"], delta["high"]) == pytest.approx((0.04 - half, 0.04 + half), abs=1e-6)
    assert delta["noise"] is True


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
    assert better["delta_map50_95_low"] == pytest.approx(0.015159, abs=1e-6)  # 0.04 - 4.303 * 0.01 / sqrt(3)
    assert better["delta_map50_95_high"] == pytest.approx(0.064841, abs=1e-6)
    assert better["delta_map50_95_noise"] is False
    assert better["delta_map50_95_seeds_needed"] == 3
    assert better["delta_map50_mean"] == pytest.approx(0.04)  # AP50 = AP + 0.2 for every run: same deltas

    sd = math.sqrt(0.0038 / 3 / 2)  # sum of squared deviations 0.0038/3
    assert noisy["delta_map50_95_mean"] == pytest.approx(0.02 / 3)
    assert noisy["delta_map50_95_std"] == pytest.approx(sd)
    half = 4.302653 * sd / math.sqrt(3)  # 0.062518
    assert noisy["delta_map50_95_low"] == pytest.approx(0.02 / 3 - half, abs=1e-6)
    assert noisy["delta_map50_95_noise"] is True
    assert noisy["delta_map50_95_seeds_needed"] == 58  # t(0.975, 57) * 0.025166 / sqrt(58) = 0.006619 < 0.006667

    assert single["seeds"] == [1]
    assert single["map50_95_std"] is None
    assert (single["delta_map50_95_mean"], single["delta_map50_95_n"]) == (pytest.approx(0.06), 1)
    assert single["delta_map50_95_std"] is None and single["delta_map50_95_low"] is None
    assert single["delta_map50_95_noise"] is True and single["delta_map50_95_seeds_needed"] is None
    assert single["params"] is None  # no cost given for it
    assert single["ultralytics_map50_95_mean"] is None  # evaluate() ran without Ultralytics' val


def test_markdown_shows_the_interval_and_the_seeds_needed(tmp_path, fakes):
    fakes(FakeTrainer())
    compare("data.yaml", ["base.yaml", "attn.yaml", "better.yaml"], [0, 1], 1, out=tmp_path, latency_runs=0)
    table = (tmp_path / "compare.md").read_text()
    # fake AP = 0.1 * (1 + len(stem)) + 0.01 * seed: better - base = 0.2 for both seeds, sd 0 -> not noise
    # its p is 0 (t is infinite), Holm over the k=2 variants: 2 * 0 = 0 -> resolved, in bold
    assert "| better | 2 |" in table and "| **+0.200** [+0.200, +0.200] p=0, Holm 0 |" in table
    # attn - base = 0: the interval holds 0, p = 1, Holm max(0, 1 * 1) = 1
    assert "| +0.000 [+0.000, +0.000] p=1, Holm 1 *noise* |" in table
    assert "Holm-Bonferroni over the k=2 comparisons with the baseline per metric" in table
    assert "t(0.975, N-1)·sd/√N < |mean|" in table


def test_demo_pretrains_once_then_fine_tunes_every_model_from_the_same_weights(tmp_path, monkeypatch):
    from yolo_attn.demos import detect as demo

    seen, pretrained_on = {}, []

    def fake_pretrain(data, folder):
        pretrained_on.append(Path(data))
        (folder / "weights").mkdir(parents=True)
        (folder / "weights" / "last.pt").write_bytes(b"")
        return folder / "weights" / "last.pt"

    def fake_compare(data, models, seeds, epochs, **kwargs):
        seen.update(data=Path(data), models=models, seeds=seeds, epochs=epochs, **kwargs)
        kwargs["out"].mkdir(parents=True)
        (kwargs["out"] / "compare.md").write_text("| table |\n")
        return kwargs["out"]

    monkeypatch.setattr(demo, "pretrain_baseline", fake_pretrain)
    monkeypatch.setattr(compare_module, "compare", fake_compare)
    assert demo.run_demo(tmp_path / "demo") == (tmp_path / "demo").resolve()
    assert seen["data"].is_file() and "coco_gt" in seen["data"].read_text()
    [upstream] = pretrained_on  # the baseline is pretrained once, on other images than the compared runs train on
    assert upstream != seen["data"] and upstream.is_file()
    upstream_images = {p.read_bytes() for p in (upstream.parent / "images" / "train").iterdir()}
    assert not upstream_images & {p.read_bytes() for p in (seen["data"].parent / "images" / "train").iterdir()}
    assert seen["pretrained"] == tmp_path.resolve() / "demo" / "pretrain" / "weights" / "last.pt"
    assert seen["models"] == ["yolov8n.yaml", "yolov8n-cbam.yaml", "yolov8n-eca.yaml"]  # ours found by bare name
    assert len(seen["seeds"]) >= 2  # at least two seeds, or the table has no spread to judge deltas with
    assert seen["device"] == "cpu" and seen["train_overrides"]["workers"] == 0


def test_a_tiny_but_resolved_delta_is_not_printed_as_zero():
    from yolo_attn.experiments.report import _delta_cell

    row = {"delta_m_mean": -1.2e-4, "delta_m_low": -2.0e-4, "delta_m_high": -0.4e-4, "delta_m_noise": False}
    # a row without p-values (no Holm verdict) keeps the interval's verdict
    assert _delta_cell(row, "m") == "-1.2e-04 [-2.0e-04, -4.0e-05]"
    row |= {"delta_m_mean": -2e-4, "delta_m_low": -1.2e-3, "delta_m_high": 8e-4}
    assert _delta_cell(row, "m") == "-2.0e-04 [-1.2e-03, +8.0e-04]"
    row |= {"delta_m_mean": -0.012, "delta_m_low": -0.02, "delta_m_high": -0.004}
    assert _delta_cell(row, "m") == "-0.012 [-0.020, -0.004]"


@pytest.mark.slow
def test_runtime_table_lands_in_the_report_when_asked(tmp_path, monkeypatch):
    monkeypatch.setattr(cell_module, "train_and_evaluate", FakeTrainer())  # real costs: real models are timed
    monkeypatch.setattr(runtime_module, "static_cost", cost_module.static_cost)  # bound under another test's fake
    models = ["yolov8n.yaml", "yolov8n-se.yaml"]
    compare("data.yaml", models, [0], 1, imgsz=64, out=tmp_path, latency_runs=3, runtime="onnxruntime")
    measured = json.loads((tmp_path / "runtime.json").read_text())
    assert measured["key"]["runtime"] == "onnxruntime" and [r["model"] for r in measured["rows"]] == [
        "yolov8n",
        "yolov8n-se",
    ]
    assert measured["rows"][1]["params"] > measured["rows"][0]["params"]
    table = (tmp_path / "compare.md").read_text()
    assert "Deployed latency in onnxruntime" in table and "| yolov8n-se | 3.18 | 1.006 |" in table

    compare("data.yaml", models, [0], 1, imgsz=64, out=tmp_path / "plain", latency_runs=3)  # not asked: no table
    assert "Deployed latency" not in (tmp_path / "plain" / "compare.md").read_text()


CLS_TOP1 = {"base": {0: 0.50, 1: 0.60, 2: 0.55}, "attn": {0: 0.55, 1: 0.64, 2: 0.61}}  # deltas 0.05, 0.04, 0.06


class FakeClassifier:
    """A stand-in for a classify cell: top-1 from CLS_TOP1, top-5 1.0 (2 classes), and an Ultralytics-like
    ``results.csv`` in the cell's training folder (two epochs, the last one at the final top-1)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def __call__(self, model: str, seed: int, settings: dict, device, out: Path) -> dict:
        self.calls.append((model, seed))
        assert settings["task"] == "classify"
        top1 = CLS_TOP1[Path(model).stem][seed]
        folder = out / "train" / f"{Path(model).stem}_seed{seed}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "results.csv").write_text(
            f"epoch,train/loss,metrics/accuracy_top1,metrics/accuracy_top5\n"  # seeds train differently (seeds.py)
            f"1,{0.9 + 0.01 * seed},{top1 - 0.1},1\n2,0.7,{top1},1\n"
        )
        metrics = {"top1": top1, "top5": 1.0, "nc": 2, "split": "val", "imgsz": 32}
        return {"metrics": metrics, "weights": str(folder / "best.pt"), "train_dir": str(folder)}


@pytest.fixture
def image_folder(tmp_path):
    for split in ("train", "val"):
        for name in ("a", "b"):
            (tmp_path / "images" / split / name).mkdir(parents=True)
    return tmp_path / "images"


def test_classify_report_against_hand_computed_numbers(tmp_path, fakes, image_folder):
    trainer = fakes(FakeClassifier())
    out = tmp_path / "cmp"
    models = ["base.yaml", "attn.yaml"]
    compare(image_folder, models, [0, 1, 2], 2, imgsz=32, out=out, latency_runs=0, task="classify")
    assert len(trainer.calls) == 6
    (record,) = [r for r in load_runs(out) if r["stem"] == "attn" and r["seed"] == 1]
    assert record["settings"]["task"] == "classify" and record["settings"]["backend"] is None
    assert record["settings"]["data"] == str(image_folder.resolve()) and record["settings"]["imgsz"] == 32

    with (out / "compare.csv").open() as f:
        base, attn = list(csv.DictReader(f))
    assert (float(base["top1_mean"]), float(base["top1_std"])) == pytest.approx((0.55, 0.05))
    assert float(attn["top1_std"]) == pytest.approx(math.sqrt(0.0042 / 2))  # deviations -0.05, 0.04, 0.01
    assert float(attn["delta_top1_mean"]) == pytest.approx(0.05)
    assert float(attn["delta_top1_std"]) == pytest.approx(0.01)
    half = 4.302653 * 0.01 / math.sqrt(3)  # t(0.975, 2) * sd / sqrt(n)
    assert (float(attn["delta_top1_low"]), float(attn["delta_top1_high"])) == pytest.approx(
        (0.05 - half, 0.05 + half), abs=1e-6
    )
    assert attn["delta_top1_noise"] == "False" and float(attn["delta_top5_mean"]) == 0.0
    assert "map50_95_mean" not in base  # the detection columns are not there

    text = (out / "compare.md").read_text()
    assert "| top-1 | top-5 | Δ top-1 | Δ top-5 |" in text and "mAP" not in text
    assert "| base (baseline) | 3 |" in text and "| 0.550 ± 0.050 | 1.000 ± 0.000 |" in text
    # t = 0.05 / (0.01 / sqrt(3)), t^2 = 75; df 2: p = 1 - sqrt(75 / 77) = 0.01307; one variant: Holm = p
    assert float(attn["delta_top1_p"]) == pytest.approx(1 - math.sqrt(75 / 77), abs=1e-9)
    assert float(attn["delta_top1_p_holm"]) == float(attn["delta_top1_p"]) and attn["delta_top1_holm_m"] == "1"
    assert attn["delta_top1_resolved"] == "True" and attn["delta_top5_resolved"] == "False"
    cells = "| **+0.050** [+0.025, +0.075] p=0.013, Holm 0.013 | +0.000 [+0.000, +0.000] p=1, Holm 1 *noise* |"
    assert f"| 0.600 ± 0.046 | 1.000 ± 0.000 {cells}" in text
    assert "Top-5 is 1 by definition with 2 classes" in text
    assert "[attn_seed2](train/attn_seed2/results.csv)" in text  # every run's per-epoch log, linked relatively
    assert text.count("/results.csv)") == 6 and "![val top-1 accuracy per epoch](accuracy.png)" in text
    assert (out / "accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    with pytest.raises(ValueError, match="task: 'classify' before, 'detect' now"):
        compare(image_folder, models, [0, 1, 2], 2, imgsz=32, out=out, latency_runs=0, task="detect")
    with pytest.raises(FileNotFoundError, match="no train/ folder"):
        compare(image_folder / "val", models, [0], 1, out=tmp_path / "other", task="classify")
    with pytest.raises(ValueError, match="task must be one of detect, classify, segment, pose, obb, got 'depth'"):
        compare(image_folder, models, [0], 1, out=tmp_path / "other", task="depth")


def test_plans_written_before_the_task_setting_resume_as_detection(tmp_path, fakes, image_folder):
    fakes(FakeTrainer())
    compare("data.yaml", ["base.yaml"], [0], 1, out=tmp_path, latency_runs=0)
    plan = json.loads((tmp_path / "plan.json").read_text())
    del plan["settings"]["task"]
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    compare("data.yaml", ["base.yaml"], [0], 1, out=tmp_path, latency_runs=0)  # accepted: no task meant detect
    with pytest.raises(ValueError, match="task: 'detect' before, 'classify' now"):
        compare(image_folder, ["base.yaml"], [0], 1, out=tmp_path, latency_runs=0, task="classify", imgsz=640)
