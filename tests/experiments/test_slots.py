"""The one slot loop of every executor (run_slots), with a fake submit: nothing trains, nothing sleeps long."""

from __future__ import annotations

import pytest

from yolo_attn.experiments.executors import Slot, run_slots
from yolo_attn.experiments.plan import make_plan, save_plan


class FakeJob:
    """A cell that ends after ``polls`` looks."""

    def __init__(self, cell, slot, polls: int, log: dict) -> None:
        self.cell, self.slot, self.polls, self.log = cell, slot, polls, log
        self.stopped = False

    def done(self) -> bool:
        self.polls -= 1
        return self.polls < 0

    def result(self):
        self.log["running"].remove(self.cell.key)
        return {"stem": self.cell.stem, "seed": self.cell.seed, "status": "done", "metrics": {}}

    def cancel(self) -> None:
        self.stopped = True


@pytest.fixture
def plan_and_out(tmp_path):
    plan = make_plan("data.yaml", ["a.yaml", "b.yaml", "c.yaml"], [0, 1], 1)
    save_plan(tmp_path, plan)
    return plan, tmp_path


def test_every_cell_runs_once_and_no_slot_holds_two(plan_and_out):
    plan, out = plan_and_out
    log, jobs, done = {"running": [], "most": 0}, [], []

    def launch(cell, slot):
        log["running"].append(cell.key)
        log["most"] = max(log["most"], len(log["running"]))
        jobs.append(FakeJob(cell, slot, polls=len(jobs) % 3, log=log))
        return jobs[-1]

    slots = [Slot("cpu", label_text="s1"), Slot("cpu", label_text="s2")]
    records = run_slots(plan.cells, out, slots, launch, on_done=done.append, poll_s=0.0)
    assert sorted((r["stem"], r["seed"]) for r in records) == sorted((c.stem, c.seed) for c in plan.cells)
    assert done == records and log["most"] == 2 and not log["running"]
    assert [j.cell.key for j in jobs] == [c.key for c in plan.cells]  # started in plan order, each once


def test_an_interrupted_loop_stops_the_cells_it_started(plan_and_out):
    plan, out = plan_and_out
    jobs = []

    def launch(cell, slot):
        if len(jobs) == 2:
            raise KeyboardInterrupt
        jobs.append(FakeJob(cell, slot, polls=10**6, log={"running": []}))
        return jobs[-1]

    with pytest.raises(KeyboardInterrupt):
        run_slots(plan.cells, out, [Slot("cpu")] * 3, launch, poll_s=0.0)
    assert [j.stopped for j in jobs] == [True, True]
