"""The one seam between yolo_attn and Ultralytics.

Everything that knows Ultralytics internals lives here, so a new Ultralytics release touches this file only:

- YAML names -> block classes, with input channels inferred at every scale and for any integer ``from``.
- A wrapper around ``ultralytics.nn.tasks.parse_model``: it swaps our rows for placeholders that parse_model already
  knows (``nn.Identity`` for channel-preserving blocks, the parent block for C2f-like ones), lets parse_model build and
  scale the network, learns each placeholder's input shape from one tiny forward pass, then swaps in the real blocks.
  It depends only on parse_model's signature ``(d, ch, verbose)`` and its return value ``(nn.Sequential, save)``.
- A wrapper around ``yaml_model_load`` (in ``ultralytics.nn.tasks`` and ``ultralytics.engine.model``): Ultralytics
  finds ``yolov8-cbam.yaml`` for ``yolov8n-cbam.yaml`` by deleting the scale letter after the first "digit + n/s/m/l/x"
  anywhere in the whole path, so a folder such as ``exp5s/`` or ``tmp.S5ngd/`` gets mangled and the file is not found.
  The wrapper applies that rule to the file name only, and only when Ultralytics' own lookup would fail. It also finds
  the YAMLs shipped in the package (``yolo_attn/model_yamls``) by bare name, as Ultralytics finds its own
  ``yolov8n.yaml``: ``model=yolo26n-cbam.yaml`` works from any folder; a local file of that name still wins.
- The allow-list for ``ULTRALYTICS_SAFE_LOAD=1`` checkpoint loading.
- A wrapper around ``BaseModel.fuse``: Ultralytics folds the BatchNorms of its own layers only (it walks the modules
  looking for its Conv classes), so the wrapper first calls ``fuse()`` on our blocks (SAM, CBAM's spatial gate,
  CoordAtt, also inside CA_C2f) and then Ultralytics' own. ``predict``, ``val`` and ``export`` all call it.
- DDP visibility: a default training callback defined here travels (pickled by reference) to every DDP worker, whose
  unpickling imports and registers yolo_attn before the worker builds the model.
- A wrapper around ``ultralytics.nn.tasks.BaseModel.load`` (no subclass overrides it), the one call that every way of
  loading pretrained weights reaches (``YOLO(yaml).load(pt)``, ``pretrained=``, fine-tuning from a checkpoint, DDP
  workers, ``resume``): it transfers tensors by aligning the two model YAMLs (`yolo_attn.transfer`), then lets
  Ultralytics' own load copy them, and starts new attention blocks as the identity.

YAML names resolve to our blocks first. Ultralytics' own simplified ``CBAM``, ``ChannelAttention`` and
``SpatialAttention`` (``ultralytics.nn.modules.conv``) are never reachable from a YAML (parse_model does not import
them), so the names are free; in Python, ``yolo_attn.CBAM`` is ours and ``ultralytics.nn.modules.CBAM`` is theirs.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import logging
import pkgutil
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn
from ultralytics.engine import model as engine_model
from ultralytics.nn import tasks
from ultralytics.nn.modules import C2f, C3k2
from ultralytics.utils import LOGGER, YAML
from ultralytics.utils.callbacks import base as callbacks_base

import yolo_attn.modules as modules_package
from yolo_attn import transfer
from yolo_attn.modules import (
    CBAM,
    ECA,
    MHSA,
    SAM,
    SE,
    AttentionBlock,
    CA_C2f,
    CA_C3k2,
    ChannelAttention,
    CoordAtt,
    SeparableSelfAttention,
    SpatialAttention,
)
from yolo_attn.modules.fusion import fuse_blocks

#: Channel-preserving blocks: YAML args are everything after the inferred input channels ``c1``.
BLOCKS: dict[str, type[nn.Module]] = {
    "SE": SE,
    "ChannelAttention": ChannelAttention,
    "SpatialAttention": SpatialAttention,
    "CBAM": CBAM,
    "ECA": ECA,
    "SAM": SAM,
    "CoordAtt": CoordAtt,
    "MHSA": MHSA,
    "SeparableSelfAttention": SeparableSelfAttention,
}

#: Blocks that extend an Ultralytics block: same YAML args as the parent, scaled like it.
EXTENDED_BLOCKS: dict[str, tuple[type[nn.Module], type[nn.Module]]] = {
    "CA_C2f": (CA_C2f, C2f),
    "CA-C2f": (CA_C2f, C2f),
    "CA_C3k2": (CA_C3k2, C3k2),
}

PROBE_SIZE = 64  # side of the zero image used to learn each placeholder's input shape (a multiple of stride 32)
DEFAULT_IMGSZ = 640  # Ultralytics' default image size; spatial kernels must fit the feature map at this size
DDP_EVENT = "on_pretrain_routine_start"

SCALE_IN_NAME = re.compile(r"(\d+)([nslmx])(.+)?$")  # yolov8n-cbam -> yolov8-cbam, Ultralytics' naming rule
MODEL_YAMLS_DIR = Path(__file__).resolve().parent / "model_yamls"  # shipped variants, found by bare name

#: Rows that stand where an Ultralytics row stood, for aligning checkpoints: CA_C2f holds a C2f's tensors.
CANONICAL: dict[str, str] = {name: parent.__name__ for name, (_, parent) in EXTENDED_BLOCKS.items()}

_ULTRALYTICS_FUSE = tasks.BaseModel.fuse  # in case a copy of `fuse` outlives unregister()
_state: dict[str, Any] = {"parse_model": None, "yaml_model_load": None, "load": None, "fuse": None}


class YAMLRowError(ValueError):
    """A model YAML row naming a yolo_attn block is wrong; the message names the layer, the block and the fix."""


def register() -> None:
    """Make yolo_attn blocks usable from Ultralytics model YAMLs, checkpoints and DDP workers. Idempotent."""
    if is_registered():
        return
    _state["parse_model"], _state["yaml_model_load"] = tasks.parse_model, tasks.yaml_model_load
    _state["load"] = tasks.BaseModel.load
    tasks.parse_model = parse_model
    tasks.yaml_model_load = engine_model.yaml_model_load = yaml_model_load
    tasks.BaseModel.load = _base_model_load
    torch.serialization.add_safe_globals(list(_block_classes()))
    callbacks_base.default_callbacks.setdefault(DDP_EVENT, []).append(register_in_worker)
    _state["fuse"], tasks.BaseModel.fuse = tasks.BaseModel.fuse, fuse


def unregister() -> None:
    """Restore Ultralytics exactly as it was before :func:`register`."""
    if not is_registered():
        return
    tasks.parse_model = _state["parse_model"]
    tasks.yaml_model_load = engine_model.yaml_model_load = _state["yaml_model_load"]
    tasks.BaseModel.load = _state["load"]
    _state["parse_model"] = _state["yaml_model_load"] = _state["load"] = None
    ours = set(_block_classes())
    kept = [g for g in torch.serialization.get_safe_globals() if (g[0] if isinstance(g, tuple) else g) not in ours]
    torch.serialization.clear_safe_globals()
    torch.serialization.add_safe_globals(kept)
    callbacks_base.default_callbacks[DDP_EVENT].remove(register_in_worker)
    tasks.BaseModel.fuse, _state["fuse"] = _state["fuse"], None


def is_registered() -> bool:
    """Return True while Ultralytics builds models through the yolo_attn wrapper."""
    return _state["parse_model"] is not None and tasks.parse_model is parse_model


def register_in_worker(trainer: Any = None) -> None:
    """Training callback that registers yolo_attn; its pickled reference makes DDP workers import the package.

    Args:
        trainer (Any): The Ultralytics trainer calling back (unused).
    """
    register()


def _base_model_load(self: tasks.BaseModel, weights: dict | nn.Module, verbose: bool = True) -> None:
    """Stand-in for ``BaseModel.load``: transfer by YAML alignment (see `load_pretrained`)."""
    load_pretrained(self, weights, verbose=verbose)


def load_pretrained(
    model: tasks.BaseModel, weights: str | Path | dict | nn.Module, verbose: bool = True
) -> transfer.TransferReport | None:
    """Load pretrained weights into a model, each source layer's tensors into the layer that corresponds to it.

    The correspondence comes from the two model YAMLs (``weights``' ``model.yaml`` and ``model.yaml``), see
    `yolo_attn.transfer`. The corresponding layers are then handed to Ultralytics' own ``BaseModel.load`` under their
    target indices, so everything else it does (a new class count, class names, the first convolution's channels)
    happens as for any model. Attention blocks of the target that received no tensor start as the identity when
    anything was transferred (``identity_start: false`` in the model YAML or ``YOLO_ATTN_IDENTITY_START=0`` opts out),
    so the model predicts what the source predicted. When neither model has yolo_attn rows and their rows are the
    same, Ultralytics' load runs unchanged.

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
    original = _state["load"] or tasks.BaseModel.load
    if isinstance(weights, (str, Path)):
        weights, _ = tasks.load_checkpoint(weights)
    source = (weights.get("ema") or weights["model"]) if isinstance(weights, dict) else weights
    src_yaml, tgt_yaml = getattr(source, "yaml", None), getattr(model, "yaml", None)
    src_layers, tgt_layers = getattr(source, "model", None), getattr(model, "model", None)
    if not (isinstance(src_yaml, dict) and isinstance(tgt_yaml, dict)) or not (
        isinstance(src_layers, nn.Sequential) and isinstance(tgt_layers, nn.Sequential)
    ):
        original(model, weights, verbose=verbose)
        return None
    source_state = source.state_dict()
    alignment = None
    if not (_has_our_rows(src_yaml) or _has_our_rows(tgt_yaml)) and _rows(src_yaml) == _rows(tgt_yaml):
        layer_map = {i: i for i in range(len(src_layers))}
    else:
        alignment = transfer.align(src_yaml, tgt_yaml, set(BLOCKS), CANONICAL)
        layer_map = alignment.layer_map
    renamed, orphans = transfer.rename_keys(list(source_state), layer_map)
    if alignment is None:
        original(model, weights, verbose=verbose)
    else:
        target_state = model.state_dict()
        for s_key, t_key in renamed.items():  # the source's identity mixes need a place to land
            if s_key.endswith(".identity_mix") and t_key not in target_state:
                owner = model.get_submodule(t_key.rsplit(".", 1)[0])
                if isinstance(owner, AttentionBlock):
                    owner.start_as_identity()
        original(model, _renamed_view(source, layer_map, len(tgt_layers)), verbose=verbose)
    landed, not_landed, first_shape = transfer.land(renamed, orphans, source_state, model.state_dict())

    new = transfer.blocks_without(transfer.outermost_attention_blocks(model), landed)
    start = bool(new) and bool(landed) and transfer.identity_start_enabled(tgt_yaml)
    for block in new.values():
        if start:
            block.start_as_identity()
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


def _rows(d: dict) -> list:
    """Return the backbone + head rows of a model YAML dict."""
    return list(d.get("backbone") or []) + list(d.get("head") or [])


def _has_our_rows(d: dict) -> bool:
    return any(isinstance(row[2], str) and _is_ours(row[2]) for row in _rows(d) if isinstance(row, (list, tuple)))


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


def _block_classes() -> Iterator[type[nn.Module]]:
    """Yield every nn.Module subclass defined in ``yolo_attn.modules`` (the checkpoint allow-list)."""
    for info in pkgutil.iter_modules(modules_package.__path__, f"{modules_package.__name__}."):
        module = importlib.import_module(info.name)
        for obj in vars(module).values():
            if isinstance(obj, type) and issubclass(obj, nn.Module) and obj.__module__ == module.__name__:
                yield obj


def fuse(self: tasks.BaseModel, *args: Any, **kwargs: Any) -> tasks.BaseModel:
    """Fold the BatchNorms of yolo_attn blocks, then run Ultralytics' ``BaseModel.fuse`` (same arguments and return).

    Args:
        self (tasks.BaseModel): The model.
        *args (Any): Passed on to Ultralytics' ``fuse`` (``verbose``, ``imgsz``).
        **kwargs (Any): Passed on likewise.

    Returns:
        (tasks.BaseModel): What Ultralytics' ``fuse`` returns (the model itself).
    """
    fuse_blocks(self)
    return (_state["fuse"] or _ULTRALYTICS_FUSE)(self, *args, **kwargs)


def yaml_model_load(path: str | Path) -> dict:
    """Load a model YAML like Ultralytics' ``yaml_model_load``, also from scale-like folders and shipped bare names.

    Ultralytics maps a scaled name to its file (``yolov8n-cbam.yaml`` -> ``yolov8-cbam.yaml``) with a pattern applied to
    the whole path string, which also rewrites folder names such as ``exp5s``. Here the pattern is applied to the file
    name only, and only when the scaled file itself does not exist. Lookup order: the path as given (a local file wins),
    its file-name-unified twin next to it, Ultralytics' own lookup (its packaged configs), then, for a bare name only,
    :data:`MODEL_YAMLS_DIR` with the same scale-letter rule.

    Args:
        path (str | Path): Model YAML path, e.g. ``model_yamls/yolov8n-cbam.yaml``, or a bare name such as
            ``yolo26n-cbam.yaml``.

    Returns:
        (dict): The model dict, with ``scale`` taken from the file name and ``yaml_file`` set (to ``path`` as given), as
            Ultralytics does.

    Raises:
        FileNotFoundError: When no step finds the file; the message lists the shipped variants for a bare name.
    """
    original = _state["yaml_model_load"] or tasks.yaml_model_load
    path = Path(path)
    unified = _unified(path)
    if not path.exists() and unified != path and unified.exists():
        return _load_scaled(unified, path)
    try:
        return original(path)
    except FileNotFoundError:
        shipped = find_shipped_yaml(path)
        if shipped is None:
            if path.name == str(path) and path.suffix in {".yaml", ".yml"}:
                names = ", ".join(p.name for p in sorted(MODEL_YAMLS_DIR.glob("*.yaml"))) or "none there"
                raise FileNotFoundError(
                    f"Model YAML '{path}' not found in the working folder, in Ultralytics' configs or among "
                    f"yolo_attn's shipped YAMLs ({MODEL_YAMLS_DIR}: {names}; add a scale letter, e.g. "
                    "yolo26n-cbam.yaml)"
                ) from None
            raise
        return _load_scaled(shipped, path)


def find_shipped_yaml(name: str | Path) -> Path | None:
    """Return the shipped model YAML a bare name refers to, e.g. ``yolo26n-cbam.yaml`` -> ``.../yolo26-cbam.yaml``.

    Args:
        name (str | Path): A bare file name (no folder); a name with a folder returns None.

    Returns:
        (Path | None): The file in :data:`MODEL_YAMLS_DIR` (exact name first, then without the scale letter), or None.
    """
    name = Path(name)
    if name.name != str(name):
        return None
    for candidate in (MODEL_YAMLS_DIR / name.name, MODEL_YAMLS_DIR / _unified(name).name):
        if candidate.is_file():
            return candidate
    return None


def _unified(path: Path) -> Path:
    """Drop the scale letter from the file name only: ``exp5s/yolov8n-cbam.yaml`` -> ``exp5s/yolov8-cbam.yaml``."""
    return path.with_name(SCALE_IN_NAME.sub(r"\1\3", path.name))


def _load_scaled(file: Path, name: Path) -> dict:
    """Load ``file`` as Ultralytics loads a model YAML called ``name``: scale from the name, ``yaml_file`` = name."""
    d = YAML.load(file)
    d["scale"] = tasks.guess_model_scale(name)
    d["yaml_file"] = str(name)
    return d


def parse_model(d: dict, ch: int, verbose: bool = True) -> tuple[nn.Sequential, list[int]]:
    """Build a model from a YAML dict like Ultralytics' ``parse_model``, also accepting yolo_attn blocks.

    Args:
        d (dict): Model dictionary from the YAML (``backbone``, ``head``, ``scales``...).
        ch (int): Input image channels.
        verbose (bool): Print the layer table, with our blocks and their real args.

    Returns:
        model (nn.Sequential): The layers, each with Ultralytics' ``i``, ``f``, ``type`` and ``np`` attributes.
        save (list[int]): Indices of layers whose outputs later layers read.
    """
    original = _state["parse_model"] or tasks.parse_model
    rows = list(d.get("backbone", [])) + list(d.get("head", []))
    ours = {i: row for i, row in enumerate(rows) if isinstance(row[2], str) and _is_ours(row[2])}
    if not ours:
        return original(d, ch, verbose=verbose)

    for i, row in ours.items():
        _check_row(i, row)
    placeholder_d = _with_placeholders(d, ours)
    records = _LogCapture()
    with records:
        model, save = original(placeholder_d, ch, verbose=verbose)
    shapes = _probe_input_shapes(model, ch, set(ours))
    table_lines = {}
    for i, row in ours.items():
        block, args = _build_real(i, row, model[i], shapes[i])
        block.i, block.f, block.type = i, row[0], f"{type(_first(block)).__module__}.{type(_first(block)).__qualname__}"
        block.np = sum(p.numel() for p in block.parameters())
        model[i] = block
        n = len(block) if isinstance(block, nn.Sequential) else 1
        table_lines[i] = f"{i:>3}{row[0]!s:>20}{n:>3}{block.np:10.0f}  {block.type:<45}{args!s:<30}"
    records.replay(table_lines)
    return model, save


def _is_ours(name: str) -> bool:
    return name in BLOCKS or name in EXTENDED_BLOCKS


def _first(block: nn.Module) -> nn.Module:
    """Return the block itself, or its first repeat when a row has ``n > 1``."""
    return block[0] if isinstance(block, nn.Sequential) else block


def _yaml_args(args: list) -> tuple[list, dict]:
    """Split YAML args into positional args and an optional trailing mapping of keyword args."""
    args = list(args or [])
    if args and isinstance(args[-1], dict):
        return args[:-1], dict(args[-1])
    return args, {}


def _expected(name: str) -> str:
    """Describe the YAML args a block expects, e.g. ``CBAM [r=16, k=7]``."""
    if name in EXTENDED_BLOCKS:
        parent = EXTENDED_BLOCKS[name][1]
        params = [p for p in list(inspect.signature(parent).parameters.values())[1:] if p.name != "n"]
        return (
            f"{name} [{', '.join(_describe(p) for p in params)}] (same args as {parent.__name__}; its repeat count n "
            f"is the row's second field), e.g. [-1, 3, {name}, [256, True]]"
        )
    params = list(inspect.signature(BLOCKS[name]).parameters.values())[1:]
    return f"{name} [{', '.join(_describe(p) for p in params)}] (no channel argument: input channels are inferred)"


def _describe(p: inspect.Parameter) -> str:
    return p.name if p.default is inspect.Parameter.empty else f"{p.name}={p.default!r}"


def _row_error(i: int, row: list, problem: str) -> YAMLRowError:
    f, n, name, args = row
    return YAMLRowError(f"model YAML layer {i} [{f}, {n}, {name}, {args}]: {problem}. Expected {_expected(name)}.")


def _check_row(i: int, row: list) -> None:
    """Check what can be checked before the network exists: ``from``, repeats and the args' arity and names."""
    f, n, name, args = row
    if not isinstance(f, int) or isinstance(f, bool):
        raise _row_error(i, row, f"'from' must be one integer layer index, got {f!r}; {name} takes a single input")
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise _row_error(i, row, f"repeats must be a positive integer, got {n!r}")
    if not isinstance(args, list):
        raise _row_error(i, row, f"args must be a list, got {args!r}")
    if name in BLOCKS:
        positional, keywords = _yaml_args(args)
        try:
            inspect.signature(BLOCKS[name]).bind(0, *positional, **keywords)
        except TypeError as e:
            raise _row_error(i, row, f"bad args ({e})") from None
    else:
        _check_extended_args(i, row)


def _check_extended_args(i: int, row: list) -> None:
    """Check a C2f-like row's args the way parse_model will use them: ``[c2, *rest]`` -> ``parent(c1, c2, n, *rest)``.

    parse_model reads ``args[0]`` as the output channels and inserts the repeat count after it, so an empty list would
    fail there with a bare ``IndexError`` and a surplus arg with a bare ``TypeError`` naming the parent class.
    """
    _, n, name, args = row
    if not args:
        raise _row_error(i, row, "args are empty, but the first arg (c2, the output channels) is required")
    c2 = args[0]
    if isinstance(c2, bool) or not isinstance(c2, (int, float)) or c2 <= 0:
        raise _row_error(i, row, f"the first arg must be the output channels c2 (a number), got {c2!r}")
    parent = EXTENDED_BLOCKS[name][1]
    try:
        inspect.signature(parent).bind(0, c2, n, *args[1:])
    except TypeError as e:
        raise _row_error(i, row, f"bad args ({e})") from None


def _with_placeholders(d: dict, ours: dict[int, list]) -> dict:
    """Return a copy of ``d`` whose yolo_attn rows name blocks that parse_model knows."""
    d = copy.deepcopy(d)
    n_backbone = len(d.get("backbone", []))
    for i, (f, n, name, args) in ours.items():
        placeholder = [f, n, "nn.Identity", []] if name in BLOCKS else [f, n, EXTENDED_BLOCKS[name][1].__name__, args]
        section, j = ("backbone", i) if i < n_backbone else ("head", i - n_backbone)
        d[section][j] = placeholder
    return d


def _probe_input_shapes(model: nn.Sequential, ch: int, wanted: set[int]) -> dict[int, torch.Size]:
    """Run a zero image through the layers up to the last wanted one and record each wanted layer's input shape.

    Args:
        model (nn.Sequential): Layers with Ultralytics' ``f`` ("from") attribute.
        ch (int): Input image channels.
        wanted (set[int]): Layer indices to record.

    Returns:
        (dict[int, torch.Size]): Input shape (1, C, H, W) of each wanted layer for a (1, ch, 64, 64) image.
    """
    shapes: dict[int, torch.Size] = {}
    was_training = model.training
    model.eval()  # BatchNorm on a batch of one
    outputs: list[Any] = []
    x: Any = torch.zeros(1, ch, PROBE_SIZE, PROBE_SIZE)
    try:
        with torch.no_grad():
            for i, layer in enumerate(model[: max(wanted) + 1]):
                if layer.f != -1:
                    f = layer.f
                    x = outputs[f] if isinstance(f, int) else [x if j == -1 else outputs[j] for j in f]
                if i in wanted:
                    shapes[i] = x.shape
                try:
                    x = layer(x)
                except Exception as e:
                    raise RuntimeError(
                        f"yolo_attn infers the input channels of its blocks with one forward pass of a "
                        f"{PROBE_SIZE}x{PROBE_SIZE} zero image, and layer {i} ({layer.type}) failed on it: {e}"
                    ) from e
                outputs.append(x)
    finally:
        model.train(was_training)
    return shapes


def _build_real(i: int, row: list, placeholder: nn.Module, shape: torch.Size) -> tuple[nn.Module, list]:
    """Build the real block for a YAML row from its placeholder and input shape.

    Returns:
        block (nn.Module): The block, or an ``nn.Sequential`` of repeats.
        args (list): The constructor args, for the layer table.
    """
    name, yaml_args = row[2], row[3]
    if name in EXTENDED_BLOCKS:
        cls = EXTENDED_BLOCKS[name][0]
        args = cls.parent_args(placeholder)
        return cls(*args), args
    cls = BLOCKS[name]
    positional, keywords = _yaml_args(yaml_args)
    c1 = int(shape[1])
    repeats = len(placeholder) if isinstance(placeholder, nn.Sequential) else 1
    try:
        blocks = [cls(c1, *positional, **keywords) for _ in range(repeats)]
    except (ValueError, TypeError) as e:
        raise _row_error(i, row, f"{e} (input channels here: {c1})") from None
    _check_kernels_fit(i, row, blocks[0], shape)
    args = [c1, *positional] + ([keywords] if keywords else [])
    return (blocks[0] if repeats == 1 else nn.Sequential(*blocks)), args


def _check_kernels_fit(i: int, row: list, block: nn.Module, shape: torch.Size) -> None:
    """Reject spatial kernels larger than the layer's feature map at Ultralytics' default 640 px input."""
    side_h, side_w = (int(s) * DEFAULT_IMGSZ // PROBE_SIZE for s in shape[2:])
    gates = (m for m in block.modules() if isinstance(m, SpatialAttention))
    for conv in (c for gate in gates for c in gate.modules() if isinstance(c, nn.Conv2d)):
        kh, kw = conv.kernel_size
        if kh > side_h or kw > side_w:
            raise _row_error(
                i, row, f"kernel {kh}x{kw} is larger than this layer's {side_h}x{side_w} feature map at 640 px"
            )


class _LogCapture(logging.Filter):
    """Hold back parse_model's log records, then replay them with our rows' table lines substituted."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def __enter__(self) -> _LogCapture:
        LOGGER.addFilter(self)
        return self

    def __exit__(self, *exc: object) -> None:
        LOGGER.removeFilter(self)
        if exc[0] is not None:  # parse_model failed: show what it printed so far, unchanged
            self.replay({})

    def filter(self, record: logging.LogRecord) -> bool:
        self.records.append(record)
        return False

    def replay(self, table_lines: dict[int, str]) -> None:
        """Emit the held records, replacing each layer line whose index is in ``table_lines``.

        Args:
            table_lines (dict[int, str]): Layer index -> the line to print instead of the placeholder's.
        """
        records, self.records = self.records, []
        for record in records:
            message = record.getMessage()
            index = message[:3].strip()
            if index.isdigit() and int(index) in table_lines:
                record.msg, record.args = table_lines[int(index)], None
            LOGGER.handle(record)
