"""Memory-lean gates: gradients equal autograd's, and a gate keeps only its input and its factors for backward.

Saved tensors are counted exactly with ``torch.autograd.graph.saved_tensors_hooks`` (storages and bytes, never time).
"""

from __future__ import annotations

import copy

import pytest
import torch
from block_helpers import default_block, shipped
from torch import nn
from torch.autograd import gradcheck
from ultralytics.nn.tasks import DetectionModel

from yolo_attn.finetune import transfer
from yolo_attn.modules import gating
from yolo_attn.modules.gating import LeanGate, gate, plain_autograd, product_into
from yolo_attn.modules.random_weights import randomize_

C = 64
X = torch.randn(2, C, 12, 10, generator=torch.Generator().manual_seed(5))
SPECS = {s.name: s for s in shipped("channel")}
F64 = {"dtype": torch.float64, "requires_grad": True}


def block_of(name: str, mix: float | None) -> nn.Module:
    """A shipped block with random weights, in training mode, with an identity mix of ``mix`` (None: without)."""
    block = randomize_(default_block(SPECS[name], C)).train()
    if mix is not None:
        block.identity_mix = nn.Parameter(torch.tensor(mix))
    return block


def _factors() -> list[tuple[torch.Tensor | float, ...]]:
    g = torch.Generator().manual_seed(0)
    channel = torch.rand(2, 3, 1, 1, generator=g, dtype=torch.float64).requires_grad_()
    spatial = torch.rand(2, 1, 4, 5, generator=g, dtype=torch.float64).requires_grad_()
    height = torch.rand(2, 3, 4, 1, generator=g, dtype=torch.float64).requires_grad_()
    full = torch.randn(2, 3, 4, 5, generator=g, dtype=torch.float64).requires_grad_()
    return [(channel,), (full,), (height, channel), (channel, spatial), (full, 1 / 3), (height, channel, spatial)]


@pytest.mark.parametrize("factors", _factors(), ids=["channel", "full", "two", "channel-spatial", "scalar", "three"])
@pytest.mark.parametrize("mix", [None, 0.3], ids=["no-mix", "mix"])
def test_lean_gate_gradcheck(factors, mix):
    x = torch.randn(2, 3, 4, 5, **F64)
    m = None if mix is None else torch.tensor(mix, **F64)
    assert gradcheck(lambda x, m, *f: LeanGate.apply(x, m, *f), (x, m, *factors))
    assert gradcheck(lambda x, m, *f: gate(x, *f, mix=m), (x, m, *factors))


def test_product_into_gradcheck():
    x = torch.randn(2, 3, 4, 5, **F64)
    g = torch.rand(2, 3, 1, 1, **F64)
    assert gradcheck(lambda x, g: product_into(lambda t: torch.cat((t.amax(1), t.mean(1)), 1), x, g), (x, g))


def test_without_a_mix_the_lean_gradients_are_autograds_bit_for_bit():
    x = torch.randn(2, 8, 6, 5, requires_grad=True)
    a, b = torch.rand(2, 8, 1, 5, requires_grad=True), torch.rand(2, 8, 6, 1, requires_grad=True)
    grad = torch.randn(2, 8, 6, 5)
    lean = torch.autograd.grad(gate(x, a, b, 0.5), (x, a, b), grad)
    with plain_autograd():
        plain = torch.autograd.grad(gate(x, a, b, 0.5), (x, a, b), grad)
    assert all(torch.equal(p, q) for p, q in zip(lean, plain, strict=True))


def test_plain_ops_when_no_gradient_is_recorded():
    x, g = torch.randn(1, 4, 3, 3, requires_grad=True), torch.rand(1, 4, 1, 1)
    assert gate(x, g).grad_fn.name() == "LeanGateBackward"
    with torch.no_grad():
        assert torch.equal(gate(x, g), x * g)
    assert gate(x.detach(), g).grad_fn is None
    with plain_autograd():
        assert gate(x, g).grad_fn.name() == "MulBackward0"


def _gradients(block: nn.Module, x: torch.Tensor, weight: torch.Tensor) -> dict[str, torch.Tensor]:
    x = x.clone().requires_grad_(True)
    (block(x) * weight).sum().backward()
    grads = {name: p.grad for name, p in block.named_parameters() if p.grad is not None}
    return grads | {"input": x.grad}


def assert_same_gradients(lean: dict[str, torch.Tensor], plain: dict[str, torch.Tensor], what: str) -> None:
    """Equal within 1e-6 relative to each gradient's largest entry (1e-6 absolute for gradients below 1).

    A 0-d parameter's gradient (the mix) sums one term per element of the map, in another order on each path: it is
    compared at 1e-5 relative (float32 summation of ~1e4 terms).
    """
    assert lean.keys() == plain.keys(), what
    for key, g in plain.items():
        scale = max(1.0, float(g.abs().max())) * (10 if g.dim() == 0 else 1)
        err = float((lean[key] - g).abs().max())
        assert err <= 1e-6 * scale, f"{what}, {key}: max |diff| {err:.3g} at scale {scale:.3g}"


GATE_BLOCKS = ("SE", "CBAM", "CoordAtt", "SAM", "ECA", "SimAM", "TripletAttention")


def test_model_gradients_equal_plain_autograd_after_one_step():
    # a small detector at 64 px, gates fine-tuned from the identity (mixes moved off zero), one SGD step each way
    rows = [[-1, 1, name, []] for name in GATE_BLOCKS]
    backbone = [[-1, 1, "Conv", [16, 3, 2]], [-1, 1, "Conv", [32, 3, 2]], [-1, 1, "Conv", [64, 3, 2]]]
    cfg = {"nc": 2, "scales": {"n": [1.0, 1.0, 1024]}, "backbone": backbone,
           "head": [*rows, [[2, -1], 1, "Detect", ["nc"]]]}  # fmt: skip
    model = randomize_(DetectionModel(cfg, verbose=False))
    for block in transfer.outermost_attention_blocks(model).values():
        block.start_as_identity()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("identity_mix"):
                p.fill_(0.3)
    assert sum(n.endswith("identity_mix") for n, _ in model.named_parameters()) == len(GATE_BLOCKS)
    image = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))

    def step(m: nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        m.train()
        optimizer = torch.optim.SGD(m.parameters(), lr=0.1)
        sum(o.square().mean() for o in _tensors(m(image))).backward()
        grads = {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}
        optimizer.step()
        return grads, {n: p.detach().clone() for n, p in m.named_parameters()}

    lean_grads, lean_params = step(copy.deepcopy(model))
    with plain_autograd():
        plain_grads, plain_params = step(copy.deepcopy(model))
    assert len(plain_grads) == sum(1 for p in model.parameters() if p.requires_grad)
    assert_same_gradients(lean_grads, plain_grads, "model")
    assert_same_gradients(lean_params, plain_params, "model after one step")


@pytest.mark.parametrize("name", ["SE", "CBAM", "CoordAtt", "SAM", "TripletAttention", "GAM"])
def test_lean_gate_under_cpu_autocast(name):
    # bfloat16 rounds both paths differently: the lean gradients are as close to float32's as autograd's are
    weight = torch.randn(X.shape, generator=torch.Generator().manual_seed(1))
    block = block_of(name, 0.3)
    with plain_autograd():
        exact = _gradients(copy.deepcopy(block), X, weight)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        lean = _gradients(copy.deepcopy(block), X, weight)
        with plain_autograd():
            plain = _gradients(copy.deepcopy(block), X, weight)
    for key, g in plain.items():
        assert lean[key].dtype == g.dtype and torch.isfinite(lean[key]).all(), key
        scale = float(exact[key].abs().max())
        lean_err, plain_err = (float((d[key].float() - exact[key]).abs().max()) for d in (lean, plain))
        assert lean_err <= 3 * plain_err + 0.02 * scale, f"{name}, {key}: {lean_err:.3g} vs autograd's {plain_err:.3g}"


def _tensors(out: object) -> list[torch.Tensor]:
    """The tensors in a model's training output (a tensor, or lists and dicts of them)."""
    if isinstance(out, torch.Tensor):
        return [out]
    values = out.values() if isinstance(out, dict) else out if isinstance(out, (list, tuple)) else []
    return [t for v in values for t in _tensors(v)]


class Saved:
    """Every tensor saved for backward during a forward, by storage (``saved_tensors_hooks``: exact, not timed)."""

    def __init__(self) -> None:
        self.tensors: list[torch.Tensor] = []
        self.in_gate: list[tuple[set[int], list[torch.Tensor]]] = []  # per gate call: its inputs' storages, saved

    def __enter__(self) -> Saved:
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._hooks.__exit__(*exc)

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        self.tensors.append(t)  # kept alive: storages are not reused while counting
        return t

    def new(self, exclude: list[torch.Tensor]) -> list[torch.Tensor]:
        """The saved tensors, one per storage, other than the storages of ``exclude`` (input, parameters)."""
        skip = {_storage(t) for t in exclude}
        unique = {_storage(t): t for t in self.tensors if _storage(t) not in skip}
        return list(unique.values())


def _storage(t: torch.Tensor) -> int:
    return t.untyped_storage().data_ptr()


def _bytes(tensors: list[torch.Tensor]) -> int:
    return sum(t.untyped_storage().nbytes() for t in tensors)


def count_saved(fn, x: torch.Tensor, owner: nn.Module, spy: bool = False) -> tuple[int, int, Saved]:
    """Input-sized saved tensors and saved bytes beyond the input and ``owner``'s tensors, in one forward of ``fn``.

    With ``spy``, every `gating.gate` call also records its inputs' storages and what was saved during it.
    """
    x = x.clone().requires_grad_(True)
    real = gating.gate

    def spying(inp: torch.Tensor, *factors: torch.Tensor | float, mix: torch.Tensor | None = None) -> torch.Tensor:
        before = len(saved.tensors)
        out = real(inp, *factors, mix=mix)
        inputs = {_storage(t) for t in (inp, mix, *factors) if isinstance(t, torch.Tensor)}
        saved.in_gate.append((inputs, saved.tensors[before:]))
        return out

    with Saved() as saved:
        if spy:
            gating.gate = spying
        try:
            fn(x)
        finally:
            gating.gate = real
    new = saved.new([x, *owner.parameters(), *owner.buffers()])
    return sum(t.numel() >= x.numel() for t in new), _bytes(new), saved


def _is_gate(name: str) -> bool:
    """Whether the block's output, with a mix, goes through `gating.gate` (the others blend with torch.lerp)."""
    block = block_of(name, 0.3)
    return bool(count_saved(block, X, block, spy=True)[2].in_gate)


#: The multiplicative gates, found by running every shipped block (those that blend with lerp are not gates).
GATES = [n for n in SPECS if _is_gate(n)]
#: Input-sized tensors a gate keeps for backward beyond its input, with its mix, in training: none but what its gate
#: branch needs (SAM: the BatchNorm's input and the sigmoid's output, both (B, C, H, W)).
INPUT_SIZED = {"SE": 0, "ECA": 0, "ChannelAttention": 0, "SpatialAttention": 0, "CBAM": 0, "CoordAtt": 0, "SAM": 2}


def test_the_gates_are_found():
    assert set(INPUT_SIZED) | {"SimAM", "EMA", "GAM", "ELA", "MLCA", "EffectiveSE", "SpatialGroupEnhance"} <= set(GATES)
    assert not {"SKAttention", "ShuffleAttention", "CPCA", "DoubleAttention"} & set(GATES)


@pytest.mark.parametrize("name", GATES)
def test_a_gate_keeps_its_input_and_its_factors_only(name):
    mixed = block_of(name, 0.3)
    mixed_count, mixed_bytes, saved = count_saved(mixed, X, mixed, spy=True)
    for inputs, tensors in saved.in_gate:  # inside each gate: only the gate's input, factors and mix
        assert {_storage(t) for t in tensors} <= inputs, name
    block = block_of(name, None)
    plain_count, plain_bytes, _ = count_saved(block, X, block)
    with plain_autograd():
        autograd_count, autograd_bytes, _ = count_saved(block, X, block)
        old_count, _, _ = count_saved(lambda x: x + mixed.identity_mix * (block(x) - x), X, block)
    small = X.numel() * X.element_size() // 100  # vectors and scalars: at most 1% of the input
    assert mixed_count == plain_count <= autograd_count, name  # the mix adds no input-sized tensor
    assert mixed_bytes <= plain_bytes + small, name
    assert plain_bytes <= autograd_bytes + small, name
    assert old_count == autograd_count + 1, name  # the full-map blend kept one more (its y - x)
    if name in INPUT_SIZED:
        assert mixed_count == INPUT_SIZED[name], name


@pytest.mark.parametrize("name", ["CBAM", "CoordAtt", "ELA"])
def test_a_gate_no_longer_keeps_its_products(name):
    # chained products (x * a * b, CBAM's channel-gated map pooled by its spatial gate) were kept by the next op
    block = block_of(name, None)
    lean, _, _ = count_saved(block, X, block)
    with plain_autograd():
        plain, _, _ = count_saved(block, X, block)
    assert lean < plain, name


@pytest.mark.parametrize("name", GATES)
def test_block_gradients_equal_plain_autograd(name):
    weight = torch.randn(X.shape, generator=torch.Generator().manual_seed(1))
    for mix in (None, 0.3):
        block = block_of(name, mix)
        lean = _gradients(copy.deepcopy(block), X, weight)
        with plain_autograd():
            plain = _gradients(copy.deepcopy(block), X, weight)
        assert_same_gradients(lean, plain, f"{name}, mix {mix}")
