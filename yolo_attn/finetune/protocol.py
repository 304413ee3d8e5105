"""How attention blocks new to a pretrained network train: the fine-tuning protocol, applied by training callbacks.

A new block starts as the identity (``out = x + identity_mix * (block(x) - x)``, ``identity_mix = 0``, see
`yolo_attn.modules.identity_start`). Left to Ultralytics' defaults, the scalar mix sits in the weight-decay group and
moves by about ``lr`` per Adam step, so in a short fine-tune the block may never switch on. The options below change
only how the new blocks' parameters train; every other parameter trains exactly as Ultralytics would train it. They are
``key=value`` settings of ``yolo-attn train`` and ``yolo-attn compare`` (recorded in the plan):

- ``attn_mix_decay`` (bool, default False): weight decay on the ``identity_mix`` scalars. False moves them into a
  param group of their own with ``weight_decay=0`` (the other parameters keep their groups).
- ``attn_lr_mult`` (float, default 30): learning-rate multiplier for the new blocks' parameters (mix included): they
  get groups of their own with the same hyperparameters and ``lr`` times this, scheduled like the rest.
- ``attn_warmup_epochs`` (int, default 0): train only the new blocks for the first E epochs, with every pretrained
  parameter frozen and the pretrained BatchNorm statistics fixed (ControlNet-style); then everything trains. The
  schedule is the run's own (same ``epochs``, same lr curve). A model without new blocks (the baseline) changes
  nothing during those epochs, so every model of a comparison gets the same epochs of full training.
- ``attn_mix_init`` (float, default 0): start the new mixes at this value instead of 0 (LayerScale-style). Not 0
  gives up the exact step-0 identity: at step 0 the model no longer predicts what the pretrained model predicted.
- ``attn_mix_lr`` (float, default 0.03): the ``identity_mix`` scalars are stepped by an Adam rule of their own
  (`step_mixes_by_adam`), by at most about this much per step times the run's own schedule (its warm-up and lr curve),
  whatever optimizer and ``lr0`` the run uses; every other parameter keeps the run's optimizer. 0: the run's optimizer
  steps the mixes too, at ``lr`` times ``attn_lr_mult`` (what runs made before this option got). Under SGD a mix moves
  by ``lr x gradient``, and a mix's gradient is small and differs by orders of magnitude between sites: the
  blocks stayed at the identity under SGD while AdamW moved them. An Adam step does not depend on the gradient's scale.

Ultralytics' mechanisms are used throughout: its ``build_optimizer`` (extended by a subclass of the task's trainer,
passed as ``train(trainer=...)``, so the learning-rate scheduler, its warm-up, a resumed run's optimizer state and
every DDP worker see the final groups), the trainer's callbacks (``on_pretrain_routine_end``, ``on_train_epoch_start``;
Ultralytics pickles them into DDP workers), its ``freeze_layer_names`` (BatchNorm statistics of frozen layers), and
PyTorch's ``Optimizer.register_step_pre_hook``. A model trained from scratch has no new blocks and no pretrained layers:
the protocol does nothing to it. `attach` sets it up for a ``YOLO`` object (``compare`` does this for every cell);
`install_default` for the ``yolo-attn train`` command, which hands its arguments to Ultralytics' entry point.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from yolo_attn.finetune.engagement import save_full_precision
from yolo_attn.finetune.transfer import new_block_modules

PREFIX = "yolo_attn protocol: "
STATE = "_yolo_attn_protocol"  # trainer attribute holding the warm-up state
MIX_GROUP = "mix"  # Ultralytics' "param_group" label of the no-decay mix groups (not bias: no bias lr warm-up)


@dataclass(frozen=True)
class FineTuneProtocol:
    """How new attention blocks train when a model is fine-tuned from pretrained weights.

    Attributes:
        mix_decay (bool): Weight decay on the ``identity_mix`` scalars (Ultralytics' default puts them in its decay
            group).
        lr_mult (float): Learning-rate multiplier for the new blocks' parameters.
        warmup_epochs (int): Epochs at the start in which only the new blocks train.
        mix_init (float): Starting value of new mixes (0: the exact identity at step 0).
        mix_lr (float): Step size of the mixes' own Adam rule (0: the run's optimizer steps them).
    """

    mix_decay: bool = False
    lr_mult: float = 30.0
    warmup_epochs: int = 0
    mix_init: float = 0.0
    mix_lr: float = 0.03

    def __post_init__(self) -> None:
        """Validate the values."""
        if not (math.isfinite(self.lr_mult) and self.lr_mult > 0):
            raise ValueError(f"attn_lr_mult must be a positive number, got {self.lr_mult!r}")
        if self.warmup_epochs < 0:
            raise ValueError(f"attn_warmup_epochs must be 0 or more, got {self.warmup_epochs!r}")
        if not math.isfinite(self.mix_init):
            raise ValueError(f"attn_mix_init must be a finite number, got {self.mix_init!r}")
        if not (math.isfinite(self.mix_lr) and self.mix_lr >= 0):
            raise ValueError(f"attn_mix_lr must be 0 or a positive number, got {self.mix_lr!r}")

    def to_settings(self) -> dict[str, Any]:
        """Return the protocol as its ``key=value`` settings (``attn_mix_decay`` ...), as recorded in a plan."""
        return {f"attn_{k}": v for k, v in asdict(self).items()}

    @classmethod
    def from_settings(cls, settings: dict[str, Any] | None) -> FineTuneProtocol:
        """Build a protocol from recorded ``attn_*`` settings (a plan's); missing keys take the defaults.

        A key added after a plan was recorded takes the value that gives what that plan's runs got (`ADDED_LATER`).
        """
        protocol, rest = split_protocol({**ADDED_LATER, **(settings or {})})
        if rest:
            raise ValueError(f"not fine-tuning protocol settings: {', '.join(sorted(rest))}")
        return protocol

    def describe(self) -> str:
        """Return the protocol in words, e.g. ``"mix without weight decay, lr x10, 2 warm-up epochs"``."""
        parts = ["mix with weight decay" if self.mix_decay else "mix without weight decay"]
        if self.lr_mult != 1:
            parts.append(f"new-block lr x{self.lr_mult:g}")
        if self.warmup_epochs:
            parts.append(f"{self.warmup_epochs} warm-up epoch(s) training only the new blocks (pretrained frozen)")
        parts.append(f"mix starts at {self.mix_init:g}" + ("" if self.mix_init else " (exact identity)"))
        if self.mix_lr:
            parts.append(f"mix stepped by its own Adam rule at {self.mix_lr:g} x the run's lr schedule")
        return ", ".join(parts)


KEYS: dict[str, Callable[[Any], Any]] = {
    "attn_mix_decay": lambda v: _boolean("attn_mix_decay", v),
    "attn_lr_mult": float,
    "attn_warmup_epochs": lambda v: _integer("attn_warmup_epochs", v),
    "attn_mix_init": float,
    "attn_mix_lr": float,
}
# Keys added after plans were first recorded, with the value that gives what the runs of such a plan got.
ADDED_LATER: dict[str, Any] = {"attn_mix_lr": 0.0}
# What runs made before these options got: Ultralytics' own groups. The default (no decay on the mix, lr x30 for new
# blocks, exact identity start, no warm-up) was chosen on the demo's fine-tuning, see docs/fine-tuning.md.
LEGACY = FineTuneProtocol(mix_decay=True, lr_mult=1.0, mix_lr=0.0)


def split_protocol(settings: dict[str, Any]) -> tuple[FineTuneProtocol, dict[str, Any]]:
    """Take the ``attn_*`` keys out of Ultralytics-style settings.

    Args:
        settings (dict[str, Any]): ``key=value`` settings, e.g. a command line's overrides.

    Returns:
        protocol (FineTuneProtocol): The protocol they set (defaults for the keys not given).
        rest (dict[str, Any]): The other settings, unchanged.

    Raises:
        ValueError: If a value does not parse, or a key starts with ``attn_`` but is not an option.
    """
    unknown = sorted(k for k in settings if k.startswith("attn_") and k not in KEYS)
    if unknown:
        raise ValueError(f"unknown fine-tuning protocol setting(s) {', '.join(unknown)}; known: {', '.join(KEYS)}")
    values = {k.removeprefix("attn_"): KEYS[k](v) for k, v in settings.items() if k in KEYS}
    return FineTuneProtocol(**values), {k: v for k, v in settings.items() if k not in KEYS}


def regroup(optimizer: Any, new: Iterable[nn.Parameter], mixes: Iterable[nn.Parameter], protocol: FineTuneProtocol):
    """Move new-block parameters into param groups of their own, as the protocol asks; the others keep their groups.

    Each moved parameter goes to a sibling of the group it was in, with the same hyperparameters, except ``lr``
    (times ``lr_mult``) and, for mixes without decay, ``weight_decay=0`` (``param_group`` label ``"mix"``). With
    ``lr_mult == 1`` only the mixes move, and only out of groups with weight decay.

    Args:
        optimizer (torch.optim.Optimizer): A freshly built optimizer (no ``initial_lr`` yet, no state).
        new (Iterable[nn.Parameter]): Parameters of the new blocks (mixes included).
        mixes (Iterable[nn.Parameter]): The ``identity_mix`` parameters among them.
        protocol (FineTuneProtocol): The protocol.

    Returns:
        (torch.optim.Optimizer): The same optimizer.
    """
    new_ids, mix_ids = {id(p) for p in new}, {id(p) for p in mixes}
    siblings: list[dict[str, Any]] = []
    scaled = protocol.lr_mult != 1
    for group in list(optimizer.param_groups):
        hyper = {k: v for k, v in group.items() if k != "params"}
        undecay = not protocol.mix_decay and bool(group.get("weight_decay"))
        moved_mix = [p for p in group["params"] if id(p) in mix_ids] if (scaled or undecay) else []
        moved = [p for p in group["params"] if id(p) in new_ids and id(p) not in mix_ids] if scaled else []
        if not (moved or moved_mix):
            continue
        gone = {id(p) for p in moved + moved_mix}
        group["params"] = [p for p in group["params"] if id(p) not in gone]
        lr = hyper["lr"] * protocol.lr_mult
        if moved:
            siblings.append({**hyper, "params": moved, "lr": lr})
        if moved_mix:
            no_decay = {"weight_decay": 0.0, "param_group": MIX_GROUP} if undecay else {}
            siblings.append({**hyper, "params": moved_mix, "lr": lr, **no_decay})
    for sibling in siblings:
        optimizer.add_param_group(sibling)
    return optimizer


def attach(model: Any, protocol: FineTuneProtocol) -> type:
    """Attach the protocol to a ``YOLO`` object for its next ``train()``; pass the returned class as ``trainer=``.

    ``YOLO(...).train(trainer=attach(yolo, protocol), ...)``: the trainer class builds the optimiser with the
    protocol's groups in every process (DDP workers rebuild it from its pickled class), and the callbacks added to
    ``model`` run the warm-up.

    Args:
        model (ultralytics.YOLO): The model to be trained.
        protocol (FineTuneProtocol): The protocol.

    Returns:
        (type): A subclass of the model's task trainer (`trainer_class`).
    """
    for event, callback in callbacks(protocol).items():
        model.add_callback(event, callback)
    return trainer_class(model.task_map[model.task]["trainer"], protocol)


def trainer_class(base: type, protocol: FineTuneProtocol) -> type:
    """Return a subclass of an Ultralytics trainer class whose ``build_optimizer`` applies the protocol.

    Args:
        base (type): An Ultralytics trainer class, e.g. ``DetectionTrainer``.
        protocol (FineTuneProtocol): The protocol.

    Returns:
        (type): The subclass; its ``attn_protocol`` attribute is ``protocol``.
    """

    def build_optimizer(self: Any, model: nn.Module, *args: Any, **kwargs: Any) -> Any:
        return build_with_protocol(self, lambda: base.build_optimizer(self, model, *args, **kwargs), model, protocol)

    return type(
        f"{base.__name__}WithAttnProtocol", (base,), {"build_optimizer": build_optimizer, "attn_protocol": protocol}
    )


def install_default(protocol: FineTuneProtocol) -> None:
    """Add the protocol's callbacks to Ultralytics' default callbacks (every model built afterwards in this process).

    Used by the ``yolo-attn train`` command, which hands its arguments to Ultralytics' own entry point: there the
    optimiser is built with the protocol by wrapping the trainer's ``build_optimizer`` at ``on_pretrain_routine_start``
    (single process; a multi-GPU run keeps Ultralytics' groups, with a warning; the warm-up applies on every rank).

    Args:
        protocol (FineTuneProtocol): The protocol.
    """
    from ultralytics.utils.callbacks import base

    for event, callback in callbacks(protocol, wrap=True).items():
        base.default_callbacks.setdefault(event, []).append(callback)


def build_with_protocol(trainer: Any, build: Callable[[], Any], model: nn.Module, protocol: FineTuneProtocol) -> Any:
    """Build the optimiser of ``model`` with ``build`` (Ultralytics' own), after the new mixes got their start value.

    Args:
        trainer (Any): The Ultralytics trainer (``resume`` keeps a resumed run's mixes as they are).
        build (Callable[[], Any]): Ultralytics' ``build_optimizer`` bound to its arguments.
        model (nn.Module): The model being trained.
        protocol (FineTuneProtocol): The protocol.

    Returns:
        (torch.optim.Optimizer): The optimiser, regrouped (`regroup`).
    """
    blocks = new_block_modules(model)
    mixes = [b.identity_mix for b in blocks.values() if getattr(b, "identity_mix", None) is not None]
    if protocol.mix_init and not getattr(trainer, "resume", False):
        for mix in mixes:
            if float(mix.detach()) == 0.0:  # just started as the identity (a resumed or re-tuned mix is kept)
                mix.data.fill_(protocol.mix_init)
    from ultralytics.utils import LOGGER

    optimizer = build()
    regroup(optimizer, [p for b in blocks.values() for p in b.parameters()], mixes, protocol)
    saved = resumed_param_groups(trainer)  # read once; None for a new run
    if protocol.mix_lr and mixes and not resumes_without_mix_rule(trainer, saved):
        step_mixes_by_adam(optimizer, mixes, protocol.mix_lr)
    if saved is not None and len(saved) != len(optimizer.param_groups):  # the run was trained with other groups
        LOGGER.warning(
            f"{PREFIX}{trainer.args.resume} was trained with {len(saved)} param groups, not this protocol's "
            f"{len(optimizer.param_groups)}: it resumes with Ultralytics' own groups, as it was trained"
        )
        return build()
    if blocks:
        LOGGER.info(f"{PREFIX}{len(blocks)} new attention block(s): {protocol.describe()}")
    return optimizer


ADAM_BETAS, ADAM_EPS = (0.9, 0.999), 1e-16  # eps far below any mix gradient seen (the smallest ~1e-9 on the demo)
ADAM_KEY = "attn_mix_adam"  # key, in a param group holding mixes, of their Adam moments: {index: [step, m, v]}


def step_mixes_by_adam(optimizer: Any, mixes: Iterable[nn.Parameter], lr: float) -> Any:
    """Step the ``identity_mix`` scalars by an Adam rule of their own, inside the run's optimizer, at its schedule.

    A step pre-hook of ``optimizer`` updates each mix with a gradient by Adam (betas `ADAM_BETAS`, bias-corrected),
    step size ``lr`` times its group's schedule (``group["lr"] / group["initial_lr"]``, the warm-up and lr curve that
    Ultralytics applies to the group; 1 before a scheduler set ``initial_lr``) and decoupled weight decay when its
    group has some; then clears the mix's gradient, so the optimizer's own rule (which skips parameters without a
    gradient: SGD, MuSGD, Adam, AdamW, ...) leaves it alone. The hook runs where the optimizer steps: after
    Ultralytics unscaled and clipped the gradients (and DDP averaged them, so every rank takes the same step); a
    non-finite gradient (an AMP overflow) is dropped, as the optimizer's step is skipped then. The moments are Python
    floats (float64) in the mix's param group (`ADAM_KEY`, by the mix's index in the group), not in
    ``optimizer.state`` (whose entries Adam, NAdam ... check for their own keys on load, and Ultralytics halves): the
    group's entries are saved with the optimizer state in every checkpoint, and a resumed run continues them.

    Args:
        optimizer (torch.optim.Optimizer): The run's optimizer, holding the mixes in its groups.
        mixes (Iterable[nn.Parameter]): The ``identity_mix`` parameters.
        lr (float): Step size of the rule at the schedule's peak.

    Returns:
        (torch.utils.hooks.RemovableHandle): The hook's handle.
    """
    ids = {id(p) for p in mixes}
    beta1, beta2 = ADAM_BETAS
    for group in optimizer.param_groups:  # marked from the start: a checkpoint saved before any step says so too
        if any(id(p) in ids for p in group["params"]):
            group.setdefault(ADAM_KEY, {})

    def adam_step(opt: Any, args: Any, kwargs: Any) -> None:
        for group in opt.param_groups:
            schedule = group["lr"] / group["initial_lr"] if group.get("initial_lr") else 1.0
            for index, p in enumerate(group["params"]):
                if id(p) not in ids or p.grad is None:
                    continue
                grad = float(p.grad.detach())
                p.grad = None
                if not math.isfinite(grad):  # an AMP overflow (a fused AdamW steps with found_inf)
                    continue
                moments = group.setdefault(ADAM_KEY, {})
                step, avg, sq = moments.get(index, moments.get(str(index), (0.0, 0.0, 0.0)))
                step, avg, sq = step + 1, beta1 * avg + (1 - beta1) * grad, beta2 * sq + (1 - beta2) * grad * grad
                moments[index] = [step, avg, sq]
                size = lr * schedule
                update = avg / (math.sqrt(sq / (1 - beta2**step)) + ADAM_EPS) * (size / (1 - beta1**step))
                with torch.no_grad():
                    value = float(p.detach()) * (1 - size * group.get("weight_decay", 0.0)) - update
                    p.fill_(value)

    return optimizer.register_step_pre_hook(adam_step)


def resumes_without_mix_rule(trainer: Any, groups: list[dict] | None) -> bool:
    """Return True when ``trainer`` resumes a run whose own optimizer stepped the mixes: it resumes so (warned).

    Such a run was trained with ``attn_mix_lr=0``, or before the option existed; it keeps the rule it was trained with.

    Args:
        trainer (Any): The Ultralytics trainer.
        groups (list[dict] | None): The param groups of the checkpoint it resumes from (`resumed_param_groups`).

    Returns:
        (bool): False for a new run, an unreadable optimizer state, or a checkpoint with the mixes' own moments
            (`ADAM_KEY`).
    """
    if groups is None or any(ADAM_KEY in group for group in groups):
        return False
    from ultralytics.utils import LOGGER

    LOGGER.warning(f"{PREFIX}{trainer.args.resume} was trained with its optimizer stepping the mixes: it resumes so")
    return True


def resumed_param_groups(trainer: Any) -> list[dict] | None:
    """Return the optimizer param groups of the checkpoint a trainer resumes from (None: not resuming, or unknown).

    A run keeps the groups it was trained with (its saved optimizer state holds them, with their learning rates): one
    started without the protocol (``YOLO(...).train()`` in Python) resumes without it.
    """
    if not getattr(trainer, "resume", False):
        return None
    try:
        return torch.load(str(trainer.args.resume), map_location="cpu", weights_only=False)["optimizer"]["param_groups"]
    except Exception:  # no readable optimizer state: Ultralytics' own resume reports the problem
        return None


def callbacks(protocol: FineTuneProtocol, wrap: bool = False) -> dict[str, Callable[[Any], None]]:
    """Return the trainer callbacks that apply ``protocol``, by Ultralytics event name.

    Args:
        protocol (FineTuneProtocol): The protocol.
        wrap (bool): Also wrap the trainer's ``build_optimizer`` at ``on_pretrain_routine_start`` (for trainers that
            are not a `trainer_class`).

    Returns:
        (dict[str, Callable[[Any], None]]): Event -> callback.
    """

    def on_pretrain_routine_start(trainer: Any) -> None:
        if getattr(trainer, "attn_protocol", None) is not None:
            return
        if getattr(trainer, "world_size", 0) > 1:  # this callback runs on rank 0 only: the ranks would differ
            from ultralytics.utils import LOGGER

            LOGGER.warning(
                f"{PREFIX}multi-GPU yolo-attn train keeps Ultralytics' own param groups (attn_mix_decay, attn_lr_mult, "
                "attn_mix_init, attn_mix_lr not applied); for them use yolo-attn compare, or in Python "
                "YOLO(...).train(trainer=yolo_attn.finetune.protocol.attach(model, protocol), ...)"
            )
            return
        original = trainer.build_optimizer

        def build_optimizer(model: nn.Module, *args: Any, **kwargs: Any) -> Any:
            return build_with_protocol(trainer, lambda: original(model, *args, **kwargs), model, protocol)

        trainer.build_optimizer = build_optimizer

    def on_pretrain_routine_end(trainer: Any) -> None:
        if not protocol.warmup_epochs:
            return
        model = getattr(trainer.model, "module", trainer.model)
        if not (getattr(model, "transfer_report", None) or {}).get("transferred"):
            from ultralytics.utils import LOGGER

            LOGGER.warning(f"{PREFIX}no pretrained weights: attn_warmup_epochs={protocol.warmup_epochs} ignored")
            return
        if protocol.warmup_epochs >= trainer.epochs:
            raise ValueError(f"attn_warmup_epochs={protocol.warmup_epochs} leaves none of {trainer.epochs} epochs")
        blocks = new_block_modules(model)
        new = {id(p) for b in blocks.values() for p in b.parameters()}
        frozen = [p for p in model.parameters() if id(p) not in new and p.requires_grad]
        inside = tuple(f"{path}." for path in blocks)
        bn = [n for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d) and not n.startswith(inside)]
        state = {"frozen": frozen, "trainable": bool(new), "bn": bn, "warming": False}
        state["ultralytics_freeze"] = list(trainer.freeze_layer_names)
        trainer.__dict__[STATE] = state

        def drop_frozen_grads(optimizer: Any, args: Any, kwargs: Any) -> None:
            if state["warming"]:
                for p in frozen:
                    p.grad = None

        trainer.optimizer.register_step_pre_hook(drop_frozen_grads)

    def on_train_epoch_start(trainer: Any) -> None:
        state = trainer.__dict__.get(STATE)
        if not state:
            return
        warming = trainer.epoch < protocol.warmup_epochs
        if warming == state["warming"]:
            return
        state["warming"] = warming
        for p in state["frozen"]:  # the baseline keeps its gradients (it has nothing to train): the hook drops them
            p.requires_grad_(not (warming and state["trainable"]))
            p.grad = None  # nor may gradients accumulated after the warm-up's last step reach the first step after it
        # Ultralytics keeps the BatchNorm layers it names here in eval mode (``_model_train``, after this callback)
        trainer.freeze_layer_names = state["ultralytics_freeze"] + (state["bn"] if warming else [])

    events = {"on_pretrain_routine_end": on_pretrain_routine_end, "on_train_epoch_start": on_train_epoch_start}
    events["on_model_save"] = save_full_precision  # the blocks' float32 tensors beside the fp16 checkpoint
    return {"on_pretrain_routine_start": on_pretrain_routine_start, **events} if wrap else events


def _boolean(key: str, value: Any) -> bool:
    """Parse a boolean setting (``True``/``False`` as Ultralytics types them, or the words)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"true", "1", "yes", "on"}:
        return True
    if text in {"false", "0", "no", "off"}:
        return False
    raise ValueError(f"{key} must be True or False, got {value!r}")


def _integer(key: str, value: Any) -> int:
    """Parse a whole-number setting."""
    if isinstance(value, bool) or float(value) != int(float(value)):
        raise ValueError(f"{key} must be a whole number, got {value!r}")
    return int(float(value))
