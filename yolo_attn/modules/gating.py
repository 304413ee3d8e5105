"""Multiplicative gates ``x * g``: the identity mix blended on the gate, and a memory-lean training path.

A gate block computes ``y = x * f_1 * ... * f_n`` (one factor for SE or SAM, two directional ones for CoordAtt, a
channel and a spatial gate for CBAM). With an identity mix the block returns ``x + mix * (y - x)``, which equals

    ``x * m``,   ``m = (1 - mix) + mix * f_1 * ... * f_n``,

so the mix is applied where the gate is smallest: a channel gate blends C values per image instead of C x H x W,
and the output costs the one product it costs without a mix. ``m`` is computed with the mix folded into the smallest
factor, then one product with the largest and one in-place add.

In training, autograd would keep every intermediate product (``x * f_1`` for the next factor, the blend's ``y - x``).
`gate` instead runs through `LeanGate`, an autograd function that keeps only ``x``, the factors and the mix, and
recomputes the products in backward, as timm's memory-efficient activations do. Its forward computes exactly the plain
ops, and without a mix its backward replays autograd's own chain of products, so its gradients match autograd's.
Inference (no gradient needed), tracing, scripting and ONNX export take the plain ops.

`product_into` serves the op after a gate that reads the gated map (CBAM's spatial gate pools the channel-gated map):
it recomputes ``x * g`` in backward instead of letting that op keep it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch.utils.checkpoint import checkpoint

Factor = torch.Tensor | float

_lean = True  # module switch; `plain_autograd` turns it off (tests and benchmarks compare against autograd's graph)


@contextlib.contextmanager
def plain_autograd() -> Iterator[None]:
    """Within this context, gates build PyTorch's ordinary autograd graph instead of the lean one.

    Yields:
        None.
    """
    global _lean
    before, _lean = _lean, False
    try:
        yield
    finally:
        _lean = before


def _exporting() -> bool:
    """Whether the current forward is traced or scripted (ONNX export included): the plain ops are recorded then."""
    return torch.jit.is_tracing() or torch.jit.is_scripting() or torch.onnx.is_in_onnx_export()


def lean_applies(tensors: Sequence[torch.Tensor | None]) -> bool:
    """Whether the lean autograd path is taken: a gradient is recorded for one of ``tensors``, outside export.

    Args:
        tensors (Sequence[torch.Tensor | None]): The inputs of a gate (None entries are skipped).

    Returns:
        (bool): True in training (grad mode, a tensor that requires grad), unless `plain_autograd` is active or the
            forward is traced, scripted or exported.
    """
    if not _lean or not torch.is_grad_enabled() or _exporting():
        return False
    return any(t is not None and t.requires_grad for t in tensors)


def _tensors(factors: Sequence[Factor]) -> list[torch.Tensor]:
    return [f for f in factors if isinstance(f, torch.Tensor)]


def mixed_gate(factors: Sequence[Factor], mix: torch.Tensor) -> torch.Tensor:
    """Return ``m = (1 - mix) + mix * f_1 * ... * f_n``, the gate that applies the identity mix.

    The scalars and all tensor factors but the largest are multiplied into the mix first (small tensors), the largest
    is taken by one product and an in-place add. The factors are brought to their common dtype first, so a float32
    input gated by a low-precision gate keeps the mix in float32.

    Args:
        factors (Sequence[torch.Tensor | float]): Gate factors, each broadcastable to the input; at least one tensor.
        mix (torch.Tensor): 0-d identity mix.

    Returns:
        (torch.Tensor): The mixed gate, of the factors' broadcast shape.
    """
    tensors = sorted(_tensors(factors), key=lambda t: t.numel())  # stable: equal sizes keep their order
    dtype = tensors[0].dtype
    for t in tensors[1:]:
        dtype = torch.promote_types(dtype, t.dtype)
    coefficient = mix.to(dtype)
    for f in factors:
        if not isinstance(f, torch.Tensor):
            coefficient = coefficient * f
    for t in tensors[:-1]:
        coefficient = coefficient * t.to(dtype)
    # a product then an in-place add, not one addcmul: addcmul of two broadcast operands (CoordAtt's (B, C, H, 1) and
    # (B, C, 1, W)) runs about twice as slow on CPU as the two ops (measured at yolov8n's P4)
    return (tensors[-1].to(dtype) * coefficient).add_(1 - mix.to(dtype))


def plain_gate(x: torch.Tensor, factors: Sequence[Factor], mix: torch.Tensor | None = None) -> torch.Tensor:
    """Return ``x * f_1 * ... * f_n`` (left to right), or ``x * mixed_gate(factors, mix)`` with a mix: plain ops.

    Args:
        x (torch.Tensor): Input of shape (B, C, H, W) (or any shape the factors broadcast to).
        factors (Sequence[torch.Tensor | float]): Gate factors.
        mix (torch.Tensor | None): 0-d identity mix, or None.

    Returns:
        (torch.Tensor): The gated input, of ``x``'s shape.
    """
    if mix is None:
        out = x
        for f in factors:
            out = out * f
        return out
    return x * mixed_gate(factors, mix)


def gate(x: torch.Tensor, *factors: Factor, mix: torch.Tensor | None = None) -> torch.Tensor:
    """Gate ``x``: ``x * f_1 * ... * f_n``, or with an identity mix ``x + mix * (x * f_1 * ... * f_n - x)``.

    The mix is blended on the gate (`mixed_gate`). When a gradient is recorded the memory-lean `LeanGate` runs: it
    keeps ``x``, the factors and the mix for backward, never a product.

    Args:
        x (torch.Tensor): Input of shape (B, C, H, W).
        *factors (torch.Tensor | float): Gate factors broadcastable to ``x``, e.g. (B, C, 1, 1) and (B, 1, H, W).
        mix (torch.Tensor | None): 0-d identity mix, or None (the gate alone).

    Returns:
        (torch.Tensor): Output of ``x``'s shape.
    """
    if not _tensors(factors):
        raise ValueError("gate needs at least one tensor factor")
    if lean_applies([x, mix, *_tensors(factors)]):
        return LeanGate.apply(x, mix, *factors)
    return plain_gate(x, factors, mix)


def _reduce(grad: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Sum ``grad`` over the axes ``like`` broadcasts along and cast it to ``like``'s dtype (what autograd does)."""
    return grad.sum_to_size(like.shape).to(like.dtype)


class LeanGate(torch.autograd.Function):
    """``x * f_1 * ... * f_n`` (optionally mixed) that keeps its inputs for backward, not its products.

    Backward without a mix replays autograd's chain for ``((x * f_1) * f_2) ...``: the prefix products are recomputed
    and each gradient is formed by the same products and reductions, in the same order. With a mix, ``out = x * m``:
    ``dx = G m``, ``R = sum(G x)`` over the gate's broadcast axes, ``dmix = sum(R (P - 1))`` with ``P`` the product of
    the factors, and ``df_i = mix * sum(R * prod_{j != i} f_j)``.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, mix: torch.Tensor | None, *factors: Factor) -> torch.Tensor:
        """Compute the gated output with the plain ops; save ``x``, the mix and the tensor factors."""
        ctx.scalars = [None if isinstance(f, torch.Tensor) else f for f in factors]
        ctx.save_for_backward(x, mix, *_tensors(factors))
        return plain_gate(x, factors, mix)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        """Return the gradients of ``x``, the mix and every factor (None for scalars and inputs without one)."""
        x, mix, *saved = ctx.saved_tensors
        it = iter(saved)
        factors: list[Factor] = [next(it) if s is None else s for s in ctx.scalars]
        needs = ctx.needs_input_grad
        need_x, need_mix, need_f = needs[0], needs[1], list(needs[2:])
        grads: list[torch.Tensor | None] = [None] * len(factors)
        if mix is None:
            grad_x = _chain_backward(grad, x, factors, need_f, grads)
            return (_reduce(grad_x, x) if need_x else None, None, *grads)
        grad_x = _reduce(grad * mixed_gate(factors, mix), x) if need_x else None
        grad_mix = None
        if need_mix or any(need_f):
            tensors = _tensors(factors)
            shape = torch.broadcast_shapes(*(t.shape for t in tensors))
            r = (grad * x).sum_to_size(shape)  # gradient of the mixed gate m
            scalar = 1.0
            for f in factors:
                if not isinstance(f, torch.Tensor):
                    scalar *= f
            if need_mix:
                product = tensors[0] * scalar
                for t in tensors[1:]:
                    product = product * t
                grad_mix = (r * (product - 1)).sum().to(mix.dtype)
            for i, f in enumerate(factors):
                if need_f[i]:
                    rest = r * (mix * scalar)
                    for j, t in enumerate(factors):
                        if j != i and isinstance(t, torch.Tensor):
                            rest = rest * t
                    grads[i] = _reduce(rest, f)
        return (grad_x, grad_mix, *grads)


def _chain_backward(
    grad: torch.Tensor, x: torch.Tensor, factors: list[Factor], need_f: list[bool], grads: list[torch.Tensor | None]
) -> torch.Tensor:
    """Autograd's backward of ``((x * f_1) * f_2) ...``: fill ``grads`` of the factors, return the gradient of x."""
    prefixes = [x]
    if any(need_f[1:]):
        for f in factors[:-1]:
            prefixes.append(prefixes[-1] * f)
    for k in reversed(range(len(factors))):
        f = factors[k]
        if need_f[k]:
            grads[k] = _reduce(grad * prefixes[k], f)
        grad = grad * f
    return grad


def product_into(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, *factors: torch.Tensor) -> torch.Tensor:
    """Return ``fn(x * f_1 * ...)`` keeping ``x`` and the factors for backward, not the product.

    For the op that reads a gated map (a pooling over it): the product is recomputed in backward
    (`torch.utils.checkpoint`, non-reentrant) instead of being kept by ``fn``. Keep ``fn`` cheap: it runs twice.

    Args:
        fn (Callable[[torch.Tensor], torch.Tensor]): The op on the gated map, e.g. a channel pooling.
        x (torch.Tensor): Input of shape (B, C, H, W).
        *factors (torch.Tensor): Gate factors broadcastable to ``x``.

    Returns:
        (torch.Tensor): ``fn``'s output.
    """

    def run(x: torch.Tensor, *factors: torch.Tensor) -> torch.Tensor:
        return fn(plain_gate(x, factors))

    if lean_applies([x, *factors]):
        return checkpoint(run, x, *factors, use_reentrant=False, preserve_rng_state=False)
    return run(x, *factors)
