"""The fast forms of the blocks compute the plain formulation's numbers: eager, fused, compiled and in ONNX Runtime.

``yolo_attn.profiling.plain`` holds the blocks' forward passes as first written (shared MLP run twice, explicit
attention products, BatchNorm after its convolution). The reference-math tests (test_modules_reference.py) tie those
numbers to the papers' code; these tests tie the shipped blocks to them, and count the operations they dispatch.
"""

from __future__ import annotations

import copy
import io
import warnings

import pytest
import torch
from block_helpers import default_block, shipped
from torch import nn

from yolo_attn.modules import (
    CBAM,
    SAM,
    SE,
    CA_C2f,
    ChannelAttention,
    SpatialAttention,
)
from yolo_attn.modules.fusion import fold_batchnorm, fuse_blocks
from yolo_attn.modules.random_weights import randomize_
from yolo_attn.profiling.blocks import deployed_block, dispatched_ops
from yolo_attn.profiling.plain import Plain, has_plain, plain_forward

TOL = {"atol": 1e-5, "rtol": 1e-5}
#: Blocks whose forward or fusion changed in the speed work (fused gates), compiled once each way (inductor builds are
#: slow on 2 cores).
COMPILED = {"fused": ("SE", "CBAM", "SAM", "CoordAtt"), "unfused": ("CBAM", "MHSA", "SeparableSelfAttention")}
C = 32
#: Every shipped block with a plain formulation, with its default arguments, then variants with other arguments.
BLOCKS = {s.name: (lambda s=s: default_block(s, C)) for s in shipped("channel") if has_plain(s.cls)} | {
    "SE-r8": lambda: SE(C, 8),
    "ChannelAttention-r8": lambda: ChannelAttention(C, 8),
    "SpatialAttention-bn": lambda: SpatialAttention(C, 7, "max_mean", True),
    "SpatialAttention-seed": lambda: SpatialAttention(C, (3, 1), "mean", False),
    "CBAM-r8-k3": lambda: CBAM(C, 8, 3),
}
#: Operations per forward in inference (eval, fused), views and allocations not counted; the plain form's in brackets.
#: A block not listed must dispatch no more operations than its plain formulation.
OPS = {
    "SE": 6,  # (6) mean, addmm, relu, addmm, sigmoid, mul
    "ChannelAttention": 8,  # (11) mean, amax, stack, addmm, relu, addmm (last layer and sum merged), sigmoid, mul
    "SpatialAttention": 6,  # (7) amax, mean, cat, conv (BN folded), sigmoid, mul
    "SpatialAttention-bn": 6,  # (7)
    "SpatialAttention-seed": 4,  # (4) mean, conv, sigmoid, mul
    "CBAM": 14,  # (18)
    "ECA": 4,  # (4)
    "SAM": 3,  # (4) conv (BN folded), sigmoid, mul
    "CoordAtt": 9,  # (12) mean, mean, cat, baddbmm (BN folded), hardswish, baddbmm (both gates), sigmoid, mul, mul
    "MHSA": 6,  # (7) conv, layout copy, fused attention, layout copy, conv, add
    "SeparableSelfAttention": 9,  # (9) unchanged: one product for the context vector did not pay
}
X = torch.randn(2, C, 9, 13, generator=torch.Generator().manual_seed(3))


def assert_equal_fp32(actual: torch.Tensor, expected: torch.Tensor, msg: str = "") -> None:
    """Equal within 1e-5, absolute for outputs of size up to 1, relative to the largest output otherwise.

    Random attention weights give outputs up to ~30, whose float32 spacing is 2e-6; products over many tokens summed in
    another order (fused kernels, inductor) move them by a few of those spacings.
    """
    scale = max(1.0, expected.abs().max().item())
    torch.testing.assert_close(actual, expected, atol=1e-5 * scale, rtol=1e-5, msg=msg or None)


def randomised(name: str) -> nn.Module:
    return randomize_(BLOCKS[name]())


class Fused(nn.Module):
    """A fused block beside the plain formulation of its unfused twin, both outputs stacked: one graph for both."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.plain = Plain(copy.deepcopy(block).eval())
        self.fused = deployed_block(block)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack((self.fused(x), self.plain(x)))


@pytest.mark.parametrize("name", list(BLOCKS))
@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
def test_block_equals_plain_formulation(name, training):
    block = randomised(name).train(training)
    with torch.no_grad():
        expected = plain_forward(copy.deepcopy(block), X)  # a copy: training-mode BatchNorm updates its statistics
        assert_equal_fp32(block(X), expected)


@pytest.mark.parametrize("name", list(BLOCKS))
def test_fuse_keeps_outputs_and_removes_batchnorm(name):
    block = randomised(name).eval()
    with torch.no_grad():
        expected = plain_forward(block, X)
        assert block.fuse() is block if hasattr(block, "fuse") else True
        assert not any(isinstance(m, nn.BatchNorm2d) for m in block.modules())
        assert_equal_fp32(block(X), expected)
        if hasattr(block, "fuse"):
            block.fuse()  # idempotent
            assert_equal_fp32(block(X), expected)


@pytest.mark.parametrize("name", list(BLOCKS))
def test_fuse_adds_no_parameters_or_state(name):
    # merged weights are derived buffers, not parameters: fusing only ever removes (BatchNorm) and saves no new keys
    block = randomised(name).eval()
    fused = deployed_block(block)
    assert sum(p.numel() for p in fused.parameters()) <= sum(p.numel() for p in block.parameters())
    assert set(fused.state_dict()) <= set(block.state_dict()) | {k + ".bias" for k in _conv_names(block)}


def _conv_names(block: nn.Module) -> set[str]:
    return {name for name, m in block.named_modules() if isinstance(m, nn.Conv2d)}


def test_fold_batchnorm_matches_conv_then_bn():
    conv, bn = nn.Conv2d(4, 6, 3, padding=1, bias=True), nn.BatchNorm2d(6)
    randomize_(nn.Sequential(conv, bn)).eval()
    with torch.no_grad():
        torch.testing.assert_close(fold_batchnorm(conv, bn)(X[:, :4]), bn(conv(X[:, :4])), **TOL)
    with pytest.raises(ValueError, match="6 output channels"):
        fold_batchnorm(conv, nn.BatchNorm2d(5))


def test_fuse_blocks_reaches_nested_blocks():
    model = nn.Sequential(CBAM(C), CA_C2f(C, C, 2, True), SAM(C), nn.Sequential(nn.Conv2d(C, C, 1), nn.BatchNorm2d(C)))
    assert fuse_blocks(model) == 6  # CBAM, its two gates, two CoordAtts inside CA_C2f, SAM
    ours = [m for m in model.modules() if type(m).__module__.startswith("yolo_attn.")]
    assert not any(isinstance(m, nn.BatchNorm2d) for block in ours for m in block.children())
    assert isinstance(model[3][1], nn.BatchNorm2d)  # not ours: left alone


@pytest.mark.parametrize("name", list(BLOCKS))
def test_ops_per_forward(name):
    block = randomised(name)
    ops = dispatched_ops(deployed_block(block), X)
    plain_ops = dispatched_ops(Plain(block.eval()), X)
    assert len(ops) == OPS.get(name, len(ops)), ops
    assert len(ops) <= len(plain_ops)


@pytest.mark.slow
def test_torch_compile_equals_plain_formulation():
    # one graph (a single inductor build) with the blocks whose computation changed, fused and unfused
    plain = [randomised(name).eval() for name in COMPILED["fused"] + COMPILED["unfused"]]
    blocks = nn.ModuleList(
        [deployed_block(b) for b in plain[: len(COMPILED["fused"])]] + plain[len(COMPILED["fused"]) :]
    )

    def run(x: torch.Tensor) -> list[torch.Tensor]:
        return [block(x) for block in blocks]

    compiled = torch.compile(run, fullgraph=True)
    with torch.no_grad():
        names = [f"{n} fused" for n in COMPILED["fused"]] + list(COMPILED["unfused"])
        for name, got, block in zip(names, compiled(X), plain, strict=True):
            assert_equal_fp32(got, plain_forward(block, X), msg=f"{name}, compiled")


def test_onnx_runtime_equals_plain_formulation():
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    model = nn.ModuleList([Fused(randomised(name)) for name in BLOCKS] + [randomised(name).eval() for name in BLOCKS])

    class All(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.blocks = model

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
            return tuple(m(x) for m in self.blocks)

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(All().eval(), X[:1], buffer, opset_version=17, dynamo=False, input_names=["x"])
    model.eval()  # the exporter restores the modes it found, so the wrapper must be in eval mode before export
    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    outputs = session.run(None, {"x": X[:1].numpy()})
    with torch.no_grad():
        expected_pairs = [m(X[:1]) for m in model[: len(BLOCKS)]]
        for name, pair, expected_pair in zip(BLOCKS, outputs[: len(BLOCKS)], expected_pairs, strict=True):
            assert_equal_fp32(torch.from_numpy(pair[0]), expected_pair[1], msg=f"{name} fused, ONNX")
        for name, out, block in zip(BLOCKS, outputs[len(BLOCKS) :], model[len(BLOCKS) :], strict=True):
            assert_equal_fp32(torch.from_numpy(out), plain_forward(block, X[:1]), msg=f"{name}, ONNX")


@pytest.mark.parametrize("yaml", ["yolov8n-cbam.yaml", "yolov8n-sam.yaml", "yolov8n-ca.yaml", "yolov8n-ca-c2f.yaml"])
def test_ultralytics_fuse_folds_our_batchnorms(yaml, repo):
    from ultralytics import YOLO

    model = YOLO(str(repo / "model_yamls" / yaml)).model.eval()
    ours = [m for m in model.modules() if type(m).__module__.startswith("yolo_attn.modules")]
    for block in ours:
        randomize_(block)
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model(x)[0]
        assert any(isinstance(m, nn.BatchNorm2d) for block in ours for m in block.modules())
        model = model.fuse(verbose=False)
        assert not any(isinstance(m, nn.BatchNorm2d) for block in ours for m in block.modules())
        assert_equal_fp32(model(x)[0], expected)


def test_plain_model_runs_the_old_graph(repo):
    from ultralytics import YOLO

    from yolo_attn.profiling.plain import plain_model

    model = YOLO(str(repo / "model_yamls" / "yolov8n-cbam.yaml")).model.eval()
    for block in (m for m in model.modules() if isinstance(m, CBAM)):
        randomize_(block)
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    plain = plain_model(model).fuse(verbose=False)
    hidden = [m.hidden for m in plain.modules() if hasattr(m, "hidden")]
    assert len(hidden) == sum(isinstance(m, CBAM) for m in model.modules()) > 0
    assert all(isinstance(h.spatial_attention.bn, nn.BatchNorm2d) for h in hidden)  # not folded: the old graph
    with torch.no_grad():
        assert_equal_fp32(plain(x)[0], model(x)[0])
