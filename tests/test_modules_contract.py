"""What every channel-preserving block promises: shape, a harmless fresh start, trainability, clear argument errors."""

from __future__ import annotations

import inspect

import pytest
import torch
from block_helpers import shipped
from torch import nn

from yolo_attn.modules import (
    CBAM,
    ECA,
    MHSA,
    SAM,
    SE,
    BlockArgumentError,
    ChannelAttention,
    CoordAtt,
    SeparableSelfAttention,
    SpatialAttention,
)
from yolo_attn.modules.random_weights import randomize_

# documented factor a fresh block multiplies its input by (gates start at exactly 0.5; attention at identity). Only
# these blocks promise a uniform fresh scale: the zoo blocks keep their reference code's initialisation
# (SimAM has no parameter at all) and start as the identity through their identity mix instead
FRESH_SCALE = {
    SE: 0.5,
    ChannelAttention: 0.5,
    SpatialAttention: 0.5,
    CBAM: 0.25,
    ECA: 0.5,
    SAM: 0.5,
    CoordAtt: 0.25,
    MHSA: 1.0,
    SeparableSelfAttention: 1.0,
}
#: blocks whose paper's formula or reference init cannot start as one uniform scale, with the reason; their own tests
#: check what a fresh block computes instead
BLOCKS = [s.cls for s in shipped("channel")]
VARIANTS = [
    pytest.param(lambda c: SpatialAttention(c, (3, 1), "mean", True), id="SpatialAttention-rect-mean-bn"),
    pytest.param(lambda c: SpatialAttention(c, 5, "max_mean", True), id="SpatialAttention-bn"),
    pytest.param(lambda c: CBAM(c, 8, (1, 3)), id="CBAM-rect"),
    pytest.param(lambda c: ECA(c, 7), id="ECA-k7"),
    pytest.param(lambda c: MHSA(c, 8), id="MHSA-8"),
]
ALL_CONFIGS = [pytest.param(cls, id=cls.__name__) for cls in BLOCKS] + VARIANTS
# blocks with parameters of their own (a parameter-free block such as SimAM has nothing to learn; its identity mix is
# tested in test_identity_start)
LEARNING_CONFIGS = [pytest.param(cls, id=cls.__name__) for cls in BLOCKS if any(True for _ in cls(64).parameters())]
LEARNING_CONFIGS += VARIANTS


@pytest.mark.parametrize("cls", BLOCKS, ids=lambda c: c.__name__)
def test_blocks_are_built_from_inferred_channels_then_yaml_args(cls):
    assert set(FRESH_SCALE) <= set(BLOCKS)
    first = next(iter(inspect.signature(cls).parameters))
    assert first == "c1"
    assert all(p.default is not inspect.Parameter.empty for p in list(inspect.signature(cls).parameters.values())[1:])


@pytest.mark.parametrize("make", ALL_CONFIGS)
@pytest.mark.parametrize("shape", [(2, 64, 20, 20), (1, 64, 7, 12), (3, 64, 1, 1)])
def test_output_has_input_shape(make, shape):
    x = torch.randn(shape)
    block = make(64)
    assert block(x).shape == x.shape
    assert block.eval()(x).shape == x.shape


@pytest.mark.parametrize("cls", list(FRESH_SCALE), ids=lambda c: c.__name__)
def test_fresh_block_scales_its_input_uniformly(cls):
    # a pretrained signal keeps every feature's relative size; a following BatchNorm cancels the constant in training
    x = torch.randn(4, 64, 10, 12)
    block = cls(64).train()
    with torch.no_grad():
        scale = float(block(torch.ones(1, 64, 10, 12)).mean())
        assert 0 < scale <= 1
        assert scale == pytest.approx(FRESH_SCALE.get(cls, scale))
        torch.testing.assert_close(block(x), x * scale)


@pytest.mark.parametrize("make", LEARNING_CONFIGS)
def test_every_parameter_learns_from_a_fresh_start(make):
    # zero-initialised last layers must not freeze the layers before them: after one step, all receive gradient
    torch.manual_seed(0)
    block = make(64).train()
    x, target = torch.randn(4, 64, 10, 12), torch.randn(4, 64, 10, 12)
    optimizer = torch.optim.SGD(block.parameters(), lr=0.5)
    reached = {name: False for name, _ in block.named_parameters()}
    for _ in range(2):
        optimizer.zero_grad()
        ((block(x) - target) ** 2).mean().backward()
        for name, p in block.named_parameters():
            reached[name] |= bool(p.grad is not None and p.grad.abs().sum() > 0)
        optimizer.step()
    assert all(reached.values()), [name for name, ok in reached.items() if not ok]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: SE(64, 128), r"SE: reduction ratio r=128 leaves no hidden channel for 64 input channels"),
        (lambda: SE(64, 0), r"SE: r \(reduction ratio\) must be a positive integer, got 0"),
        (lambda: SE(64, 2.5), r"SE: r .* got 2.5 \(float\)"),
        (lambda: SE(64, True), r"SE: r .* got True \(bool\)"),
        (lambda: ChannelAttention(16, 1024), r"ChannelAttention: reduction ratio r=1024 .*not a channel count"),
        (lambda: CBAM(256, 1024), r"CBAM: reduction ratio r=1024"),
        (lambda: CBAM(256, 16, 4), r"CBAM: kernel size k=4 has an even size"),
        (lambda: SpatialAttention(64, [3, 2]), r"SpatialAttention: kernel size k=\[3, 2\] has an even size"),
        (lambda: SpatialAttention(64, [3, 3, 3]), r"SpatialAttention: kernel size k must be .* pair"),
        (lambda: SpatialAttention(64, "7"), r"SpatialAttention: kernel size k must be .* got '7' \(str\)"),
        (lambda: SpatialAttention(64, 7, "median"), r"SpatialAttention: pool must be one of \['max_mean', 'mean'\]"),
        (lambda: SpatialAttention(64, 7, "mean", "yes"), r"SpatialAttention: bn must be true or false"),
        (lambda: ECA(64, 4), r"ECA: k .* must be odd or null, got 4"),
        (lambda: ECA(64, -3), r"ECA: k .* must be a positive integer"),
        (lambda: CoordAtt(64, 0), r"CoordAtt: r \(reduction ratio\) must be a positive integer"),
        (lambda: MHSA(64, 6), r"MHSA: heads=6 must divide the 64 input channels"),
        (lambda: MHSA(64, 0), r"MHSA: heads \(number of attention heads\) must be a positive integer"),
        (lambda: SAM(0), r"SAM: input channels must be a positive integer, got 0"),
        (lambda: SeparableSelfAttention(64.0), r"SeparableSelfAttention: input channels .* got 64.0 \(float\)"),
    ],
)
def test_wrong_args_raise_a_clear_error(make, message):
    with pytest.raises(BlockArgumentError, match=message):
        make()


def test_block_argument_error_is_a_value_error():
    # callers (the registry) that catch ValueError also catch ours
    assert issubclass(BlockArgumentError, ValueError)


@pytest.mark.parametrize(
    ("block", "shape"),
    [
        (SE(64), (2, 64, 1, 1)),
        (ChannelAttention(64), (2, 64, 1, 1)),
        (ECA(64), (2, 64, 1, 1)),
        (SpatialAttention(64), (2, 1, 10, 12)),
        (SAM(64), (2, 64, 10, 12)),
        (CoordAtt(64), (2, 64, 10, 12)),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, nn.Module) else None,
)
def test_gate_is_what_forward_multiplies_by(block, shape):
    x = torch.randn(2, 64, 10, 12)
    randomize_(block).eval()
    with torch.no_grad():
        gate = block.gate(x)
        assert gate.shape == shape
        assert ((gate >= 0) & (gate <= 1)).all() and gate.std() > 0
        torch.testing.assert_close(block(x), x * gate)


@pytest.mark.parametrize("make", ALL_CONFIGS)
def test_dtype_and_device_moves_reach_every_tensor(make):
    # nn.Module.to/.float/.half recurse through `_apply`: a block method of that name would break them (and training)
    block = make(64).eval().to(torch.float64)
    assert all(t.dtype == torch.float64 for t in (*block.parameters(), *block.buffers()) if t.is_floating_point())
    with torch.no_grad():
        assert block(torch.randn(1, 64, 6, 5, dtype=torch.float64)).dtype == torch.float64
    block.half().float()
    assert all(t.dtype == torch.float32 for t in (*block.parameters(), *block.buffers()) if t.is_floating_point())
