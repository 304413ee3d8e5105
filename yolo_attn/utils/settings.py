"""Settings declared once: a dataclass field with its help text and command-line flag, and the parser built from them.

A settings dataclass (``yolo_attn.experiments.compare.CompareSettings``) declares each field with `setting`: its type
(the annotation), its default, its help text, and how it appears on the command line. `add_arguments` turns those
fields into ``argparse`` options, `from_arguments` turns the parsed options back into keyword arguments of the
dataclass, and `document` writes the help texts into the class docstring. A new setting is one more field.
"""

from __future__ import annotations

import argparse
import collections.abc
import dataclasses
import inspect
import types
import typing
from collections.abc import Callable
from typing import Any

MISSING = dataclasses.MISSING
NO_FLAG = None  # `setting(flag=NO_FLAG)`: a setting the command line gives another way (e.g. key=value tokens)


def setting(
    default: Any = MISSING,
    *,
    help: str,
    factory: Callable[[], Any] | None = None,
    flag: str | None = "",
    group: str = "",
    plan: bool = False,
    cli_default: Any = MISSING,
    **argparse_options: Any,
) -> Any:
    """Declare one setting: a ``dataclasses.field`` whose metadata holds its help text and command-line flag.

    Args:
        default (Any): The default; none makes the setting required (a positional argument of the dataclass).
        help (str): What the setting does: the ``--help`` text and the class documentation.
        factory (Callable[[], Any] | None): Default factory for mutable defaults (``dict``).
        flag (str | None): The option's name; "" derives ``--name-with-dashes`` (``--no-name`` for a bool that
            defaults to True); `NO_FLAG` for a setting with no option of its own.
        group (str): Title of the ``--help`` section the option is listed in ("" for the parser's own).
        plan (bool): Recorded in the comparison's ``plan.json`` (and, if new, guarded on resume).
        cli_default (Any): The option's default when it differs from the field's (a required field's, or None for
            one the command works out, e.g. from the models).
        **argparse_options (Any): More ``add_argument`` options (``choices``, ``metavar``, ``type``, ``nargs``,
            ``action``); ``type`` and ``nargs`` are otherwise derived from the annotation.

    Returns:
        (Any): The field.
    """
    metadata = {
        "help": help,
        "flag": flag,
        "group": group,
        "plan": plan,
        "cli_default": cli_default,
        "argparse": argparse_options,
    }
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def settings_fields(cls: type) -> list[dataclasses.Field]:
    """Return the fields of ``cls`` declared with `setting`, in declaration order."""
    return [f for f in dataclasses.fields(cls) if "help" in f.metadata]


def flag_name(f: dataclasses.Field) -> str | None:
    """Return the command-line option of a setting (``--per-device``, ``--no-wait``), or None when it has none."""
    flag = f.metadata["flag"]
    if flag is NO_FLAG or flag:
        return flag
    return f"--no-{f.name.replace('_', '-')}" if f.default is True else f"--{f.name.replace('_', '-')}"


def add_arguments(
    parser: argparse.ArgumentParser, cls: type, groups: dict[str, argparse._ArgumentGroup] | None = None
) -> dict[str, argparse._ArgumentGroup]:
    """Add an option for every setting of ``cls`` that has a flag, each under its group's title.

    Args:
        parser (argparse.ArgumentParser): The parser.
        cls (type): A dataclass declared with `setting`.
        groups (dict[str, argparse._ArgumentGroup] | None): Groups made already, by title; created as needed.

    Returns:
        (dict[str, argparse._ArgumentGroup]): Every group by title, to add more options to.
    """
    groups = {} if groups is None else groups
    hints = typing.get_type_hints(cls)
    for f in settings_fields(cls):
        flag = flag_name(f)
        if flag is None:
            continue
        title = f.metadata["group"]
        if title and title not in groups:
            groups[title] = parser.add_argument_group(title)
        where = groups[title] if title else parser
        options = {**_derived_options(hints[f.name], f), **f.metadata["argparse"]}
        where.add_argument(flag, dest=f.name, default=_cli_default(f), help=f.metadata["help"], **options)
    return groups


def from_arguments(cls: type, args: argparse.Namespace) -> dict[str, Any]:
    """Return the settings of ``cls`` that the parsed ``args`` give (None, an option not given: the field default).

    Args:
        cls (type): A dataclass declared with `setting`.
        args (argparse.Namespace): Options parsed by a parser built with `add_arguments`.

    Returns:
        (dict[str, Any]): Keyword arguments for ``cls``.
    """
    return {
        f.name: getattr(args, f.name)
        for f in settings_fields(cls)
        if flag_name(f) is not None and getattr(args, f.name, None) is not None
    }


def document(cls: type) -> type:
    """Class decorator: append an ``Attributes:`` section written from the settings' types and help texts."""
    lines = ["", "Attributes:"]
    for f in settings_fields(cls):
        annotation = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        lines.append(f"    {f.name} ({annotation}): {f.metadata['help']}")
    cls.__doc__ = inspect.cleandoc(cls.__doc__ or "") + "\n" + "\n".join(lines) + "\n"
    return cls


def _cli_default(f: dataclasses.Field) -> Any:
    if f.metadata["cli_default"] is not MISSING:
        return f.metadata["cli_default"]
    return None if f.default is MISSING else f.default  # a factory's default (a dict) is the field's, not given


def _derived_options(hint: Any, f: dataclasses.Field) -> dict[str, Any]:
    """``type``/``nargs``/``action`` from a field's annotation: int, float, bool, Sequence[int], optionals of those."""
    if hint is bool:
        return {"action": "store_false" if f.default is True else "store_true"}
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in {typing.Union, types.UnionType} and len(args) == 1:
        hint = args[0]  # X | None
    if typing.get_origin(hint) in {collections.abc.Sequence, list, tuple}:
        (item,) = typing.get_args(hint)[:1] or (str,)
        return {"nargs": "+", **({"type": item} if item in {int, float} else {})}
    return {"type": hint} if hint in {int, float} else {}
