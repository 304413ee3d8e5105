"""The Ultralytics internals yolo_attn relies on, as checks a test runs against the installed release.

Each entry names one internal (the same names as the list in `yolo_attn.integration`'s docstring) and a check that
returns None when the installed Ultralytics still has it as relied upon, or what differs.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable

from torch import nn


def _params(fn: Callable, expected: tuple[str, ...]) -> str | None:
    names = tuple(inspect.signature(fn).parameters)
    return None if names[: len(expected)] == expected else f"parameters {names}, expected to start with {expected}"


def _attrs(obj: object, names: tuple[str, ...]) -> str | None:
    missing = [n for n in names if not hasattr(obj, n)]
    return f"missing attributes {missing}" if missing else None


def _theirs(key: str, current: Callable) -> Callable:
    """Ultralytics' own function: the original a patch replaced while registered, else the attribute itself."""
    from yolo_attn.integration.patches import original

    return original(key, current)


def _parse_model() -> str | None:
    from ultralytics.nn import tasks

    return _params(_theirs("parse_model", tasks.parse_model), ("d", "ch", "verbose"))


def _parse_model_result() -> str | None:
    from ultralytics.nn import tasks

    d = {"nc": 1, "backbone": [[-1, 1, "Conv", [8, 3, 2]]], "head": [[-1, 1, "nn.Identity", []]]}
    model, save = _theirs("parse_model", tasks.parse_model)(d, 3, verbose=False)
    if not isinstance(model, nn.Sequential) or not isinstance(save, list):
        return f"returned {type(model).__name__}, {type(save).__name__}; expected (nn.Sequential, list)"
    return _attrs(model[0], ("i", "f", "type", "np"))


def _layer_table() -> str | None:
    from ultralytics.nn import tasks
    from ultralytics.utils import LOGGER

    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())
    level = LOGGER.level
    LOGGER.addHandler(handler)
    LOGGER.setLevel(logging.INFO)
    try:
        d = {"nc": 1, "backbone": [[-1, 1, "Conv", [8, 3, 2]]], "head": [[-1, 1, "nn.Identity", []]]}
        _theirs("parse_model", tasks.parse_model)(d, 3, verbose=True)
    finally:
        LOGGER.removeHandler(handler)
        LOGGER.setLevel(level)
    rows = [line for line in lines if line[:3].strip().isdigit()]
    if [int(line[:3]) for line in rows] != [0, 1]:
        return f"layer lines do not start with the layer index in 3 characters: {lines}"
    return None


def _yaml_model_load() -> str | None:
    from ultralytics.engine import model as engine_model
    from ultralytics.nn import tasks

    theirs = _theirs("yaml_model_load", tasks.yaml_model_load)
    return _attrs(engine_model, ("yaml_model_load",)) or _params(theirs, ("path",))


def _guess_model_scale() -> str | None:
    from ultralytics.nn import tasks

    return None if tasks.guess_model_scale("yolov8s-cbam.yaml") == "s" else "no longer reads the scale from a name"


def _base_model() -> str | None:
    from ultralytics.nn import tasks

    load, fuse = _theirs("load", tasks.BaseModel.load), _theirs("fuse", tasks.BaseModel.fuse)
    return _params(load, ("self", "weights", "verbose")) or _params(fuse, ("self", "verbose"))


def _load_checkpoint() -> str | None:
    from ultralytics.nn import tasks

    return _params(tasks.load_checkpoint, ("weight",)) or _params(tasks.torch_safe_load, ("weight", "safe_only"))


def _callbacks() -> str | None:
    from ultralytics.utils.callbacks import base

    from yolo_attn.integration.workers import DDP_EVENT

    ok = isinstance(base.default_callbacks.get(DDP_EVENT), list)
    return None if ok else f"default_callbacks has no list for {DDP_EVENT!r}"


def _c2f_attributes() -> str | None:
    from ultralytics.nn.modules.block import Bottleneck, C2f, C3k2

    c2f, c3k2, bottleneck = C2f(16, 16, 1, True), C3k2(16, 16, 1, True), Bottleneck(16, 16)
    return (
        _attrs(c2f, ("cv1", "cv2", "m", "c"))
        or _attrs(c3k2, ("cv1", "cv2", "m", "c"))
        or _attrs(bottleneck, ("cv1", "cv2", "add"))
        or _attrs(bottleneck.cv2, ("conv",))
        or _params(C2f, ("c1", "c2", "n", "shortcut", "g", "e"))
        or _params(C3k2, ("c1", "c2", "n", "c3k", "e", "attn", "g", "shortcut"))
    )


def _checkpoint_keys() -> str | None:
    from ultralytics.engine.trainer import BaseTrainer

    source = inspect.getsource(BaseTrainer.save_model)
    missing = [k for k in ('"epoch"', '"model"', '"ema"', '"optimizer"') if k not in source]
    return f"BaseTrainer.save_model no longer writes {missing}" if missing else None


def _safe_load() -> str | None:
    import torch
    from ultralytics.utils import SAFE_LOAD  # noqa: F401  (the ULTRALYTICS_SAFE_LOAD flag)

    return _attrs(torch.serialization, ("add_safe_globals", "get_safe_globals", "clear_safe_globals"))


def _base_yamls() -> str | None:
    from yolo_attn.cfg.generated import FAMILIES, TASKS, base_yaml

    missing = [base_yaml(f, t).name for f in FAMILIES for t in (None, *TASKS) if not base_yaml(f, t).is_file()]
    return f"no packaged {', '.join(missing)}" if missing else None


def _trainer_args_yaml() -> str | None:
    from ultralytics.engine.trainer import BaseTrainer

    source = inspect.getsource(BaseTrainer.__init__)
    saved, called = source.find('"args.yaml"'), source.find('"on_pretrain_routine_start"')
    ok = "self.save_dir" in source and -1 < saved < called
    return None if ok else "BaseTrainer.__init__ no longer saves args.yaml before on_pretrain_routine_start"


#: Internal -> check. The keys are the names listed in `yolo_attn.integration`'s docstring.
CHECKS: dict[str, Callable[[], str | None]] = {
    "ultralytics.nn.tasks.parse_model(d, ch, verbose)": _parse_model,
    "parse_model -> (nn.Sequential, save); layers carry i, f, type, np": _parse_model_result,
    "layer table lines start with the layer index in 3 characters": _layer_table,
    "ultralytics.nn.tasks.yaml_model_load(path), also imported as ultralytics.engine.model.yaml_model_load": (
        _yaml_model_load
    ),
    "ultralytics.nn.tasks.guess_model_scale(path)": _guess_model_scale,
    "ultralytics.nn.tasks.BaseModel.load(self, weights, verbose) and BaseModel.fuse(self, verbose)": _base_model,
    "ultralytics.nn.tasks.load_checkpoint(weight) and torch_safe_load(weight, safe_only)": _load_checkpoint,
    "ultralytics.utils.callbacks.base.default_callbacks['on_pretrain_routine_start']": _callbacks,
    "C2f / C3k2 attributes cv1, cv2, m, c and args; Bottleneck cv1, cv2, add; Conv.conv": _c2f_attributes,
    "checkpoint keys epoch, model, ema, optimizer (BaseTrainer.save_model)": _checkpoint_keys,
    "ULTRALYTICS_SAFE_LOAD (ultralytics.utils.SAFE_LOAD) and torch.serialization safe globals": _safe_load,
    "ultralytics/cfg/models/{v8,11,26}/{family}[-{task}].yaml, the bases of generated YAMLs": _base_yamls,
    "BaseTrainer.save_dir and its args.yaml, written before the on_pretrain_routine_start callbacks": (
        _trainer_args_yaml
    ),
}


def check_internals() -> dict[str, str | None]:
    """Run every check: internal -> None (as relied upon) or what differs in the installed Ultralytics."""
    results = {}
    for name, check in CHECKS.items():
        try:
            results[name] = check()
        except Exception as e:  # a missing name or a changed call is a finding, reported with the internal's name
            results[name] = f"{type(e).__name__}: {e}"
    return results
