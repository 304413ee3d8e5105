"""Public registration: register_block / unregister_block, taken names, the generic identity start, unknown names."""

from __future__ import annotations

import copy
import io

import pytest
import torch
import user_blocks
from test_registry import build, small_yaml
from torch import nn
from ultralytics.nn.tasks import DetectionModel, torch_safe_load

import yolo_attn
from yolo_attn import registry
from yolo_attn.modules.identity_start import add_identity_mix


@pytest.fixture
def simam():
    """A user's SimAM (yolo_attn ships one) registered as MySimAM, with an alias; unregistered afterwards."""
    cls = type("MySimAM", (user_blocks.SimAM,), {"__module__": user_blocks.__name__})
    user_blocks.RegisteredSimAM = cls  # importable by reference, as a user's class is: pickling needs it
    cls.__qualname__ = "RegisteredSimAM"
    yolo_attn.register_block(cls, aliases=["mysimam"])
    yield cls
    yolo_attn.unregister_block("MySimAM")


def test_decorator_registers_name_and_aliases_and_yaml_builds_by_both(simam):
    assert registry.get("MySimAM").cls is simam and registry.get("mysimam").cls is simam
    assert "MySimAM" in yolo_attn.BLOCKS
    model = build(small_yaml([[-1, 1, "MySimAM", []], [-1, 1, "mysimam", [{"e_lambda": 1e-3}]]]))
    assert isinstance(model.model[5], simam) and isinstance(model.model[6], simam)
    assert model.model[6].e_lambda == 1e-3
    assert model.model[5].type.endswith("RegisteredSimAM")


def test_decorator_form_with_arguments():
    @yolo_attn.register_block(name="MyGate", aliases=["my-gate"])
    class Gate(user_blocks.PointGate):
        pass

    try:
        assert registry.get("my-gate").cls is Gate
        assert isinstance(build(small_yaml([[-1, 1, "my-gate", []]])).model[5], Gate)
    finally:
        yolo_attn.unregister_block(Gate)
    assert registry.get("MyGate") is None and registry.get("my-gate") is None


def test_unregistered_name_is_unknown_again(simam):
    yolo_attn.unregister_block(simam)
    with pytest.raises(yolo_attn.YAMLRowError, match="unknown module 'MySimAM'"):
        build(small_yaml([[-1, 1, "MySimAM", []]]))
    yolo_attn.register_block(simam, aliases=["mysimam"])  # for the fixture's teardown


def test_bad_yaml_args_of_a_users_block_name_the_block(simam):
    with pytest.raises(yolo_attn.YAMLRowError, match=r"layer 5 .*bad args.*Expected MySimAM \[e_lambda=0.0001\]"):
        build(small_yaml([[-1, 1, "MySimAM", [1e-4, 3]]]))


def test_a_name_ultralytics_resolves_is_refused_unless_overridden():
    with pytest.raises(
        yolo_attn.BlockRegistrationError, match=r"'C2f'.*Ultralytics' ultralytics.nn.modules.block.C2f.*override=True"
    ):
        yolo_attn.register_block(user_blocks.PointGate, name="C2f")
    assert registry.get("C2f") is None
    yolo_attn.register_block(user_blocks.PointGate, name="C2f", override=True)
    try:
        assert registry.get("C2f").cls is user_blocks.PointGate
    finally:
        yolo_attn.unregister_block("C2f")
    assert type(build(small_yaml([])).model[3]).__name__ == "C2f"  # Ultralytics' own again


def test_a_name_another_block_uses_is_refused_unless_overridden():
    original = registry.get("CBAM")
    with pytest.raises(yolo_attn.BlockRegistrationError, match=r"'CBAM'.*yolo_attn.modules.cbam.CBAM.*override=True"):
        yolo_attn.register_block(user_blocks.PointGate, name="CBAM")
    assert registry.get("CBAM") is original
    yolo_attn.register_block(user_blocks.PointGate, name="CBAM", override=True)
    try:
        assert isinstance(build(small_yaml([[-1, 1, "CBAM", []]])).model[5], user_blocks.PointGate)
    finally:
        yolo_attn.unregister_block("CBAM")
        registry.add(original)
    assert isinstance(build(small_yaml([[-1, 1, "CBAM", []]])).model[5], yolo_attn.CBAM)


@pytest.mark.parametrize(
    ("cls", "message"),
    [
        (user_blocks.NoChannels, r"takes no input-channel argument: a block is built as NoChannels\(c1, \*yaml_args\)"),
        (int, r"is not an nn.Module subclass"),
    ],
)
def test_classes_that_cannot_be_blocks_are_refused_with_the_reason(cls, message):
    with pytest.raises(yolo_attn.BlockRegistrationError, match=message):
        yolo_attn.register_block(cls)


def test_a_block_whose_forward_takes_two_inputs_is_refused():
    class TwoInputs(nn.Module):
        def __init__(self, c1: int) -> None:
            super().__init__()

        def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return x + y

    with pytest.raises(yolo_attn.BlockRegistrationError, match=r"forward takes 2 required inputs.*one tensor"):
        yolo_attn.register_block(TwoInputs)


def test_an_extends_block_needs_its_parent_and_parent_args():
    from ultralytics.nn.modules import C2f

    class NotAChild(nn.Module):
        def __init__(self, c1: int, c2: int) -> None:
            super().__init__()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    class NoParentArgs(C2f):
        pass

    with pytest.raises(yolo_attn.BlockRegistrationError, match="does not subclass it"):
        yolo_attn.register_block(NotAChild, parent=C2f)
    with pytest.raises(yolo_attn.BlockRegistrationError, match=r"no classmethod parent_args"):
        yolo_attn.register_block(NoParentArgs, parent=C2f)


def test_generic_identity_mix_is_exact_pickles_and_loads_weights_only(tmp_path, simam):
    block = add_identity_mix(user_blocks.PointGate(8))
    x = torch.randn(2, 8, 5, 6)
    assert torch.equal(block(x), x)
    assert add_identity_mix(block) is block and len(block._forward_hooks) == 1  # idempotent
    assert [k for k in block.state_dict() if "identity_mix" in k] == ["identity_mix"]
    with torch.no_grad():
        block.identity_mix.fill_(0.5)
    expected = block(x)
    assert not torch.equal(expected, x)
    buffer = io.BytesIO()
    torch.save(block, buffer)
    buffer.seek(0)
    torch.testing.assert_close(torch.load(buffer, weights_only=False)(x), expected)
    torch.testing.assert_close(copy.deepcopy(block)(x), expected)
    model = build(small_yaml([[-1, 1, "MySimAM", []]])).eval()
    add_identity_mix(model.model[5])
    path = tmp_path / "simam.pt"
    torch.save({"model": model}, path)
    ckpt, _ = torch_safe_load(path, safe_only=True)  # what ULTRALYTICS_SAFE_LOAD=1 does for every load
    image = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ckpt["model"].eval()(image)[0], model(image)[0])


@pytest.mark.parametrize("name", ["MySimAM", "mysimam"])
def test_a_users_block_starts_as_the_identity_in_a_pretrained_network(simam, name):
    baseline = build(small_yaml([])).eval()
    target = DetectionModel(small_yaml([[-1, 1, name, []]]), verbose=False)
    report = yolo_attn.load_pretrained(target, baseline, verbose=False)
    assert report.identity_start and report.new_blocks == {"model.5": "MySimAM"}
    assert report.transferred == report.source_tensors
    image = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(target.eval()(image)[0], baseline(image)[0])


@pytest.mark.parametrize(
    ("name", "closest"),
    [("NotABlock", None), ("CBAMM", "CBAM"), ("cbam", "CBAM"), ("C2F", "C2f"), ("Eca", "ECA")],
)
def test_unknown_names_raise_a_row_error_with_closest_names_and_how_to_register(name, closest):
    with pytest.raises(yolo_attn.YAMLRowError) as info:
        build(small_yaml([[-1, 1, name, [8]]]))
    message = str(info.value)
    assert f"model YAML layer 5 [-1, 1, {name}, [8]]: unknown module {name!r}" in message
    assert "neither Ultralytics nor yolo_attn knows it" in message
    assert "@yolo_attn.register_block" in message and "yolo_attn.blocks" in message  # decorator and entry point
    if closest is not None:
        assert closest in message.split("closest known names: ")[1].split(")")[0]


def test_registering_a_class_again_replaces_its_declaration(simam):
    yolo_attn.register_block(simam, aliases=["mysimam"])  # the same declaration: no-op
    assert [s.cls for s in registry.specs()].count(simam) == 1
    yolo_attn.register_block(simam, aliases=["SiMAM2"])  # other aliases: the declaration is replaced
    assert registry.get("SiMAM2").cls is simam and registry.get("mysimam") is None
    assert [s.cls for s in registry.specs()].count(simam) == 1
