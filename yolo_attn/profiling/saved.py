"""Exact count of the activation memory a forward pass keeps for backward, with ``saved_tensors_hooks``.

Every tensor autograd saves for the backward pass (an operation's inputs or outputs, or what a custom
``autograd.Function`` passes to ``ctx.save_for_backward``) goes through the pack hook of
``torch.autograd.graph.saved_tensors_hooks``. The counter records each one's storage, so a tensor saved by several
operations, or several views of one storage, counts once, with the bytes of its whole storage. Storages that belong to
parameters (or any tensor named in ``exclude``) are reported apart: they live whether or not a backward is pending.
The input is reported apart too, as ``input_bytes``: it exists before the block runs, so what a block adds to memory
is ``activation_bytes`` (everything saved except parameters and the input).

This is a count, not a timer: the same code gives the same figure on every machine.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class SavedTensors:
    """What one forward pass saved for backward, deduplicated by storage.

    Attributes:
        activation_bytes (int): Bytes of the saved storages that are neither a parameter nor the input.
        input_bytes (int): Bytes of the input's storage if it was saved, else 0.
        parameter_bytes (int): Bytes of the saved storages that belong to parameters (or ``exclude``).
        storages (int): Distinct storages saved (all three groups).
        saved (int): Tensors packed (before deduplication).
    """

    activation_bytes: int
    input_bytes: int
    parameter_bytes: int
    storages: int
    saved: int

    @property
    def total_bytes(self) -> int:
        """Activations plus the input: what stays alive for backward besides the parameters."""
        return self.activation_bytes + self.input_bytes


def _storage_key(t: torch.Tensor) -> tuple[str, int] | None:
    """Identify a tensor's storage (device and address), or None for a tensor without one (empty, sparse...)."""
    try:
        storage = t.untyped_storage()
    except (RuntimeError, NotImplementedError):
        return None
    if storage.nbytes() == 0:
        return None
    return str(t.device), storage.data_ptr()


def count_saved(
    fn: Callable[[], Any],
    inputs: Iterable[torch.Tensor] = (),
    exclude: Iterable[torch.Tensor] = (),
) -> tuple[Any, SavedTensors]:
    """Run ``fn()`` and count what it saves for backward, exactly.

    Args:
        fn (Callable[[], Any]): The forward pass, e.g. ``lambda: block(x)`` with ``x.requires_grad_()``.
        inputs (Iterable[torch.Tensor]): The input tensors; their storages are reported as ``input_bytes``.
        exclude (Iterable[torch.Tensor]): Tensors that exist regardless of backward, usually ``module.parameters()``;
            their storages are reported as ``parameter_bytes``.

    Returns:
        output (Any): What ``fn`` returned (keep it alive until the count is read; its graph holds the storages).
        saved (SavedTensors): The count.

    Examples:
        >>> x = torch.randn(1, 4, 5, 5, requires_grad=True)
        >>> w = torch.nn.Parameter(torch.randn(4, 1, 1))
        >>> _, saved = count_saved(lambda: x * torch.sigmoid(w), [x], [w])
        >>> saved.input_bytes, saved.activation_bytes  # x, and sigmoid(w) (saved by sigmoid and by mul, once)
        (400, 16)
    """
    input_keys = {k for t in inputs if (k := _storage_key(t)) is not None}
    excluded = {k for t in exclude if (k := _storage_key(t)) is not None}
    found: dict[tuple[str, int], int] = {}
    kept: list[torch.Tensor] = []  # alive until counted: a freed storage's address could be reused by a later one
    packed = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal packed
        packed += 1
        key = _storage_key(t)
        if key is not None:
            found[key] = max(found.get(key, 0), t.untyped_storage().nbytes())
            kept.append(t)
        # Detached: the same storage without its autograd history. An operation's saved output returned as itself
        # would hold its own grad_fn, a reference cycle in C++ that no collector frees (the whole graph leaked).
        return t.detach()

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        output = fn()
    kept.clear()
    groups = {"input": 0, "parameter": 0, "activation": 0}
    for key, nbytes in found.items():
        group = "input" if key in input_keys else "parameter" if key in excluded else "activation"
        groups[group] += nbytes
    return output, SavedTensors(
        activation_bytes=groups["activation"],
        input_bytes=groups["input"],
        parameter_bytes=groups["parameter"],
        storages=len(found),
        saved=packed,
    )


def saved_by_module(module: torch.nn.Module, x: torch.Tensor) -> SavedTensors:
    """Count what one training forward of ``module`` on ``x`` saves for backward (``x`` is made to require grad).

    Args:
        module (torch.nn.Module): The module, in the mode it should be measured in (usually train).
        x (torch.Tensor): Input; a leaf copy requiring grad is used, so that every operation on it saves.

    Returns:
        (SavedTensors): The count; parameters of ``module`` are reported as ``parameter_bytes``.
    """
    x = x.detach().clone().requires_grad_(True)
    _, saved = count_saved(lambda: module(x), [x], list(module.parameters()))
    return saved
