"""Checks of model YAML rows that name a registered block: pure logic over the block table, no Ultralytics.

Each error is a `YAMLRowError` naming the layer index, the row, the block and what it expected, so a wrong argument
never surfaces as a bare shape mismatch or ``KeyError`` deep inside Ultralytics.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

from yolo_attn.registry import table

REGISTER_HINT = (
    "To add a block: decorate its class with @yolo_attn.register_block (name= and aliases= optional) before the model "
    "is built, or publish it in a package with an entry point in the group 'yolo_attn.blocks' "
    '(pyproject.toml: [project.entry-points."yolo_attn.blocks"] MyBlock = "mypkg.attn:MyBlock")'
)


class YAMLRowError(ValueError):
    """A model YAML row naming a yolo_attn block is wrong; the message names the layer, the block and the fix."""


def yaml_args(args: list) -> tuple[list, dict]:
    """Split YAML args into positional args and an optional trailing mapping of keyword args."""
    args = list(args or [])
    if args and isinstance(args[-1], dict):
        return args[:-1], dict(args[-1])
    return args, {}


def row_error(i: int, row: list, problem: str) -> YAMLRowError:
    """Return the error for layer ``i``'s row: the layer, the row, the problem, then what the block expects."""
    f, n, name, args = row
    spec = table.get(name)
    expected = f" Expected {spec.expected(name)}." if spec is not None else ""
    return YAMLRowError(f"model YAML layer {i} [{f}, {n}, {name}, {args}]: {problem}.{expected}")


def check_row(i: int, row: list) -> None:
    """Check what can be checked before the network exists: ``from``, repeats and the args' arity and names.

    Args:
        i (int): Layer index (over backbone + head).
        row (list): ``[from, repeats, name, args]`` with ``name`` a registered block.

    Raises:
        YAMLRowError: When the row cannot build the block.
    """
    f, n, name, args = row
    spec = table.get(name)
    if not isinstance(f, int) or isinstance(f, bool):
        raise row_error(i, row, f"'from' must be one integer layer index, got {f!r}; {name} takes a single input")
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise row_error(i, row, f"repeats must be a positive integer, got {n!r}")
    if not isinstance(args, list):
        raise row_error(i, row, f"args must be a list, got {args!r}")
    positional, keywords = yaml_args(args)
    if spec.kind == table.EXTENDS:
        # parse_model reads args[0] as the output channels and inserts the repeat count after it: an empty list would
        # fail there with a bare IndexError, a surplus arg with a bare TypeError naming the parent class
        if not positional:
            raise row_error(i, row, "args are empty, but the first arg (c2, the output channels) is required")
        c2 = positional[0]
        if isinstance(c2, bool) or not isinstance(c2, (int, float)) or c2 <= 0:
            raise row_error(i, row, f"the first arg must be the output channels c2 (a number), got {c2!r}")
    try:
        spec.bind(positional, keywords, n)
    except TypeError as e:
        raise row_error(i, row, f"bad args ({e})") from None


def unknown_name_error(i: int, row: list, known: Iterable[str], failed_plugins: dict[str, str] | None = None) -> Any:
    """Return the error for a row whose module neither Ultralytics nor yolo_attn knows.

    Args:
        i (int): Layer index.
        row (list): The row.
        known (Iterable[str]): Every name a row may use (Ultralytics' and the registered blocks').
        failed_plugins (dict[str, str] | None): Entry-point name -> why its plugin failed to load.

    Returns:
        (YAMLRowError): Naming the layer and row, the closest known names, and how to register a block.
    """
    f, n, name, args = row
    failed = (failed_plugins or {}).get(name)
    if failed is not None:
        return YAMLRowError(
            f"model YAML layer {i} [{f}, {n}, {name}, {args}]: the plugin that declares {name!r} failed to load "
            f"({failed})"
        )
    known = sorted(set(known))
    by_lower = {k.lower(): k for k in known}
    close = difflib.get_close_matches(name, known, n=5, cutoff=0.5)
    close += [
        by_lower[m] for m in difflib.get_close_matches(name.lower(), list(by_lower), n=5) if by_lower[m] not in close
    ]
    hint = f"closest known names: {', '.join(close[:5])}" if close else "no known name is close"
    ours = ", ".join(table.names())
    return YAMLRowError(
        f"model YAML layer {i} [{f}, {n}, {name}, {args}]: unknown module {name!r}: neither Ultralytics nor yolo_attn "
        f"knows it ({hint}). yolo_attn blocks: {ours}. {REGISTER_HINT}"
    )
