"""Argument checks shared by the attention blocks.

Each check raises `BlockArgumentError` with a message that names the block, the argument, the value it got and what
it expected. The integration adds the layer index, so a wrong YAML argument never surfaces as a bare shape mismatch deep
inside a forward pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class BlockArgumentError(ValueError):
    """A block was given an argument it cannot use (wrong type, range or combination)."""


def _describe(value: Any) -> str:
    """Return ``value`` with its type, e.g. ``'16' (str)``, for error messages."""
    return f"{value!r} ({type(value).__name__})"


def _is_int(value: Any) -> bool:
    """Return True for a real integer; ``True``/``False`` are rejected although ``bool`` subclasses ``int``."""
    return isinstance(value, int) and not isinstance(value, bool)


def check_channels(block: str, c1: Any) -> int:
    """Check an input channel count.

    Args:
        block (str): Block name used in the error message.
        c1 (Any): Input channels, inferred by the integration.

    Returns:
        (int): ``c1``.
    """
    if not _is_int(c1) or c1 < 1:
        raise BlockArgumentError(f"{block}: input channels must be a positive integer, got {_describe(c1)}")
    return c1


def check_positive_int(block: str, name: str, value: Any, meaning: str) -> int:
    """Check that ``value`` is an integer >= 1.

    Args:
        block (str): Block name used in the error message.
        name (str): Argument name, e.g. ``"r"``.
        value (Any): The value to check.
        meaning (str): What the argument is, e.g. ``"reduction ratio"``.

    Returns:
        (int): ``value``.
    """
    if not _is_int(value) or value < 1:
        raise BlockArgumentError(f"{block}: {name} ({meaning}) must be a positive integer, got {_describe(value)}")
    return value


def check_reduction(block: str, c1: int, r: Any) -> int:
    """Check a reduction ratio and return the hidden width ``c1 // r`` of a C -> C/r -> C bottleneck.

    A ratio larger than the channel count would leave no hidden unit. That is also what a channel count written where
    a ratio belongs usually looks like (``[-1, 1, SE, [1024]]``), so the message says that blocks infer channels.

    Args:
        block (str): Block name used in the error message.
        c1 (int): Input channels.
        r (Any): Reduction ratio.

    Returns:
        (int): Hidden channels ``c1 // r`` (at least 1).
    """
    check_positive_int(block, "r", r, "reduction ratio")
    if c1 // r < 1:
        raise BlockArgumentError(
            f"{block}: reduction ratio r={r} leaves no hidden channel for {c1} input channels ({c1} // {r} = 0); "
            f"expected 1 <= r <= {c1}. Input channels are inferred, so pass a ratio such as 16, not a channel count"
        )
    return c1 // r


def check_odd_kernel(block: str, k: Any) -> tuple[int, int]:
    """Check a 2-D kernel size given as one odd integer or as an ``[kh, kw]`` pair of odd integers.

    Odd sizes keep 'same' padding symmetric, so the output keeps the input's height and width.

    Args:
        block (str): Block name used in the error message.
        k (Any): ``k`` or ``[kh, kw]``.

    Returns:
        (tuple[int, int]): ``(kh, kw)``.
    """
    sizes = (k, k) if _is_int(k) else tuple(k) if isinstance(k, Sequence) and not isinstance(k, str) else None
    if sizes is None or len(sizes) != 2 or not all(_is_int(s) and s >= 1 for s in sizes):
        raise BlockArgumentError(
            f"{block}: kernel size k must be an odd positive integer or a pair [kh, kw] of them, got {_describe(k)}"
        )
    if any(s % 2 == 0 for s in sizes):
        raise BlockArgumentError(
            f"{block}: kernel size k={k} has an even size; 'same' padding needs odd sizes (an even kernel would shift "
            "the gate by half a pixel)"
        )
    return sizes[0], sizes[1]


def check_choice(block: str, name: str, value: Any, choices: Sequence[str]) -> str:
    """Check that ``value`` is one of ``choices``.

    Args:
        block (str): Block name used in the error message.
        name (str): Argument name.
        value (Any): The value to check.
        choices (Sequence[str]): Allowed values.

    Returns:
        (str): ``value``.
    """
    if value not in choices:
        raise BlockArgumentError(f"{block}: {name} must be one of {list(choices)}, got {_describe(value)}")
    return value


def check_bool(block: str, name: str, value: Any) -> bool:
    """Check that ``value`` is a boolean (YAML ``true``/``false``).

    Args:
        block (str): Block name used in the error message.
        name (str): Argument name.
        value (Any): The value to check.

    Returns:
        (bool): ``value``.
    """
    if not isinstance(value, bool):
        raise BlockArgumentError(f"{block}: {name} must be true or false, got {_describe(value)}")
    return value
