"""Every block at run time: batch size 1, non-square inputs, fp16/bf16 autocast, and torch.compile."""

from __future__ import annotations

import pytest
import torch
from support.blocks import Parallel, default_block, output_shape, shipped
from torch import nn

from yolo_attn import (
    CA_C2f,
    CA_C3k2,
    SpatialAttention,
)
from yolo_attn.modules.random_weights import randomize_

C = 32
#: Every shipped block with its default arguments, then variants.
BLOCKS = {s.name: (lambda s=s: default_block(s, C)) for s in shipped()} | {
    "SpatialAttention-seed": lambda: SpatialAttention(C, (3, 1), "mean", False),
    "CA_C2f-n2": lambda: CA_C2f(C, C, 2, True),
    "CA_C3k2-c3k": lambda: CA_C3k2(C, C, 1, True),
}


def randomised(block: nn.Module) -> nn.Module:
    """Random weights (zero-initialised projections would hide a broken path), in eval mode."""
    return randomize_(block).eval()


@pytest.mark.parametrize("name", list(BLOCKS))
@pytest.mark.parametrize("shape", [(1, C, 13, 7), (2, C, 8, 20)])
def test_batch_one_and_non_square(name, shape):
    block = randomised(BLOCKS[name]())
    x = torch.randn(shape)
    y = block(x)
    assert y.shape == output_shape(block, x)
    assert torch.isfinite(y).all()
    block.train()  # BatchNorm in training mode still runs on batch 1 when H x W > 1
    assert block(x).shape == output_shape(block, x)


@pytest.mark.parametrize("name", list(BLOCKS))
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_cpu_autocast(name, dtype):
    block = randomised(BLOCKS[name]())
    x = torch.randn(2, C, 12, 10)
    reference = block(x)
    with torch.autocast("cpu", dtype=dtype):
        y = block(x)
    assert y.shape == output_shape(block, x)
    assert torch.isfinite(y.float()).all()
    scale = reference.abs().max()
    assert (y.float() - reference).abs().max() <= 0.05 * scale  # low precision, same function


@pytest.mark.slow
def test_torch_compile_all_blocks():
    # Every block in one graph, traced by Dynamo without a graph break (fullgraph) and run through AOTAutograd; the
    # aot_eager backend skips Inductor's C++ code generation (about 90 s on 2 CPU cores for this graph), which
    # test_modules_fast.test_torch_compile_equals_plain_formulation exercises on its blocks. The blocks run side by
    # side on the same input, not chained: a chain of random-weight blocks amplifies rounding into nonsense.
    model = randomised(Parallel([make() for make in BLOCKS.values()]))
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    x = torch.randn(2, C, 16, 12)  # one shape: a second one recompiles every block (dynamic shapes), doubling the cost
    with torch.no_grad():
        for name, got, want in zip(BLOCKS, compiled(x), model(x), strict=True):
            scale = max(1.0, float(want.abs().max()))
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * scale, msg=lambda m, n=name: f"{n}: {m}")
