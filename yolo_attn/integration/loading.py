"""Loading: a wrapper around ``ultralytics.nn.tasks.BaseModel.load`` that transfers by YAML alignment.

``BaseModel.load`` (no subclass overrides it) is the one call that every way of loading pretrained weights reaches
(``YOLO(yaml).load(pt)``, ``pretrained=``, fine-tuning from a checkpoint, DDP workers, ``resume``). The wrapper aligns
the two model YAMLs (`finetune.transfer`, pure), hands the corresponding layers to Ultralytics' own load under their
target indices, and starts new blocks as the identity. It relies on ``tasks.load_checkpoint(weights) -> (model, ckpt)``,
the checkpoint keys ``ema`` / ``model``, and the model attributes ``yaml``, ``model`` (an ``nn.Sequential``),
``names``, ``pt_path`` and ``is_fused``.
"""

from __future__ import annotations

import copy
from pathlib import Path

from torch import nn
from ultralytics.nn import tasks
from ultralytics.utils import LOGGER

from yolo_attn import registry
from yolo_attn.finetune import transfer
from yolo_attn.integration.patches import original
from yolo_attn.modules.identity_start import start_as_identity


def base_model_load(self: tasks.BaseModel, weights: dict | nn.Module, verbose: bool = True) -> None:
    """Stand-in for ``BaseModel.load``: transfer by YAML alignment (see `load_pretrained`)."""
    load_pretrained(self, weights, verbose=verbose)


def load_pretrained(
    model: tasks.BaseModel, weights: str | Path | dict | nn.Module, verbose: bool = True
) -> transfer.TransferReport | None:
    """Load pretrained weights into a model, each source layer's tensors into the layer that corresponds to it.

    The correspondence comes from the two model YAMLs (``weights``' ``model.yaml`` and ``model.yaml``), see
    `yolo_attn.finetune.transfer`. The corresponding layers are then handed to Ultralytics' own ``BaseModel.load`` under
    their target indices, so everything else it does (a new class count, class names, the first convolution's channels)
    happens as for any model. Blocks of the target that received no tensor start as the identity when anything was
    transferred (``identity_start: false`` in the model YAML or ``YOLO_ATTN_IDENTITY_START=0`` opts out), so the model
    predicts what the source predicted. When neither model has yolo_attn rows and their rows are the same,
    Ultralytics' load runs unchanged.

    The report is also kept, as a plain dict, in ``model.transfer_report`` (it travels inside checkpoints) and logged
    as one line when ``verbose``.

    Args:
        model (tasks.BaseModel): The model to load into, e.g. ``YOLO("yolov8n-cbam.yaml").model``.
        weights (str | Path | dict | nn.Module): A checkpoint path, a checkpoint dict (``ema`` or ``model``) or a model.
        verbose (bool): Log Ultralytics' count and the yolo_attn summary.

    Returns:
        (transfer.TransferReport | None): What was transferred; None when either side has no model YAML to align
            (Ultralytics' load ran unchanged).
    """
    ultralytics_load = original("load", tasks.BaseModel.load)
    if isinstance(weights, (str, Path)):
        weights, _ = tasks.load_checkpoint(weights)
    source = (weights.get("ema") or weights["model"]) if isinstance(weights, dict) else weights
    src_yaml, tgt_yaml = getattr(source, "yaml", None), getattr(model, "yaml", None)
    src_layers, tgt_layers = getattr(source, "model", None), getattr(model, "model", None)
    if not (isinstance(src_yaml, dict) and isinstance(tgt_yaml, dict)) or not (
        isinstance(src_layers, nn.Sequential) and isinstance(tgt_layers, nn.Sequential)
    ):
        ultralytics_load(model, weights, verbose=verbose)
        return None
    source_state = source.state_dict()
    alignment = None
    if not (_has_our_rows(src_yaml) or _has_our_rows(tgt_yaml)) and _rows(src_yaml) == _rows(tgt_yaml):
        layer_map = {i: i for i in range(len(src_layers))}
    else:
        row_names = {row[2] for row in _rows(src_yaml) + _rows(tgt_yaml) if isinstance(row, (list, tuple))}
        canonical = registry.canonical_names(row_names)  # compositions (C3k2_EMA) stand where their host stood
        alignment = transfer.align(src_yaml, tgt_yaml, registry.channel_names(), canonical)
        layer_map = alignment.layer_map
    renamed, orphans = transfer.rename_keys(list(source_state), layer_map)
    if alignment is None:
        ultralytics_load(model, weights, verbose=verbose)
    else:
        target_state = model.state_dict()
        for s_key, t_key in renamed.items():  # the source's identity mixes need a place to land
            if s_key.endswith(".identity_mix") and t_key not in target_state:
                owner = model.get_submodule(t_key.rsplit(".", 1)[0])
                if registry.spec_of(owner) is not None:
                    start_as_identity(owner)
        ultralytics_load(model, _renamed_view(source, layer_map, len(tgt_layers)), verbose=verbose)
    landed, not_landed, first_shape = transfer.land(renamed, orphans, source_state, model.state_dict())

    new = transfer.blocks_without(transfer.outermost_attention_blocks(model), landed)
    start = bool(new) and bool(landed) and transfer.identity_start_enabled(tgt_yaml)
    for block in new.values():
        if start:
            start_as_identity(block)
    dropped = transfer.blocks_without(
        transfer.outermost_attention_blocks(source), {k for k in renamed if renamed[k] in landed}
    )
    target_state = model.state_dict()
    report = transfer.TransferReport(
        source=Path(getattr(source, "pt_path", None) or "module").name,
        source_tensors=len(source_state),
        transferred=len(landed),
        target_tensors=len(target_state),
        layer_map=[[s, t] for s, t in layer_map.items()],
        not_transferred=not_landed,
        first_difference=(alignment.first_difference if alignment else None) or (first_shape if not_landed else None),
        new_blocks={path: type(b).__name__ for path, b in new.items()},
        new_tensors=sum(1 for k in target_state if any(k.startswith(f"{p}.") for p in new)),
        identity_start=start,
        dropped_blocks={path: type(b).__name__ for path, b in dropped.items()},
        aligned=alignment is not None,
        replaced=_replaced_attention(model, layer_map),
    )
    if landed and not not_landed and not hasattr(model, "set_classes"):  # as Ultralytics does when all transfers
        names = getattr(source, "names", None)
        if isinstance(names, dict) and getattr(model, "names", None) == {i: str(i) for i in range(len(names))}:
            model.names = dict(names)
    model.transfer_report = report.to_dict()
    if verbose:
        LOGGER.info(report.summary())
    return report


def transfer_report_of(weights: str | Path) -> dict | None:
    """Return the transfer report a checkpoint's model carries (set by `load_pretrained`), or None.

    Args:
        weights (str | Path): An Ultralytics checkpoint, e.g. a run's ``best.pt``.

    Returns:
        (dict | None): ``TransferReport.to_dict()`` of the load that gave the model its starting weights; None for a
            model trained from scratch.
    """
    model, _ = tasks.load_checkpoint(weights)
    return getattr(model, "transfer_report", None)


def _replaced_attention(model: nn.Module, layer_map: dict[int, int]) -> dict[str, str]:
    """Target layer path -> what replaced the pretrained attention there: the PSABlock attentions of ``C2PSA_B``."""
    replaced = {}
    for t in sorted(layer_map.values()):
        layer = model.model[t]
        host, inner = getattr(layer, "host", None), getattr(layer, "block_spec", None)
        if host is not None and inner is not None and host.name == "C2PSA":
            replaced[f"model.{t}"] = f"the attention of {len(layer.m)} PSABlock(s) by {inner.name}"
    return replaced


def _rows(d: dict) -> list:
    """Return the backbone + head rows of a model YAML dict."""
    return list(d.get("backbone") or []) + list(d.get("head") or [])


def _has_our_rows(d: dict) -> bool:
    return any(
        isinstance(row[2], str) and registry.get(row[2]) is not None
        for row in _rows(d)
        if isinstance(row, (list, tuple))
    )


def _renamed_view(source: nn.Module, layer_map: dict[int, int], n_layers: int) -> nn.Module:
    """Return a shallow view of a source model whose ``model`` lists each source layer at its target index.

    Positions with no corresponding source layer hold an empty module, so no tensor reaches a layer that does not
    correspond to it. The view shares the source's layers and attributes (names, pt_path, yaml); it reports the
    source's fused state, which its few layers might otherwise misstate.
    """
    view = copy.copy(source)
    view.__dict__["_modules"] = dict(source._modules)
    slots = [nn.Module() for _ in range(n_layers)]
    for s, t in layer_map.items():
        slots[t] = source.model[s]
    view.__dict__["_modules"]["model"] = nn.Sequential(*slots)
    if hasattr(source, "is_fused"):
        view.__dict__["is_fused"] = source.is_fused
    return view
