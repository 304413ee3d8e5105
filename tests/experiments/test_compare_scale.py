"""The comparison grid for real (tiny training on CPU): sequential, --parallel, submitit local, Slurm, resume.

One sequential 2 x 2 x 1-epoch grid through the command line is the reference; the other executors must give the
same metrics and the same training curves (training is deterministic on CPU).
"""

from __future__ import annotations

import csv
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.env import MODEL_YAMLS, subprocess_env, yolo_attn_command

from yolo_attn.experiments.files import load_records, load_runs, train_dir

pytestmark = pytest.mark.slow
MODELS = ["yolov8n.yaml", str(MODEL_YAMLS / "yolov8n-se.yaml")]
SETTINGS = ["--seeds", "0", "1", "--epochs", "1", "--imgsz", "64", "--batch", "8", "--latency-runs", "3", "workers=0"]


@pytest.fixture(scope="module")
def synthetic_subset(tmp_path_factory) -> Path:
    from yolo_attn.data.subset import build_subset
    from yolo_attn.data.synthetic import make_synthetic_coco

    root = tmp_path_factory.mktemp("synthetic")
    coco = make_synthetic_coco(root / "coco", n_train=16, n_val=8, imgsz=64)
    return build_subset(coco, None, None, None, 0, root / "subset")


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    command = [*yolo_attn_command(), "compare", *args]
    proc = subprocess.run(command, cwd=cwd, env=subprocess_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def curves(out: Path) -> dict[str, list[dict]]:
    """Each cell's results.csv rows without the wall-clock column: equal when training is deterministic."""
    table = {}
    for run in load_runs(out):
        with (train_dir(out, f"{run['stem']}_seed{run['seed']}") / "results.csv").open() as f:
            table[run["stem"], run["seed"]] = [
                {k: v for k, v in row.items() if k != "time"} for row in csv.DictReader(f)
            ]
    return table


def metrics(out: Path) -> dict:
    return {(r["stem"], r["seed"]): r["metrics"]["coco"] for r in load_runs(out)}


@pytest.fixture(scope="module")
def sequential(synthetic_subset, tmp_path_factory) -> tuple[Path, float]:
    """The reference grid, one cell after another through the command line, and its wall time."""
    cwd = tmp_path_factory.mktemp("sequential")
    start = time.perf_counter()
    run_cli("--data", str(synthetic_subset), "--models", *MODELS, *SETTINGS, "--device", "cpu", "--out", "cmp", cwd=cwd)
    return cwd / "cmp", time.perf_counter() - start


def test_sequential_grid_end_to_end_and_rerun_skips(sequential, synthetic_subset):
    out, _ = sequential
    records = load_runs(out)
    assert sorted((r["stem"], r["seed"]) for r in records) == [
        ("yolov8n", 0),
        ("yolov8n", 1),
        ("yolov8n-se", 0),
        ("yolov8n-se", 1),
    ]
    for record in records:
        assert record["settings"]["train_overrides"] == {"workers": 0} and record["pretrained"] is None
        assert Path(record["weights"]).is_file() and record["resumed_at_epoch"] is None
        assert 0.0 <= record["metrics"]["coco"]["AP"] <= record["metrics"]["coco"]["AP50"] <= 1.0
    assert len({r["pid"] for r in records}) == 1  # all in the command's own process
    with (out / "compare.csv").open() as f:
        base, se = csv.DictReader(f)
    assert (base["stem"], se["stem"]) == ("yolov8n", "yolov8n-se")
    assert int(base["params"]) == 3_157_200 < int(se["params"])
    assert float(base["latency_ms"]) > 0 and base["device"] == "cpu"
    assert se["delta_map50_95_n"] == "2"
    table = (out / "compare.md").read_text()
    assert "| yolov8n (baseline) | 2 |" in table and "| yolov8n-se | 2 |" in table
    assert "Protocol: from scratch" in table

    again = run_cli(
        "--data", str(synthetic_subset), "--models", *MODELS, *SETTINGS, "--device", "cpu", "--out", str(out), cwd=out
    )
    assert "0 to run" in again.stdout + again.stderr
    assert [r["finished_at"] for r in load_runs(out)] == [r["finished_at"] for r in records]


def test_parallel_on_cpu_matches_sequential(sequential, synthetic_subset, tmp_path):
    reference, _ = sequential
    proc = run_cli(
        "--data", str(synthetic_subset), "--models", *MODELS, *SETTINGS,
        "--device", "cpu", "--parallel", "--per-device", "2", "--out", "cmp", cwd=tmp_path,
    )  # fmt: skip
    out = tmp_path / "cmp"
    records = load_runs(out)
    assert len(records) == 4 and len({r["pid"] for r in records}) == 4  # one process per cell
    assert all((out / "logs" / f"{r['stem']}_seed{r['seed']}.log").stat().st_size > 0 for r in records)
    assert "epoch 0/1" in proc.stdout and "box_loss" not in proc.stdout  # progress lines, not training logs
    assert metrics(out) == metrics(reference)
    assert curves(out) == curves(reference)
    with (out / "compare.csv").open() as f, (reference / "compare.csv").open() as g:
        ours, theirs = list(csv.DictReader(f)), list(csv.DictReader(g))
    for a, b in zip(ours, theirs, strict=True):
        assert {k: v for k, v in a.items() if "latency" not in k} == {k: v for k, v in b.items() if "latency" not in k}


def test_submitit_local_executor_runs_cells_side_by_side(sequential, synthetic_subset, tmp_path):
    pytest.importorskip("submitit")
    from yolo_attn.experiments.compare import compare

    reference, sequential_s = sequential
    start = time.perf_counter()
    out = compare(
        synthetic_subset, MODELS, [0, 1], 1, imgsz=64, batch=8, device="cpu", out=tmp_path / "cmp",
        train_overrides={"workers": 0}, latency_runs=3, executor="local", per_device=2,
    )  # fmt: skip
    local_s = time.perf_counter() - start
    records = load_runs(out)
    assert (
        len(records) == 4 and len({r["pid"] for r in records}) == 4 and os.getpid() not in {r["pid"] for r in records}
    )
    spans = sorted((r["started"], r["ended"]) for r in records)
    assert any(b[0] < a[1] for a, b in itertools.pairwise(spans)), spans  # two cells overlapped in time
    assert metrics(out) == metrics(reference) and curves(out) == curves(reference)
    assert list((out / "slurm").glob("*/*_log.out"))  # submitit's logs live in the comparison folder
    print(
        f"\n2 x 2 x 1-epoch grid: sequential (CLI) {sequential_s:.1f} s, --executor local (2 at once) {local_s:.1f} s"
    )


def start_cli(*args: str, cwd: Path) -> subprocess.Popen:
    command = [*yolo_attn_command(), "compare", *args]
    return subprocess.Popen(command, cwd=cwd, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)  # fmt: skip


CORRUPT = ("not a valid Ultralytics model", "corrupted", "could not be read")


def test_two_compares_on_one_folder_train_each_cell_once(synthetic_subset, tmp_path):
    """The same command twice at once: every cell is trained by one of them, and both end with the same report."""
    settings = ["--data", str(synthetic_subset), "--models", *MODELS, *SETTINGS[:-3], "--latency-runs", "0"]
    args = [*settings, "workers=0", "--device", "cpu", "--out", "cmp"]
    first, second = start_cli(*args, cwd=tmp_path), start_cli(*args, cwd=tmp_path)
    outputs = [proc.communicate(timeout=900)[0] for proc in (first, second)]
    assert (first.returncode, second.returncode) == (0, 0), "\n".join(o[-3000:] for o in outputs)
    trainings = [o.count("Starting training for") for o in outputs]
    print(f"\ntwo simultaneous compares of 4 cells: trainings {trainings} (total {sum(trainings)})")
    assert sum(trainings) == 4, trainings
    assert not any(word in o for o in outputs for word in CORRUPT)
    assert any("running elsewhere" in o for o in outputs)  # they met, and one waited for the other's cell
    out = tmp_path / "cmp"
    assert len(load_runs(out)) == 4
    report = (out / "compare.md").read_text()
    assert "4/4 runs finished" in report and all(report in o for o in outputs)  # both printed the same, whole report


def test_local_executor_and_sequential_on_one_folder_train_each_cell_once(synthetic_subset, tmp_path, monkeypatch):
    pytest.importorskip("submitit")
    from yolo_attn.experiments.compare import compare

    monkeypatch.setenv("YOLO_VERBOSE", "True")  # the local jobs inherit it: their logs show each training's start

    settings = ["--data", str(synthetic_subset), "--models", *MODELS, *SETTINGS[:-3], "--latency-runs", "0"]
    sequential = start_cli(*settings, "workers=0", "--device", "cpu", "--out", "cmp", cwd=tmp_path)
    out = compare(
        synthetic_subset, MODELS, [0, 1], 1, imgsz=64, batch=8, device="cpu", out=tmp_path / "cmp",
        train_overrides={"workers": 0}, latency_runs=0, executor="local", per_device=1,
    )  # fmt: skip
    output = sequential.communicate(timeout=900)[0]
    assert sequential.returncode == 0, output[-3000:]
    local_logs = "".join(path.read_text() for path in (out / "slurm").glob("*/*_log.*"))
    trainings = output.count("Starting training for") + local_logs.count("Starting training for")
    print(f"\nsequential + --executor local on one folder: {trainings} trainings for 4 cells")
    assert trainings == 4
    records = load_runs(out)
    assert len(records) == 4 and len({r["pid"] for r in records}) >= 2  # both runners trained some of the cells
    assert not any(word in output + local_logs for word in CORRUPT)


def unfinished(last: Path) -> bool:
    """True when ``last`` holds an unfinished training (read without touching it: it may be half-written now)."""
    import torch

    try:
        ckpt = torch.load(last, map_location="cpu", weights_only=False)
    except Exception:  # missing, or caught while being written
        return False
    return ckpt.get("epoch", -1) >= 0 and ckpt.get("optimizer") is not None


def wait_for_epoch(last: Path, proc: subprocess.Popen, timeout: float = 300) -> None:
    """Wait until ``last`` holds an unfinished training (some epoch done, not the last)."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if unfinished(last):
            return
        time.sleep(0.1)
    raise AssertionError(f"no unfinished {last} appeared (process exit code {proc.poll()})")


def test_killed_cell_resumes_from_last_pt_through_the_checkpoint_path(synthetic_subset, tmp_path):
    pytest.importorskip("submitit")
    from yolo_attn.experiments.plan import make_plan, save_plan
    from yolo_attn.experiments.submitit_executor import CellJob

    out = tmp_path / "cmp"
    plan = make_plan(synthetic_subset, ["yolov8n.yaml"], [0], 4, imgsz=64, batch=8, device="cpu",
                     train_overrides={"workers": 0, "val": False})  # fmt: skip
    save_plan(out, plan)
    key = "yolov8n_seed0"
    last = train_dir(out, key) / "weights" / "last.pt"
    command = [sys.executable, "-m", "yolo_attn.experiments.cell", "--out", str(out), "--key", key]
    proc = subprocess.Popen(command, env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_epoch(last, proc)
    finally:
        proc.send_signal(signal.SIGKILL)  # as a preempted job is killed: no chance to write anything
        proc.wait()
    assert not (out / "runs" / f"{key}.json").exists()
    import torch

    saved = torch.load(last, map_location="cpu", weights_only=False)["epoch"] + 1  # epochs last.pt holds (1-based)

    delayed = CellJob().checkpoint(str(out), key, "cpu")  # what submitit requeues on preemption or timeout
    assert isinstance(delayed.function, CellJob) and delayed.args == (str(out), key, "cpu")
    assert delayed.result()["status"] == "done"  # CellJob returns the cell's record: what job.result() gives
    (record,) = load_records(out)
    assert record["status"] == "done" and record["resumed_at_epoch"] == saved + 1  # continued, not started over
    with (train_dir(out, key) / "results.csv").open() as f:
        epochs = [int(row["epoch"]) for row in csv.DictReader(f)]
    # Ultralytics logs an epoch to results.csv just before it saves last.pt: a kill between the two leaves that
    # epoch's row behind, and the resumed run trains it again. Every epoch up to the checkpoint ran exactly once.
    assert epochs[:saved] == list(range(1, saved + 1)) and epochs[len(epochs) - (4 - saved) :] == list(
        range(saved + 1, 5)
    )
    assert len(epochs) - 4 in (0, 1)


# ---- a real Slurm: the machine's own, or one started from Debian's packages in a temp folder ----


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """Environment variables for a Slurm that answers: the machine's own if ``sinfo`` works, else a throw-away one."""
    pytest.importorskip("submitit")
    if shutil.which("sbatch") and subprocess.run(["sinfo"], capture_output=True, timeout=30).returncode == 0:
        yield {}
        return
    from support.slurm_local import LocalSlurm, SlurmUnavailableError

    cluster = LocalSlurm(tmp_path_factory.mktemp("slurm"))
    try:
        cluster.start()
    except SlurmUnavailableError as error:
        pytest.skip(f"no Slurm: none on this machine and a local one could not start ({error})")
    yield cluster.env
    cluster.stop()


def test_slurm_job_array(slurm, synthetic_subset, tmp_path, monkeypatch):
    from yolo_attn.experiments.compare import compare, refresh_report

    for name, value in {**slurm, "PYTHONPATH": subprocess_env()["PYTHONPATH"]}.items():
        monkeypatch.setenv(name, value)  # sbatch and the jobs (which inherit this environment) see this checkout
    out = tmp_path / "cmp"
    grid = {"imgsz": 64, "batch": 8, "device": "cpu", "out": out, "latency_runs": 0, "executor": "slurm"}
    overrides = {"workers": 0}
    compare(
        synthetic_subset, MODELS, [0, 1], 1, train_overrides=overrides, slurm={"time": 30}, array_parallelism=2, **grid
    )
    jobs = json.loads((out / "slurm" / "submitted.json").read_text())["jobs"]
    array_ids = {j["job_id"].split("_")[0] for j in jobs}
    assert len(jobs) == 4 and len(array_ids) == 1, jobs  # one job array of 4 tasks
    # resubmitted while the array is queued or running: its tasks are not submitted a second time
    compare(synthetic_subset, MODELS, [0, 1], 1, train_overrides=overrides, slurm={"time": 30}, **grid)
    assert json.loads((out / "slurm" / "submitted.json").read_text())["jobs"] == jobs
    deadline = time.time() + 600
    while time.time() < deadline and sum(r["status"] == "done" for r in load_records(out)) < 4:
        time.sleep(1)
    records = {f"{r['stem']}_seed{r['seed']}": r for r in load_records(out)}
    assert sorted(records) == sorted(j["cell"] for j in jobs) and all(r["status"] == "done" for r in records.values())
    assert len({r["pid"] for r in records.values()}) == 4
    print(f"\nSlurm array {array_ids.pop()}: tasks {[j['job_id'] for j in jobs]}")
    assert "4/4 runs finished" in refresh_report(out, latency_runs=0).read_text()

    again = compare(synthetic_subset, MODELS, [0, 1], 1, train_overrides=overrides, slurm={"time": 30}, **grid)
    assert json.loads((out / "slurm" / "submitted.json").read_text())["jobs"] == jobs  # nothing resubmitted
    assert again == out.resolve()
