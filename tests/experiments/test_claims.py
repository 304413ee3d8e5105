"""Cell claims: one cell trains in one place at a time; dead owners' claims are taken over; Slurm requeues take back
their own. Fast tests with a fake trainer (see test_compare.py); the real trainings are in test_compare_scale.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import torch
from support.compare_fakes import GRID, FakeTrainer
from support.env import subprocess_env

from yolo_attn.experiments.cell import run_cell
from yolo_attn.experiments.claims import CellClaim, is_free
from yolo_attn.experiments.compare import compare
from yolo_attn.experiments.files import ELSEWHERE, load_records, train_dir
from yolo_attn.experiments.plan import make_plan, save_plan

HOLD = """
    import sys, time
    from pathlib import Path
    from yolo_attn.experiments.claims import CellClaim

    claim = CellClaim(Path(sys.argv[1]), sys.argv[2])
    assert claim.acquire()
    print("claimed", flush=True)
    time.sleep(600)
"""


def hold_claim(out: Path, key: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start a process that claims ``key`` of ``out`` and keeps it (heartbeat running) until killed."""
    command = [sys.executable, "-c", textwrap.dedent(HOLD), str(out), key]
    proc = subprocess.Popen(command, env=env or subprocess_env(), stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "claimed"
    return proc


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def test_a_claimed_cell_is_not_touched_and_names_its_owner(tmp_path, fakes):
    trainer = fakes(FakeTrainer())
    out = tmp_path / "cmp"
    save_plan(out, plan := make_plan("data.yaml", ["base.yaml"], [0], 1))
    holder = hold_claim(out, "base_seed0")
    try:
        record = run_cell(plan, plan.cell("base_seed0"), out)
        assert record["status"] == ELSEWHERE and not trainer.calls
        assert record["owner"]["pid"] == holder.pid and f"pid {holder.pid}" in record["error"]
        assert not (out / "runs" / "base_seed0.json").exists()
        assert not is_free(out, "base_seed0")
    finally:
        stop(holder)


def test_no_wait_runs_free_cells_and_leaves_the_claimed_one(tmp_path, fakes):
    trainer = fakes(FakeTrainer())
    out = tmp_path / "cmp"
    save_plan(out, make_plan("data.yaml", **GRID))
    holder = hold_claim(out, "attn_seed1")
    try:
        compare("data.yaml", **GRID, out=out, latency_runs=0, wait=False)
    finally:
        stop(holder)
    assert sorted(trainer.calls) == [("attn.yaml", 0), ("base.yaml", 0), ("base.yaml", 1)]
    assert {(r["stem"], r["seed"]) for r in load_records(out)} == {("attn", 0), ("base", 0), ("base", 1)}
    assert "3/4 runs finished" in (out / "compare.md").read_text()


def test_claim_of_a_sigkilled_owner_is_taken_over_and_the_cell_runs_once(tmp_path, fakes):
    trainer = fakes(FakeTrainer())
    out = tmp_path / "cmp"
    save_plan(out, make_plan("data.yaml", **GRID))
    holder = hold_claim(out, "base_seed0")
    dead_pid = holder.pid
    stop(holder)  # kill -9: no release, the marker and the owner file stay behind
    assert (out / "claims" / "base_seed0.lock").exists()
    assert json.loads((out / "claims" / "base_seed0.owner.json").read_text())["pid"] == dead_pid
    compare("data.yaml", **GRID, out=out, latency_runs=0)
    assert sorted(trainer.calls) == sorted((m, s) for m in GRID["models"] for s in GRID["seeds"])  # each cell once
    assert all(r["status"] == "done" and r["pid"] == os.getpid() for r in load_records(out))
    assert not list((out / "claims").glob("*_seed*.lock"))  # released when done


def test_waiting_compare_takes_over_when_the_owner_dies_midway(tmp_path, fakes):
    trainer = fakes(FakeTrainer())
    out = tmp_path / "cmp"
    save_plan(out, make_plan("data.yaml", **GRID))
    holder = hold_claim(out, "attn_seed0")
    killer = threading.Timer(4.0, stop, [holder])  # kill -9 (and reap) the owner while compare waits for its cell
    killer.start()
    try:
        compare("data.yaml", **GRID, out=out, latency_runs=0)  # waits for attn_seed0, then runs it itself
    finally:
        killer.join()
    assert sorted(trainer.calls) == sorted((m, s) for m in GRID["models"] for s in GRID["seeds"])
    assert trainer.calls[-1] == ("attn.yaml", 0)


def test_a_cell_finished_elsewhere_while_waiting_is_not_trained_again(tmp_path, fakes):
    trainer = fakes(FakeTrainer())
    out = tmp_path / "cmp"
    plan = make_plan("data.yaml", ["base.yaml"], [0], 3)
    save_plan(out, plan)
    finish_elsewhere = """
        import sys, time
        from pathlib import Path
        from yolo_attn.experiments.claims import CellClaim
        from yolo_attn.experiments.files import write_json_atomic

        out = Path(sys.argv[1])
        claim = CellClaim(out, "base_seed0")
        assert claim.acquire()
        print("claimed", flush=True)
        time.sleep(3)
        (out / "runs").mkdir(exist_ok=True)
        record = {"stem": "base", "seed": 0, "status": "done", "ended": time.time(), "pid": 1,
                  "metrics": {"coco": {"AP": 0.5, "AP50": 0.7}}, "settings": {}, "model": "base.yaml"}
        write_json_atomic(out / "runs" / "base_seed0.json", record)
        claim.release()
    """
    command = [sys.executable, "-c", textwrap.dedent(finish_elsewhere), str(out)]
    other = subprocess.Popen(command, env=subprocess_env(), stdout=subprocess.PIPE, text=True)
    assert other.stdout.readline().strip() == "claimed"
    compare("data.yaml", ["base.yaml"], [0], 3, out=out, latency_runs=0)
    assert other.wait() == 0
    assert trainer.calls == []
    (record,) = load_records(out)
    assert record["pid"] == 1


def test_a_requeued_slurm_task_takes_over_its_own_claim(tmp_path, monkeypatch):
    out = tmp_path / "cmp"
    slurm = {"SLURM_ARRAY_JOB_ID": "77", "SLURM_ARRAY_TASK_ID": "3", "SLURM_JOB_ID": "80"}
    holder = hold_claim(out, "base_seed0", env=subprocess_env() | slurm)  # the earlier attempt, still alive here
    try:
        for name, value in slurm.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "4")  # another task of the same array: must not take it
        assert not CellClaim(out, "base_seed0").acquire()
        monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")  # the same task, requeued
        claim = CellClaim(out, "base_seed0")
        assert claim.acquire()
        owner = claim.owner()
        assert (owner["pid"], owner["slurm"]) == (os.getpid(), "77_3")
        claim.release()
    finally:
        stop(holder)


def test_unreadable_last_pt_restarts_the_run_and_says_so(tmp_path, capsys, monkeypatch):
    import yolo_attn.experiments.cell as cell_module

    out = tmp_path / "cmp"
    plan = make_plan("data.yaml", ["base.yaml"], [0], 3)
    save_plan(out, plan)
    last = train_dir(out, "base_seed0") / "weights" / "last.pt"
    last.parent.mkdir(parents=True)
    torch.save({"epoch": 1, "optimizer": {}}, last)
    last.write_bytes(last.read_bytes()[:40])  # cut short, as a writer killed midway leaves it
    trained = []

    class StopTrainingError(Exception):
        pass

    def fake_yolo(model):  # the fresh start constructs YOLO(model) and trains: stop there, having seen it
        trained.append(model)
        raise StopTrainingError

    monkeypatch.setattr("ultralytics.YOLO", fake_yolo)
    record = cell_module.run_cell(plan, plan.cell("base_seed0"), out)
    assert trained == ["base.yaml"]  # not resumed from the broken last.pt: a fresh training
    assert record["status"] == "failed" and "StopTrainingError" in record["error"]
    assert last.with_suffix(".pt.corrupt").exists() and not last.exists()
    assert "could not be read; moved to last.pt.corrupt, trained anew" in capsys.readouterr().out


def test_claims_expire_after_the_lease_when_the_owner_stops_its_heartbeat(tmp_path):
    """A claim from another host cannot be checked by pid: it expires once unchanged for a whole lease."""
    out = tmp_path / "cmp"
    lock = CellClaim(out, "base_seed0").lock_path
    lock.write_text("filelock/2\npid=4242\nhost=elsewhere.example\nmode=lease\ntoken=ab\nduration=1.0\n")
    claim = CellClaim(out, "base_seed0", lease_s=1.0)
    assert not claim.acquire()  # first sight: the lease clock starts now
    deadline = time.time() + 10
    while not claim.acquire():
        assert time.time() < deadline, "an unrefreshed claim from another host never expired"
        time.sleep(0.2)
    claim.release()


@pytest.fixture(autouse=True)
def _no_slurm_env(monkeypatch):
    for name in ("SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_JOB_ID"):
        monkeypatch.delenv(name, raising=False)
