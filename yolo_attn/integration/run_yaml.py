"""The run folder keeps the model YAML the package provided, so a run reproduces without the package's generator.

A model named ``yolo11n-ema.yaml`` is generated (or, for the shipped names, read from the package). The model carries
the resulting dict (``model.yaml``, saved in every checkpoint); this default training callback also writes it next to
``args.yaml`` (``runs/detect/train/yolo11n-ema.yaml``) and points ``args.yaml``'s ``model`` at that copy, so
``yolo train cfg=runs/detect/train/args.yaml`` rebuilds the same network from files alone. It relies on the
trainer's ``args.model``, ``save_dir`` and ``args.yaml`` (`BaseTrainer.__init__` writes it before the
``on_pretrain_routine_start`` callbacks run) and ``ultralytics.utils.callbacks.base.default_callbacks``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ultralytics.utils import RANK, YAML
from ultralytics.utils.callbacks import base as callbacks_base

from yolo_attn.integration.lookup import package_yaml_text

EVENT = "on_pretrain_routine_start"


def save_model_yaml(trainer: Any) -> Path | None:
    """Write the package-provided model YAML of ``trainer.args.model`` into the run folder (rank 0 only).

    Args:
        trainer (Any): The Ultralytics trainer (``args.model``, ``save_dir``).

    Returns:
        (Path | None): The file written, or None when the model is a file, an Ultralytics config or a checkpoint.
    """
    model = getattr(trainer.args, "model", None)
    if RANK not in {-1, 0} or not isinstance(model, str) or Path(model).suffix not in {".yaml", ".yml"}:
        return None
    text = package_yaml_text(model)
    if text is None:
        return None
    save_dir = Path(trainer.save_dir)
    out = save_dir / Path(model).name
    out.write_text(text)
    args_file = save_dir / "args.yaml"
    if args_file.is_file():
        args = YAML.load(args_file)
        args["model"] = str(out)
        YAML.save(args_file, args)
    return out


def add_callback() -> None:
    """Append `save_model_yaml` to Ultralytics' default callbacks."""
    callbacks_base.default_callbacks.setdefault(EVENT, []).append(save_model_yaml)


def remove_callback() -> None:
    """Remove `save_model_yaml` from Ultralytics' default callbacks."""
    callbacks = callbacks_base.default_callbacks.get(EVENT, [])
    while save_model_yaml in callbacks:
        callbacks.remove(save_model_yaml)
