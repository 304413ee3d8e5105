"""Declarative patches: an attribute of an Ultralytics object replaced by ours, applied and undone exactly.

A `Patch` names the owner, the attribute and the replacement. `apply` keeps the original in `ORIGINALS` under the
patch's key (wrappers call through `original`), `undo` puts it back. A `Hook` is the same for side effects that are
not attribute assignments (a callback appended to a list, globals added to torch's allow-list).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: Patch key -> the attribute's value before `Patch.apply` (None while not applied).
ORIGINALS: dict[str, Any] = {}


@dataclass(frozen=True)
class Patch:
    """Replace ``owner.attr`` by ``new`` while registered.

    Attributes:
        key (str): Name of the original in `ORIGINALS`, e.g. ``"parse_model"``.
        owner (Any): The module or class holding the attribute.
        attr (str): The attribute's name.
        new (Any): The replacement.
    """

    key: str
    owner: Any
    attr: str
    new: Any

    def apply(self) -> None:
        """Keep the original and install the replacement."""
        ORIGINALS[self.key] = getattr(self.owner, self.attr)
        setattr(self.owner, self.attr, self.new)

    def undo(self) -> None:
        """Put the original back."""
        setattr(self.owner, self.attr, ORIGINALS[self.key])
        ORIGINALS[self.key] = None

    def applied(self) -> bool:
        """Whether the replacement is in place."""
        return ORIGINALS.get(self.key) is not None and getattr(self.owner, self.attr) is self.new


@dataclass(frozen=True)
class Hook:
    """A side effect with its undo, e.g. a callback appended to Ultralytics' default callbacks.

    Attributes:
        key (str): A name, for messages.
        do (Callable[[], None]): Applies the effect.
        undo (Callable[[], None]): Reverses it exactly.
    """

    key: str
    do: Callable[[], None]
    undo: Callable[[], None]

    def apply(self) -> None:
        """Apply the effect."""
        self.do()


def original(key: str, fallback: Any) -> Any:
    """Return the original a patch replaced, or ``fallback`` (the current attribute) while it is not applied.

    Args:
        key (str): The patch key.
        fallback (Any): What to use when the patch is not applied.

    Returns:
        (Any): The original value.
    """
    value = ORIGINALS.get(key)
    return fallback if value is None else value
