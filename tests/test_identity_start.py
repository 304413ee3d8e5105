"""Identity start: a block new to a pretrained network returns its input until training teaches it otherwise."""

from __future__ import annotations

import copy
import io

import pytest
import torch
import yaml
from block_helpers import shipped
from torch import nn
from ultralytics.nn.tasks import DetectionModel

import yolo_attn
from yolo_attn.finetune import transfer
from yolo_attn.modules import AttentionBlock
from yolo_attn.modules.random_weights import randomize_

C = 32
X = torch.randn(2, C, 6, 5, generator=torch.Generator().manual_seed(0))
#: Every shipped channel-preserving block by name, with arguments where the defaults would not fit C = 32 well.
BLOCK_ARGS = {s.name: [] for s in shipped("channel")} | {
    "SE": [8],
    "ChannelAttention": [8],
    "SpatialAttention": [3, "max_mean", True],
    "CBAM": [8, 3],
    "CoordAtt": [8],
}


def make(name: str) -> AttentionBlock:
    return getattr(yolo_attn, name)(C, *BLOCK_ARGS[name]).eval()


def test_every_shipped_block_is_an_attention_block():
    # a user's block need not be (it gets the generic identity mix); ours all use the base class and its blend
    assert set(BLOCK_ARGS) <= set(yolo_attn.BLOCKS)
    assert all(issubclass(s.cls, AttentionBlock) and s.identity == "own" for s in shipped("channel"))


@pytest.mark.parametrize("name", BLOCK_ARGS)
def test_from_scratch_a_block_has_no_mix(name):
    block = make(name)
    assert block.identity_mix is None
    assert not any("identity_mix" in k for k in block.state_dict())
    randomize_(block)
    y = block(X)
    assert not torch.equal(y, X)
    assert torch.equal(block.blend(X, y), y)


@pytest.mark.parametrize("name", BLOCK_ARGS)
def test_started_as_identity_a_trained_block_returns_its_input_exactly(name):
    block = randomize_(make(name)).start_as_identity()
    assert torch.equal(block(X), X)
    assert block.start_as_identity() is block  # idempotent
    n_mix = sum("identity_mix" in k for k in block.state_dict())
    assert n_mix == (0 if block.zero_output else 1)  # a scalar at most


@pytest.mark.parametrize("name", BLOCK_ARGS)
def test_one_or_two_optimizer_steps_move_a_new_block_off_the_identity(name):
    torch.manual_seed(1)  # not X's seed: a parameter-free block draws nothing, and the target would equal X
    block = make(name).train().start_as_identity()
    optimizer = torch.optim.SGD(block.parameters(), lr=0.5)
    target = torch.randn_like(X)
    moved_grads = []
    for _ in range(2):
        optimizer.zero_grad()
        nn.functional.mse_loss(block(X), target).backward()
        moved_grads.append(sum(float(p.grad.abs().sum()) for p in block.parameters() if p.grad is not None))
        optimizer.step()
    assert moved_grads[0] > 0, "no gradient at the first step: the block could never leave the identity"
    assert not torch.allclose(block.eval()(X), X)


def test_cbam_gets_one_mix_not_one_per_gate():
    blocks = transfer.outermost_attention_blocks(nn.Sequential(make("CBAM"), make("SE")))
    assert list(blocks) == ["0", "1"]
    cbam = blocks["0"].start_as_identity()
    assert [k for k in cbam.state_dict() if "identity_mix" in k] == ["identity_mix"]


def test_mix_survives_pickling_and_state_dict_round_trip():
    block = randomize_(make("CBAM")).start_as_identity()
    with torch.no_grad():
        block.identity_mix.fill_(0.3)
    buffer = io.BytesIO()
    torch.save(block, buffer)
    buffer.seek(0)
    reloaded = torch.load(buffer, weights_only=False)
    assert float(reloaded.identity_mix.detach()) == pytest.approx(0.3)
    assert torch.equal(reloaded(X), block(X))
    other = make("CBAM").start_as_identity()
    other.load_state_dict(block.state_dict())
    assert torch.equal(other(X), block(X))
    expected = X + 0.3 * (block.spatial_attention(block.channel_attention(X)) - X)
    assert torch.allclose(block(X), expected, atol=1e-6)


ALL_BLOCKS = [
    [-1, 1, "SE", []],
    [-1, 1, "CBAM", [8, 3]],
    [-1, 1, "ECA", []],
    [-1, 1, "SAM", []],
    [-1, 1, "CoordAtt", []],
    [-1, 1, "MHSA", [4]],
    [-1, 1, "CA_C2f", [256, True]],
]


def all_blocks_yaml() -> dict:
    backbone = [[-1, 1, "Conv", [32, 3, 2]], [-1, 1, "Conv", [64, 3, 2]], [-1, 1, "Conv", [128, 3, 2]],
                [-1, 1, "Conv", [256, 3, 2]], [-1, 1, "Conv", [256, 3, 2]]]  # fmt: skip
    return {"nc": 3, "scales": {"n": [1.0, 1.0, 1024]}, "backbone": backbone,
            "head": [*ALL_BLOCKS, [[2, 3, -1], 1, "Detect", ["nc"]]]}  # fmt: skip


def model_with_mixes(value: float, model: DetectionModel | None = None) -> DetectionModel:
    """Random weights (seeded: the same for every build of the YAML) and every mix set to ``value``."""
    model = model or DetectionModel(all_blocks_yaml(), verbose=False)
    randomize_(model)
    for block in transfer.outermost_attention_blocks(model).values():
        block.start_as_identity()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("identity_mix"):
                p.fill_(value)
    return model.eval()


def test_mix_survives_ultralytics_fuse():
    model = model_with_mixes(0.3)
    n_mix = sum(k.endswith("identity_mix") for k in model.state_dict())
    assert n_mix == 6  # SE, CBAM, ECA, SAM, CoordAtt, one CoordAtt per CA_C2f bottleneck (n=1); MHSA has none
    image = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        expected = model(image)[0]
        fused = copy.deepcopy(model).fuse(verbose=False)
        got = fused(image)[0]
    assert sum(k.endswith("identity_mix") for k in fused.state_dict()) == n_mix
    assert float((got - expected).abs().max() / expected.abs().max()) < 1e-4


@pytest.mark.slow
def test_mix_survives_torch_compile():
    block = randomize_(make("CBAM")).start_as_identity()
    with torch.no_grad():
        block.identity_mix.fill_(0.3)
    compiled = torch.compile(block, backend="aot_eager")
    assert torch.allclose(compiled(X), block(X), atol=1e-6)


@pytest.mark.slow
def test_mix_survives_onnx_export(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a YAML-built model exports into the working directory
    import numpy as np
    import onnxruntime as ort
    from ultralytics import YOLO

    path = tmp_path / "yolov8n-mixes.yaml"
    path.write_text(yaml.safe_dump(all_blocks_yaml(), sort_keys=False))
    model = YOLO(str(path))
    model_with_mixes(0.3, model.model)
    onnx_file = model.export(format="onnx", imgsz=64, device="cpu", simplify=True)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        expected = model_with_mixes(0.3)(x)[0].numpy()
        without = model_with_mixes(0.0)(x)[0].numpy()
    session = ort.InferenceSession(onnx_file, providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    assert float(np.abs(got - expected).max()) < 1e-3
    assert float(np.abs(got - without).max()) > 1e-2  # the mix is in the graph, not folded to the identity
