"""Model parsing: a wrapper around ``ultralytics.nn.tasks.parse_model`` that also builds registered blocks.

It swaps the rows naming registered blocks for placeholders that parse_model already knows (``nn.Identity`` for
channel-preserving blocks, the parent block for blocks that extend one, the replaced row's module for blocks that
replace one: an ``nn.Upsample`` of the same scale for an upsampler), lets parse_model build and scale the network,
learns each placeholder's input shape from one tiny forward pass, then swaps in the real blocks. It depends only on
parse_model's signature ``(d, ch, verbose)``, its return value ``(nn.Sequential, save)``, the layers' attributes
``i``, ``f``, ``type``, ``np``, and on the layer table's lines starting with the layer index (for the replay that
shows our blocks and their real args). A row whose module neither Ultralytics nor a registered block resolves fails
here with a `YAMLRowError` (closest names, how to register) instead of parse_model's bare ``KeyError``.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import torch
from torch import nn
from ultralytics.nn import tasks
from ultralytics.utils import LOGGER

from yolo_attn import registry
from yolo_attn.integration.lookup import resolves_in_ultralytics, ultralytics_names
from yolo_attn.integration.patches import original
from yolo_attn.registry.rows import check_row, row_error, unknown_name_error, yaml_args

PROBE_SIZE = 64  # side of the zero image used to learn each placeholder's input shape (a multiple of stride 32)
DEFAULT_IMGSZ = 640  # Ultralytics' default image size; spatial kernels must fit the feature map at this size


def parse_model(d: dict, ch: int, verbose: bool = True) -> tuple[nn.Sequential, list[int]]:
    """Build a model from a YAML dict like Ultralytics' ``parse_model``, also accepting registered blocks.

    Args:
        d (dict): Model dictionary from the YAML (``backbone``, ``head``, ``scales``...).
        ch (int): Input image channels.
        verbose (bool): Print the layer table, with our blocks and their real args.

    Returns:
        model (nn.Sequential): The layers, each with Ultralytics' ``i``, ``f``, ``type`` and ``np`` attributes.
        save (list[int]): Indices of layers whose outputs later layers read.

    Raises:
        YAMLRowError: For a row naming an unknown module, or a registered block with wrong args.
    """
    ultralytics_parse = original("parse_model", tasks.parse_model)
    rows = list(d.get("backbone", [])) + list(d.get("head", []))
    _check_names(rows)
    ours = {i: row for i, row in enumerate(rows) if isinstance(row[2], str) and registry.get(row[2]) is not None}
    if not ours:
        return ultralytics_parse(d, ch, verbose=verbose)

    for i, row in ours.items():
        check_row(i, row)
    placeholder_d = _with_placeholders(d, ours)
    records = _LogCapture()
    try:
        with records:
            model, save = ultralytics_parse(placeholder_d, ch, verbose=verbose)
    except (AssertionError, ValueError, TypeError, RuntimeError) as e:
        _raise_host_error(ultralytics_parse, placeholder_d, ch, ours, e)
        raise
    shapes = _probe_input_shapes(model, ch, set(ours))
    table_lines = {}
    for i, row in ours.items():
        block, args = _build_real(i, row, model[i], shapes[i])
        first = _first(block)
        block.i, block.f, block.type = i, row[0], f"{type(first).__module__}.{type(first).__qualname__}"
        block.np = sum(p.numel() for p in block.parameters())
        model[i] = block
        n = len(block) if isinstance(block, nn.Sequential) else 1
        table_lines[i] = f"{i:>3}{row[0]!s:>20}{n:>3}{block.np:10.0f}  {block.type:<45}{args!s:<30}"
    records.replay(table_lines)
    return model, save


def _check_names(rows: list) -> None:
    """Raise a `YAMLRowError` for the first row whose module neither a registered block nor Ultralytics resolves."""
    for i, row in enumerate(rows):
        if not (isinstance(row, (list, tuple)) and len(row) == 4 and isinstance(row[2], str)):
            continue
        name = row[2]
        if registry.get(name) is None and not resolves_in_ultralytics(name):
            from yolo_attn.registry.plugins import FAILED

            raise unknown_name_error(i, list(row), [*ultralytics_names(), *registry.names()], FAILED)


def _raise_host_error(ultralytics_parse: Any, d: dict, ch: int, ours: dict[int, list], error: Exception) -> None:
    """Name the layer of a composition whose host refused its args (C2PSA needs c2 == c1), if one did.

    Parses the rows up to each composition in turn (only after a failure) and raises a `YAMLRowError` for the first
    composition whose host fails to build; returns when the failure lies elsewhere.
    """
    n_backbone = len(d.get("backbone", []))
    for i, row in ours.items():
        spec = registry.get(row[2])
        if spec.inner is None:
            continue
        head = copy.deepcopy(d)
        head["backbone"], head["head"] = head["backbone"][: i + 1], head.get("head", [])[: max(0, i + 1 - n_backbone)]
        try:
            with _LogCapture():
                ultralytics_parse(head, ch, verbose=False)
        except Exception as e:
            raise row_error(
                i, row, f"the host {spec.parent.__name__} refuses these args ({type(e).__name__}: {e or error})"
            ) from None


def _first(block: nn.Module) -> nn.Module:
    """Return the block itself, or its first repeat when a row has ``n > 1``."""
    return block[0] if isinstance(block, nn.Sequential) else block


def _with_placeholders(d: dict, ours: dict[int, list]) -> dict:
    """Return a copy of ``d`` whose yolo_attn rows name blocks that parse_model knows."""
    d = copy.deepcopy(d)
    n_backbone = len(d.get("backbone", []))
    for i, (f, n, name, args) in ours.items():
        spec = registry.get(name)
        if spec.kind == registry.REPLACES:
            placeholder = [f, n, *spec.replaced_row(args)]
        else:
            if spec.inner is not None:  # a composition: the host's args, without the inner block's mapping
                args = yaml_args(args)[0]
            placeholder = [f, n, "nn.Identity", []] if spec.parent is None else [f, n, spec.parent.__name__, args]
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
    spec = registry.get(row[2])
    if spec.inner is not None:
        return _build_composed(i, row, spec, placeholder)
    if spec.parent is not None:
        args = spec.cls.parent_args(placeholder)
        return spec.cls(*args), args
    positional, keywords = yaml_args(row[3])
    c1 = int(shape[1])
    repeats = len(placeholder) if isinstance(placeholder, nn.Sequential) else 1
    try:
        built = [spec.cls(c1, *positional, **keywords) for _ in range(repeats)]
    except (ValueError, TypeError) as e:
        raise row_error(i, row, f"{e} (input channels here: {c1})") from None
    check = getattr(built[0], "check_feature_map", None)
    if callable(check):
        side_h, side_w = (int(s) * DEFAULT_IMGSZ // PROBE_SIZE for s in shape[2:])
        try:
            check(side_h, side_w)
        except ValueError as e:
            raise row_error(i, row, str(e).removeprefix(f"{type(built[0]).__name__}: ")) from None
    args = [c1, *positional] + ([keywords] if keywords else [])
    return (built[0] if repeats == 1 else nn.Sequential(*built)), args


def _build_composed(i: int, row: list, spec: registry.BlockSpec, placeholder: nn.Module) -> tuple[nn.Module, list]:
    """Build a composition (``C3k2_EMA``) from its host placeholder, with the row's trailing mapping as B's args."""
    keywords = yaml_args(row[3])[1]
    args = spec.cls.parent_args(placeholder)
    try:
        block = spec.cls(*args, block_args=keywords)
    except (ValueError, TypeError, AssertionError) as e:
        raise row_error(i, row, f"{spec.inner.name} inside {spec.parent.__name__}: {e}") from None
    return block, args + ([keywords] if keywords else [])


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
