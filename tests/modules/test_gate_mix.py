"""The identity mix blended on the gate equals the full-map blend ``x + mix * (block(x) - x)``, for every block.

Eval, train, fused, compiled and in ONNX Runtime; the blocks come from the block table, not from a list kept here.
"""

from __future__ import annotations

import copy
import io
import warnings

import pytest
import torch
from support.blocks import Parallel, default_block, shipped
from torch import nn

from yolo_attn.modules import GlobalContext, SpatialAttention, TripletAttention
from yolo_attn.modules.fusion import fuse_blocks
from yolo_attn.modules.random_weights import randomize_

C = 32
X = torch.randn(2, C, 8, 8, generator=torch.Generator().manual_seed(7))
#: Every shipped channel-preserving block with its default arguments, then variants whose mix takes another path.
BLOCKS = {s.name: (lambda s=s: default_block(s, C)) for s in shipped("channel")} | {
    "GlobalContext-scale": lambda: GlobalContext(C, fuse_add=False, fuse_scale=True),
    "GlobalContext-both": lambda: GlobalContext(C, fuse_add=True, fuse_scale=True),
    "SpatialAttention-bn": lambda: SpatialAttention(C, 3, "max_mean", True),
    "TripletAttention-no-spatial": lambda: TripletAttention(C, True),
}
MIXES = (0.0, 0.3, 1.0)


def with_mix(block: nn.Module, mix: float) -> nn.Module:
    """A copy of ``block`` with an identity mix of ``mix`` (set directly: some blocks start as the identity without)."""
    mixed = copy.deepcopy(block)
    mixed.identity_mix = nn.Parameter(torch.tensor(float(mix)))
    return mixed


def ignores_mix(name: str) -> bool:
    """Whether a block has no identity mix to blend: its identity start zeroes an output layer instead."""
    block = BLOCKS[name]()
    return copy.deepcopy(block).start_as_identity().identity_mix is None and _reads_no_mix(block)


def _reads_no_mix(block: nn.Module) -> bool:
    randomize_(block).eval()
    with torch.no_grad():
        return torch.equal(with_mix(block, 0.3)(X), block(X))


MIXED = [n for n in BLOCKS if not ignores_mix(n)]


def reference(block: nn.Module, mix: float, x: torch.Tensor) -> torch.Tensor:
    """The full-map blend of the block without a mix: ``x + mix * (block(x) - x)``."""
    plain = copy.deepcopy(block)
    plain.identity_mix = None
    return x + mix * (plain(x) - x)


def assert_within(actual: torch.Tensor, expected: torch.Tensor, msg: str) -> None:
    """Equal within 1e-6, relative to the output's size where it exceeds 1 (float32 spacing there is larger)."""
    scale = max(1.0, float(expected.abs().max()))
    err = float((actual - expected).abs().max())
    assert err <= 1e-6 * scale, f"{msg}: max |diff| {err:.3g} at output scale {scale:.3g}"


def test_the_blocks_without_a_mix_to_blend_are_the_zero_output_ones():
    skipped = set(BLOCKS) - set(MIXED)
    assert skipped <= {"MHSA", "SeparableSelfAttention"}, skipped
    assert len(MIXED) >= 25


@pytest.mark.parametrize("name", MIXED)
def test_blend_on_the_gate_equals_the_full_map_blend(name):
    block = randomize_(BLOCKS[name]())
    for training in (False, True):
        block.train(training)
        for mix in MIXES:
            mixed = with_mix(block, mix)
            with torch.no_grad():
                expected = reference(block, mix, X)
            got = mixed(X.requires_grad_(training))  # training: the lean autograd path
            X.requires_grad_(False)
            assert_within(got.detach(), expected, f"{name}, {'train' if training else 'eval'}, mix {mix}")
    block.eval()
    fused = copy.deepcopy(block)
    fuse_blocks(fused)
    with torch.no_grad():
        for mix in MIXES:
            assert_within(with_mix(fused, mix)(X), reference(fused, mix, X), f"{name}, fused, mix {mix}")


@pytest.mark.parametrize("name", MIXED)
def test_without_a_mix_the_block_computes_what_it_did(name):
    # no mix: the gate is the plain product, the same bits in eval and in training (lean path)
    block = randomize_(BLOCKS[name]()).train()
    x = X.clone().requires_grad_(True)
    lean = copy.deepcopy(block)(x)
    from yolo_attn.modules.gating import plain_autograd

    with plain_autograd():
        plain = copy.deepcopy(block)(x)
    assert torch.equal(lean, plain)


def _all_mixed(mix: float) -> tuple[list[nn.Module], list[nn.Module]]:
    plain = [randomize_(BLOCKS[n]()).eval() for n in MIXED]
    return plain, [with_mix(b, mix) for b in plain]


#: One block for each way the mix is computed (the compile test's cost grows with the graph: 2 cores).
COMPILED = (
    "SE",  # one channel factor
    "CoordAtt",  # two directional factors
    "TripletAttention",  # a summed gate and a scalar factor
    "CBAM",  # two gates, the spatial one on the recomputed channel-gated map
    "EMA",  # a grouped view
    "GlobalContext-both",  # scale and shift: one addcmul
    "SKAttention",  # not a gate: torch.lerp
)


@pytest.mark.slow
def test_blend_on_the_gate_compiles():
    # one compiled graph in training (aot_eager: the traced forward and backward of the lean gates, no inductor build):
    # outputs against the full-map blend, gradients against eager's
    plain = [randomize_(BLOCKS[n]()).train() for n in COMPILED]
    model = Parallel([with_mix(b, 0.3) for b in plain])
    eager = copy.deepcopy(model)
    compiled = torch.compile(model, backend="aot_eager")
    x, eager_x = X.clone().requires_grad_(True), X.clone().requires_grad_(True)
    outputs = compiled(x)
    with torch.no_grad():
        for name, got, block in zip(COMPILED, outputs, plain, strict=True):
            assert_within(got.detach(), reference(block, 0.3, X), f"{name}, compiled")
    sum(o.square().mean() for o in outputs).backward()
    sum(o.square().mean() for o in eager(eager_x)).backward()
    grads = [("input", x.grad, eager_x.grad)] + [
        (n, p.grad, q.grad) for (n, p), q in zip(model.named_parameters(), eager.parameters(), strict=True)
    ]
    for name, got, want in grads:
        assert (got is None) == (want is None), name
        if want is not None:
            scale = max(1.0, float(want.abs().max())) * (10 if want.dim() == 0 else 1)
            assert float((got - want).abs().max()) <= 1e-6 * scale, name


def test_blend_on_the_gate_in_onnx_runtime():
    # every block fused, with its mix and without, in one graph: the mixed output against the full-map blend of the
    # unmixed one, both computed by ONNX Runtime (its convolutions round differently from PyTorch's)
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    plain, mixed = _all_mixed(0.3)
    for block in plain + mixed:
        fuse_blocks(block)
    model = Parallel(mixed + plain).eval()
    buffer = io.BytesIO()
    opset = max(17, *(getattr(b, "onnx_min_opset", 17) for b in plain))  # DeformConv exists from opset 19
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, X[:1], buffer, opset_version=opset, dynamo=False, input_names=["x"])
    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    outputs = [torch.from_numpy(o) for o in session.run(None, {"x": X[:1].numpy()})]
    x = X[:1]
    with torch.no_grad():
        eager = model(x)
    for i, name in enumerate(MIXED):
        got, without = outputs[i], outputs[len(MIXED) + i]
        assert_within(got, x + 0.3 * (without - x), f"{name}, ONNX")
        assert float((got - eager[i]).abs().max()) <= 1e-4 * max(1.0, float(eager[i].abs().max())), name


def test_generic_mix_hook_is_one_lerp_with_the_full_map_blends_numbers_and_dtype():
    from yolo_attn.modules.identity_start import add_identity_mix, lerp

    block = randomize_(nn.Conv2d(C, C, 1))
    mixed = add_identity_mix(copy.deepcopy(block))
    with torch.no_grad():
        mixed.identity_mix.fill_(0.3)
        assert_within(mixed(X), X + 0.3 * (block(X) - X), "add_identity_mix")
        low, mix = X.bfloat16(), torch.tensor(0.3)
        for y in (low * 2, X * 2):  # a low-precision input with an output of either precision
            assert lerp(low, y, mix).dtype == (low + mix * (y - low)).dtype
