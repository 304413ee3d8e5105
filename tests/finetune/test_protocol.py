"""The fine-tuning protocol of new attention blocks: option parsing, optimiser groups, warm-up, small non-zero start."""

from __future__ import annotations

import pytest
import torch
from support.models import source_checkpoint
from torch import nn
from ultralytics import YOLO
from ultralytics.nn.tasks import DetectionModel

from yolo_attn.experiments.plan import check_settings, make_plan
from yolo_attn.finetune import protocol as P
from yolo_attn.integration import load_pretrained


def test_split_protocol_takes_attn_keys_and_leaves_the_rest():
    found, rest = P.split_protocol({"attn_lr_mult": "10", "attn_mix_decay": "False", "lr0": 0.01, "workers": 0})
    assert found == P.FineTuneProtocol(mix_decay=False, lr_mult=10.0)
    assert rest == {"lr0": 0.01, "workers": 0}
    assert P.FineTuneProtocol.from_settings(found.to_settings()) == found
    with pytest.raises(ValueError, match="attn_lr"):
        P.split_protocol({"attn_lr": 10})
    with pytest.raises(ValueError, match="attn_warmup_epochs"):
        P.split_protocol({"attn_warmup_epochs": 1.5})
    with pytest.raises(ValueError, match="attn_lr_mult"):
        P.FineTuneProtocol(lr_mult=0)


def test_the_plan_records_the_protocol_and_a_resume_with_another_is_refused(tmp_path):
    plan = make_plan("d.yaml", ["a.yaml"], [0], 1, 64, train_overrides={"attn_warmup_epochs": 0, "workers": 0})
    assert P.FineTuneProtocol() == P.FineTuneProtocol(mix_decay=False, lr_mult=30, warmup_epochs=0, mix_init=0)
    assert P.FineTuneProtocol().mix_lr == 0.03
    assert P.FineTuneProtocol(mix_decay=True, lr_mult=1, warmup_epochs=0, mix_init=0, mix_lr=0) == P.LEGACY
    assert plan.settings["train_overrides"] == {"workers": 0}
    assert plan.settings["protocol"] == P.FineTuneProtocol().to_settings()
    other = make_plan("d.yaml", ["a.yaml"], [0], 1, 64, train_overrides={"attn_lr_mult": 10, "workers": 0})
    with pytest.raises(ValueError, match="protocol"):
        check_settings(tmp_path / "plan.json", plan.settings, other.settings)
    old = {k: v for k, v in plan.settings.items() if k != "protocol"}  # a folder made before the protocol existed
    check_settings(tmp_path / "plan.json", old, {**plan.settings, "protocol": P.LEGACY.to_settings()})
    with pytest.raises(ValueError, match="protocol"):
        check_settings(tmp_path / "plan.json", old, plan.settings)


def fine_tuned(nc: int = 2) -> DetectionModel:
    """yolov8n-cbam loaded from a (random) yolov8n: four new CBAM blocks, started as the identity."""
    source = DetectionModel("yolov8n.yaml", nc=nc, verbose=False)
    model = DetectionModel("yolov8n-cbam.yaml", nc=nc, verbose=False)
    load_pretrained(model, source, verbose=False)
    return model


def ultralytics_optimizer(model: nn.Module, lr: float = 0.01):
    """The optimiser Ultralytics builds for a model (AdamW, weight decay 5e-4 on its "weight" group)."""
    from ultralytics.cfg import get_cfg
    from ultralytics.models.yolo.detect import DetectionTrainer

    trainer = DetectionTrainer.__new__(DetectionTrainer)  # only build_optimizer is used: no data, no set-up
    trainer.args = get_cfg()
    return DetectionTrainer.build_optimizer(trainer, model, name="AdamW", lr=lr, momentum=0.9, decay=5e-4)


def groups_of(optimizer) -> dict[int, dict]:
    """id(param) -> its group's hyperparameters."""
    return {id(p): {k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups for p in g["params"]}


def test_regroup_moves_only_the_mixes_to_a_no_decay_group_and_every_other_param_keeps_its_group():
    model = fine_tuned()
    blocks = P.new_block_modules(model)
    assert len(blocks) == 4 and all(b.identity_mix is not None for b in blocks.values())
    mixes = [b.identity_mix for b in blocks.values()]
    optimizer = ultralytics_optimizer(model)
    before = groups_of(optimizer)
    assert all(before[id(m)]["weight_decay"] > 0 for m in mixes), "Ultralytics puts the mix in its decay group"
    new = [p for b in blocks.values() for p in b.parameters()]
    P.regroup(optimizer, new, mixes, P.FineTuneProtocol(mix_decay=False, lr_mult=1))
    after = groups_of(optimizer)
    assert sorted(after) == sorted(before) and len(after) == len(list(model.parameters()))
    for p in model.parameters():
        if any(p is m for m in mixes):
            assert after[id(p)]["weight_decay"] == 0.0 and after[id(p)]["param_group"] == P.MIX_GROUP
            assert after[id(p)]["lr"] == before[id(p)]["lr"]
        else:
            assert after[id(p)] == before[id(p)]
    mix_groups = [g for g in optimizer.param_groups if g.get("param_group") == P.MIX_GROUP]
    assert len(mix_groups) == 1 and len(mix_groups[0]["params"]) == 4


def test_regroup_scales_the_lr_of_new_block_params_only_and_keeps_their_decay():
    model = fine_tuned()
    blocks = P.new_block_modules(model)
    mixes = [b.identity_mix for b in blocks.values()]
    new_ids = {id(p) for b in blocks.values() for p in b.parameters()}
    optimizer = ultralytics_optimizer(model, lr=0.01)
    before = groups_of(optimizer)
    P.regroup(optimizer, [p for b in blocks.values() for p in b.parameters()], mixes, P.FineTuneProtocol(lr_mult=10))
    after = groups_of(optimizer)
    for p in model.parameters():
        if id(p) not in new_ids:
            assert after[id(p)] == before[id(p)]
            continue
        assert after[id(p)]["lr"] == pytest.approx(0.1)
        is_mix = any(p is m for m in mixes)
        assert after[id(p)]["weight_decay"] == (0.0 if is_mix else before[id(p)]["weight_decay"])
        assert after[id(p)]["param_group"] == (P.MIX_GROUP if is_mix else before[id(p)]["param_group"])


def test_from_scratch_there_are_no_new_blocks():
    assert P.new_block_modules(DetectionModel("yolov8n-cbam.yaml", nc=2, verbose=False)) == {}


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["yolov8n-cbam.yaml", "yolov8n.yaml"])
def test_warm_up_freezes_pretrained_params_bit_for_bit_and_trains_the_new_blocks(name, tiny_data, tmp_path):
    weights = source_checkpoint(tmp_path / "base.pt")
    yolo = YOLO(name)
    protocol = P.FineTuneProtocol(warmup_epochs=1, lr_mult=10, mix_init=0.05)
    trainer = P.attach(yolo, protocol)
    assert issubclass(trainer, yolo.task_map["detect"]["trainer"]) and trainer.attn_protocol == protocol
    seen: dict[str, dict] = {}

    def start(trainer):
        model = trainer.model
        seen["start"] = snapshot(model)
        seen["new"] = {f"{path}." for path in P.new_block_modules(model)}
        seen["mix_groups"] = [g for g in trainer.optimizer.param_groups if g.get("param_group") == P.MIX_GROUP]

    def epoch_end(trainer):
        if trainer.epoch == 0:
            seen["warm"] = snapshot(trainer.model)

    yolo.add_callback("on_train_start", start)
    yolo.add_callback("on_train_epoch_end", epoch_end)
    yolo.train(
        trainer=trainer, data=str(tiny_data), epochs=2, imgsz=64, batch=4, device="cpu", workers=0,
        pretrained=str(weights), optimizer="AdamW", lr0=0.01, warmup_epochs=0, nbs=4, plots=False, val=False, amp=False,
        project=str(tmp_path), name="run", exist_ok=True,
    )  # fmt: skip
    start_state, warm, end = seen["start"], seen["warm"], snapshot(yolo.trainer.model)
    new_keys = [k for k in start_state if any(k.startswith(p) for p in seen["new"])]
    old_keys = [k for k in start_state if k not in new_keys and start_state[k].is_floating_point()]
    assert all(torch.equal(start_state[k], warm[k]) for k in old_keys), "a pretrained tensor moved in the warm-up"
    assert any(not torch.equal(warm[k], end[k]) for k in old_keys), "after the warm-up everything trains"
    if name == "yolov8n.yaml":
        assert not new_keys
        return
    mixes = [k for k in new_keys if k.endswith("identity_mix")]
    assert len(mixes) == 4 and all(float(start_state[k]) == pytest.approx(0.05) for k in mixes)
    assert len(seen["mix_groups"]) == 1 and seen["mix_groups"][0]["weight_decay"] == 0.0
    assert all(not torch.equal(start_state[k], warm[k]) for k in mixes), "the new blocks train in the warm-up"


def test_yolo_attn_train_takes_the_protocol_keys_and_hands_the_rest_to_ultralytics(monkeypatch):
    import inspect

    from ultralytics.utils.callbacks import base

    from yolo_attn.cli import take_protocol

    monkeypatch.setattr(base, "default_callbacks", {k: list(v) for k, v in base.default_callbacks.items()})
    before = len(base.default_callbacks["on_pretrain_routine_start"])
    rest = take_protocol(["detect", "train", "model=a.yaml", "attn_lr_mult=10", "epochs=3", "attn_mix_decay=False"])
    assert rest == ["detect", "train", "model=a.yaml", "epochs=3"]
    added = base.default_callbacks["on_pretrain_routine_start"][before:]
    assert len(added) == 1
    assert inspect.getclosurevars(added[0]).nonlocals["protocol"] == P.FineTuneProtocol(mix_decay=False, lr_mult=10)
    with pytest.raises(SystemExit, match="train only"):
        take_protocol(["predict", "model=a.pt", "attn_lr_mult=10"])
    assert take_protocol(["val", "model=a.pt"]) == ["val", "model=a.pt"]


@pytest.mark.slow
def test_yolo_attn_train_command_applies_the_protocol(tiny_data, tmp_path):
    import subprocess

    from support.env import subprocess_env, yolo_attn_command

    weights = source_checkpoint(tmp_path / "base.pt")
    args = ["train", "model=yolov8n-cbam.yaml", f"pretrained={weights}", f"data={tiny_data}", "epochs=1", "imgsz=64"]
    args += ["batch=4", "device=cpu", "workers=0", "plots=False", "val=False", "amp=False", f"project={tmp_path}"]
    args += ["attn_lr_mult=10", "attn_mix_init=0.02"]
    proc = subprocess.run([*yolo_attn_command(), *args], cwd=tmp_path, env=subprocess_env(), capture_output=True,
                          text=True)  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "yolo_attn protocol: 4 new attention block(s): mix without weight decay, new-block lr x10" in out
    assert "mix starts at 0.02" in out
    assert "yolo_attn: engagement of 4 attention block(s) on 4 val images at imgsz 64" in out  # printed at the end
    assert "yolo_attn:   layer 25 CBAM: identity_mix " in out


@pytest.mark.slow
def test_a_run_with_new_block_groups_resumes_with_the_same_groups(tiny_data, tmp_path):
    weights = source_checkpoint(tmp_path / "base.pt")
    protocol = P.FineTuneProtocol(lr_mult=10, warmup_epochs=1)
    yolo = YOLO("yolov8n-cbam.yaml")
    trainer = P.attach(yolo, protocol)

    def stop(trainer):  # killed after the first epoch, its last.pt (with the optimizer state) saved
        if trainer.epoch == 0:
            raise KeyboardInterrupt("stopped")

    yolo.add_callback("on_fit_epoch_end", stop)
    args = dict(data=str(tiny_data), epochs=2, imgsz=64, batch=4, device="cpu", workers=0, pretrained=str(weights))
    args |= dict(optimizer="AdamW", lr0=0.01, warmup_epochs=0, nbs=4, plots=False, val=False, amp=False)
    with pytest.raises(KeyboardInterrupt):
        yolo.train(trainer=trainer, **args, project=str(tmp_path), name="run", exist_ok=True)
    last = tmp_path / "run" / "weights" / "last.pt"
    saved = torch.load(last, weights_only=False)["optimizer"]["param_groups"]
    assert [g["lr"] for g in saved].count(saved[0]["lr"]) < len(saved)  # groups of their own, lr x10

    resumed = YOLO(str(last))
    resumed.train(resume=True, trainer=P.attach(resumed, protocol))
    groups = resumed.trainer.optimizer.param_groups
    assert len(groups) == len(saved)
    assert [len(g["params"]) for g in groups] == [len(g["params"]) for g in saved]
    assert [g["initial_lr"] for g in groups] == [g["initial_lr"] for g in saved]


@pytest.mark.slow
def test_the_warm_up_treats_the_baseline_and_a_model_whose_blocks_stay_the_identity_alike(tiny_data, tmp_path):
    """Same function (blocks pinned at the identity by a vanishing lr), same warm-up: the same pretrained weights after.

    With 2 batches per epoch and accumulate=3, the warm-up epoch ends with gradients accumulated but never stepped:
    they must not reach the first step after the warm-up of one model and not the other.
    """
    weights = source_checkpoint(tmp_path / "base.pt")
    protocol = P.FineTuneProtocol(lr_mult=1e-12, warmup_epochs=1, mix_lr=0)  # the run's optimizer steps the mixes
    args = dict(data=str(tiny_data), epochs=2, imgsz=64, batch=4, device="cpu", workers=0, pretrained=str(weights))
    args |= dict(optimizer="AdamW", lr0=0.01, warmup_epochs=0, nbs=12, plots=False, val=False, amp=False)
    final = {}
    for name in ("yolov8n.yaml", "yolov8n-cbam.yaml"):
        yolo = YOLO(name)
        yolo.train(trainer=P.attach(yolo, protocol), **args, project=str(tmp_path), name=name, exist_ok=True)
        final[name] = (yolo.trainer.model, yolo.trainer.model.transfer_report)
    base, (cbam, report) = final["yolov8n.yaml"][0], final["yolov8n-cbam.yaml"]
    layer = dict(map(tuple, report["layer_map"]))
    theirs = cbam.state_dict()
    compared = 0
    for key, value in base.state_dict().items():
        index, rest = key.split(".", 2)[1:]
        twin = theirs[f"model.{layer[int(index)]}.{rest}"]
        if value.is_floating_point():
            torch.testing.assert_close(twin, value, rtol=0, atol=1e-6, msg=key)
            compared += 1
    assert compared > 250
    assert any(not torch.equal(v, source) for v, source in zip(base.state_dict().values(),
               torch.load(weights, weights_only=False)["model"].state_dict().values(), strict=True))  # fmt: skip
