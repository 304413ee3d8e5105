"""Issue 26: new blocks engage under SGD as under AdamW, and the baseline stays a plain Ultralytics fine-tune.

The default protocol steps the new blocks' ``identity_mix`` scalars by an Adam rule of their own (``attn_mix_lr``),
so how far a mix moves no longer depends on its gradient's scale, which under SGD left the deep blocks at the identity.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from support.models import source_checkpoint
from ultralytics import YOLO

from yolo_attn.finetune import protocol as P
from yolo_attn.finetune.engagement import FULL_PRECISION_SUFFIX, run_engagement

REACHED = 0.02  # every new mix gets at least this far from 0 (the default rule's first full step is 0.03 exactly)
ENDED = 0.001  # and ends at least this far from 0 (its gradient may change sign on the way)
DEEPEST = (
    "model.25"  # yolov8n-cbam's block after the P5 head C2f, the deepest site (its mix gradient ~1e-9 on the demo)
)


def fine_tune(name, weights, data, folder, optimizer, lr0, protocol=None, **extra):
    """Fine-tune ``name`` from ``weights``: 2 epochs of the tiny data at 64 px; ``protocol`` None: plain Ultralytics.

    The new blocks' mixes after every optimizer step are kept in ``yolo.mix_steps`` (path -> values).
    """
    yolo = YOLO(name)
    yolo.mix_steps = {}

    def record(trainer):
        blocks = P.new_block_modules(trainer.model)

        def after_step(optimizer, args, kwargs):
            for path, block in blocks.items():
                yolo.mix_steps.setdefault(path, []).append(float(block.identity_mix.detach()))

        trainer.optimizer.register_step_post_hook(after_step)

    yolo.add_callback("on_pretrain_routine_end", record)
    args = dict(data=str(data), epochs=2, imgsz=64, batch=4, nbs=4, device="cpu", workers=0, pretrained=str(weights))
    args |= dict(optimizer=optimizer, lr0=lr0, warmup_epochs=0, plots=False, val=False, amp=False, seed=0)
    args |= dict(deterministic=True, project=str(folder.parent), name=folder.name, exist_ok=True, **extra)
    if protocol is not None:
        args["trainer"] = P.attach(yolo, protocol)
    yolo.train(**args)
    return yolo


def interrupted_run(tiny_data: Path, tmp_path: Path, protocol: P.FineTuneProtocol, optimizer: str, lr0: float) -> Path:
    """Fine-tune yolov8n-cbam from a source checkpoint, killed after the first of two epochs; return its last.pt."""
    weights = source_checkpoint(tmp_path / "base.pt")
    yolo = YOLO("yolov8n-cbam.yaml")

    def stop(trainer):  # killed after the first epoch, its last.pt (with the optimizer state) saved
        if trainer.epoch == 0:
            raise KeyboardInterrupt("stopped")

    yolo.add_callback("on_fit_epoch_end", stop)
    args = dict(data=str(tiny_data), epochs=2, imgsz=64, batch=4, nbs=4, device="cpu", workers=0, val=False)
    args |= dict(pretrained=str(weights), optimizer=optimizer, lr0=lr0, warmup_epochs=0, plots=False, amp=False)
    with pytest.raises(KeyboardInterrupt):
        yolo.train(trainer=P.attach(yolo, protocol), **args, project=str(tmp_path), name="run", exist_ok=True)
    return tmp_path / "run" / "weights" / "last.pt"


@pytest.mark.slow
@pytest.mark.parametrize(("optimizer", "lr0"), [("SGD", 0.01), ("AdamW", 0.001)])
def test_the_default_moves_every_new_mix_off_zero_under_sgd_and_adamw(optimizer, lr0, tiny_data, tmp_path):
    weights = source_checkpoint(tmp_path / "base.pt")
    yolo = fine_tune("yolov8n-cbam.yaml", weights, tiny_data, tmp_path / "run", optimizer, lr0, P.FineTuneProtocol())
    steps = yolo.mix_steps
    assert set(steps) == {"model.10", "model.17", "model.21", DEEPEST} and all(len(v) == 4 for v in steps.values())
    assert all(max(map(abs, v)) >= REACHED and abs(v[-1]) >= ENDED for v in steps.values()), steps
    ema = yolo.trainer.ema.ema  # what best.pt holds (val=False: the last epoch's EMA)
    mixes = {path: float(b.identity_mix) for path, b in P.new_block_modules(ema).items()}
    # the evaluated checkpoint is fp16; its blocks' float32 tensors are saved beside it and used by the measurement
    best = yolo.trainer.best
    assert best.with_suffix(FULL_PRECISION_SUFFIX).is_file()
    report = run_engagement(best, {"data": str(tiny_data), "imgsz": 64})
    assert {p: e["identity_mix"] for p, e in report["blocks"].items()} == pytest.approx(mixes, rel=0, abs=1e-5)
    assert all(e["engagement"] > 0 for e in report["blocks"].values())


@pytest.mark.slow
def test_the_old_default_left_the_deepest_block_at_the_identity_under_sgd(tiny_data, tmp_path):
    """What the default fixes: the run's SGD steps the mixes by lr x gradient, and the deepest site barely moves."""
    weights = source_checkpoint(tmp_path / "base.pt")
    old = P.FineTuneProtocol(mix_lr=0)
    yolo = fine_tune("yolov8n-cbam.yaml", weights, tiny_data, tmp_path / "run", "SGD", 0.01, old)
    assert max(map(abs, yolo.mix_steps[DEEPEST])) < REACHED, yolo.mix_steps


@pytest.mark.slow
@pytest.mark.parametrize("protocol", [P.FineTuneProtocol(), P.FineTuneProtocol(mix_decay=True, lr_mult=10)])
def test_the_baseline_under_the_protocol_is_a_plain_ultralytics_fine_tune_bit_for_bit(protocol, tiny_data, tmp_path):
    weights = source_checkpoint(tmp_path / "base.pt")
    plain = fine_tune("yolov8n.yaml", weights, tiny_data, tmp_path / "plain", "SGD", 0.01)
    ours = fine_tune("yolov8n.yaml", weights, tiny_data, tmp_path / "ours", "SGD", 0.01, protocol)
    a, b = plain.trainer.model.state_dict(), ours.trainer.model.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])][:5]
    moved = [k for k, v in a.items() if v.is_floating_point()]
    source = torch.load(weights, weights_only=False)["model"].state_dict()
    assert any(not torch.equal(a[k], source[k]) for k in moved if k in source and a[k].shape == source[k].shape)


@pytest.mark.slow
def test_a_resumed_run_continues_the_mixes_own_moments(tiny_data, tmp_path):
    last = interrupted_run(tiny_data, tmp_path, P.FineTuneProtocol(), "SGD", 0.01)
    groups = torch.load(last, weights_only=False)["optimizer"]["param_groups"]
    saved = [m for g in groups for m in g.get(P.ADAM_KEY, {}).values()]  # [step, m, v] per mix, Python floats
    assert len(saved) == 4 and all(isinstance(v, float) for m in saved for v in m)
    assert {m[0] for m in saved} == {2.0}  # 8 images, batch 4, accumulate 1: two steps in the first epoch

    resumed = YOLO(str(last))
    seen = {}

    def end(trainer):
        seen["moments"] = [m for g in trainer.optimizer.param_groups for m in g.get(P.ADAM_KEY, {}).values()]

    resumed.add_callback("on_train_end", end)
    resumed.train(resume=True, trainer=P.attach(resumed, P.FineTuneProtocol()))
    assert len(seen["moments"]) == 4 and {m[0] for m in seen["moments"]} == {4.0}  # continued, not restarted


@pytest.mark.slow
def test_a_run_trained_with_its_optimizer_stepping_the_mixes_resumes_so(tiny_data, tmp_path):
    """A run made before attn_mix_lr (or with 0), resumed by a process whose default is the mixes' own rule."""
    last = interrupted_run(tiny_data, tmp_path, P.FineTuneProtocol(mix_lr=0), "SGD", 0.01)
    assert not any(P.ADAM_KEY in g for g in torch.load(last, weights_only=False)["optimizer"]["param_groups"])
    resumed = YOLO(str(last))
    seen = {}
    resumed.add_callback("on_train_end", lambda t: seen.update(groups=list(t.optimizer.param_groups)))
    resumed.train(resume=True, trainer=P.attach(resumed, P.FineTuneProtocol()))
    assert not any(P.ADAM_KEY in g for g in seen["groups"])  # the optimizer kept stepping the mixes


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["Adam", "NAdam", "RMSprop"])
def test_the_mixes_rule_resumes_under_optimizers_that_check_their_state_on_load(optimizer, tiny_data, tmp_path):
    resumed = YOLO(str(interrupted_run(tiny_data, tmp_path, P.FineTuneProtocol(), optimizer, 0.001)))
    resumed.train(resume=True, trainer=P.attach(resumed, P.FineTuneProtocol()))
    assert resumed.trainer.epoch == 1


def test_a_plan_recorded_before_attn_mix_lr_keeps_the_run_optimizer_for_the_mix(tmp_path):
    from yolo_attn.experiments.plan import check_settings, make_plan

    old_default = {"attn_mix_decay": False, "attn_lr_mult": 30.0, "attn_warmup_epochs": 0, "attn_mix_init": 0.0}
    assert P.FineTuneProtocol.from_settings(old_default).mix_lr == 0
    now = make_plan("d.yaml", ["a.yaml"], [0], 1, 64, train_overrides={"attn_mix_lr": 0})
    before = {**now.settings, "protocol": old_default}
    check_settings(tmp_path / "plan.json", before, now.settings)  # the same protocol, spelled before the key existed
    with pytest.raises(ValueError, match="attn_mix_lr"):
        check_settings(tmp_path / "plan.json", before, make_plan("d.yaml", ["a.yaml"], [0], 1, 64).settings)


def test_the_mixes_rule_does_not_depend_on_the_gradient_scale_or_the_optimizer():
    trajectories = {}
    for name, scale in (("SGD", 1e-9), ("SGD", 1.0), ("AdamW", 1e-9)):
        weight, mix = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.zeros(()))
        kwargs = {"momentum": 0.937, "nesterov": True} if name == "SGD" else {}
        optimizer = getattr(torch.optim, name)([{"params": [weight]}, {"params": [mix], "weight_decay": 0.0}], lr=0.3,
                                               **kwargs)  # fmt: skip
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 0.5)  # the mix follows it
        P.step_mixes_by_adam(optimizer, [mix], lr=0.03)
        values = []
        for _ in range(3):
            (weight.sum() - scale * mix).backward()
            optimizer.step()
            optimizer.zero_grad()
            values.append(float(mix.detach()))
        trajectories[(name, scale)] = values
        assert schedule.get_last_lr()[1] == pytest.approx(0.15)
    first = trajectories[("SGD", 1e-9)]
    assert first == pytest.approx([0.015, 0.030, 0.045], rel=1e-5)
    assert all(t == pytest.approx(first, rel=1e-6) for t in trajectories.values())
