"""Compositions: every registered channel block inside C2f, C3k2, C3 and C2PSA by name (``C3k2_EMA``)."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import torch
from support.env import subprocess_env
from support.user_blocks import PointGate
from ultralytics.nn.modules.block import C2PSA, C3, Bottleneck, C2f, C3k2, PSABlock
from ultralytics.nn.tasks import DetectionModel, yaml_model_load

import yolo_attn
from yolo_attn import registry
from yolo_attn.integration.loading import load_pretrained
from yolo_attn.modules import composed
from yolo_attn.modules.composed import HOSTS, AttnBottleneck, composed_class
from yolo_attn.registry import YAMLRowError

SAMPLE = ["SE", "CBAM", "CoordAtt", "SimAM", "ECA"]
HOST_ARGS = [  # host, its args (c1, c2, n, ...)
    pytest.param(C2f, (32, 48, 2, True), id="C2f"),
    pytest.param(C2f, (32, 64, 1, False, 2, 0.25), id="C2f-groups"),
    pytest.param(C3k2, (32, 48, 2), id="C3k2"),
    pytest.param(C3k2, (32, 64, 1, True), id="C3k2-c3k"),
    pytest.param(C3k2, (64, 128, 1, True, 0.5, True), id="C3k2-attn"),
    pytest.param(C3, (32, 48, 2), id="C3"),
    pytest.param(C2PSA, (128, 128, 1), id="C2PSA"),
]


def _randomize(module: torch.nn.Module, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
        for name, b in module.named_buffers():
            if name.endswith("running_var"):
                b.copy_(torch.rand(b.shape, generator=gen) + 0.5)
            elif name.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, generator=gen) * 0.1)


def _reference(host: type, args: tuple, block: torch.nn.Module) -> torch.nn.Module:
    """A plain Ultralytics host with the composed block's host tensors, whose bottlenecks apply B after cv2."""
    ref = host(*args).eval()
    missing, unexpected = ref.load_state_dict(block.state_dict(), strict=False)
    assert all(".attn." in k for k in missing + unexpected)  # B's tensors; C2PSA: its own attention's
    inner = dict(block.named_modules())
    for path, m in list(ref.named_modules()):
        if type(m) is Bottleneck:
            attn = inner[f"{path}.attn"]

            def forward(x, b=m, a=attn):
                y = a(b.cv2(b.cv1(x)))
                return x + y if b.add else y

            m.forward = forward
        elif isinstance(m, PSABlock) and host is C2PSA:
            m.attn = inner[f"{path}.attn"]
    return ref


@pytest.mark.parametrize("name", SAMPLE)
@pytest.mark.parametrize(("host", "args"), HOST_ARGS)
def test_composed_forward_equals_the_host_with_b_after_cv2(host, args, name):
    cls = composed_class(host.__name__, name)
    assert issubclass(cls, host) and cls.__name__ == f"{host.__name__}_{registry.get(name).name}"
    block = cls(*args).eval()
    _randomize(block, seed=0)
    n_inner = sum(isinstance(m, AttnBottleneck) for m in block.modules())
    if host is C2PSA:
        assert sum(isinstance(m, PSABlock) and isinstance(m.attn, registry.get(name).cls) for m in block.modules())
    else:
        assert n_inner and not any(type(m) is Bottleneck for m in block.modules())
    ref = _reference(host, args, block)
    x = torch.randn(2, args[0], 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(block(x), ref(x))


def test_every_block_in_every_host_resolves_by_name_any_case_and_through_aliases():
    count = 0
    for spec in registry.specs(registry.CHANNEL):
        for host in HOSTS:
            for name in (
                f"{host}_{spec.name}",
                f"{host.lower()}-{spec.name.upper()}",
                *(f"{host}_{a}" for a in spec.aliases),
            ):
                found = registry.get(name)
                assert found is not None and found.inner is spec and found.parent is HOSTS[host].cls, name
            count += 1
    assert count == len(composed.composed_names()) >= 4 * 30
    assert registry.get("C2f_GAM_Attention").cls is composed_class("C2f", "GAM")
    assert registry.get("CA_C2f").cls is composed_class("C2f", "CoordAtt")
    assert registry.get("CA_C3k2").cls is composed_class("C3k2", "CoordAtt")
    assert registry.get("C2f_Conv") is None and registry.get("Foo_SE") is None and registry.get("C2f_CA_C2f") is None


def _yolo11(name: str, scale: str = "n", mapping: dict | None = None, c2psa: str | None = None) -> dict:
    d = yaml_model_load(f"yolo11{scale}.yaml")
    for row in d["backbone"] + d["head"]:
        if row[2] == "C3k2":
            row[2], row[3] = name, list(row[3]) + ([mapping] if mapping else [])
        elif row[2] == "C2PSA" and c2psa:
            row[2] = c2psa
    return d


def test_yaml_rows_take_the_host_args_and_a_trailing_mapping_of_b_args():
    model = DetectionModel(_yolo11("C3k2_EMA", mapping={"factor": 8}, c2psa="C2PSA_CBAM"), verbose=False)
    emas = [m for m in model.modules() if type(m).__name__ == "EMA"]
    assert emas and all(m.groups == 8 for m in emas)
    assert type(model.model[10]).__name__ == "C2PSA_CBAM"
    plain = DetectionModel("yolo11n.yaml", verbose=False)
    for i in (2, 4, 6, 8, 13, 16, 19, 22):  # same host shapes as the plain model at each C3k2 row
        assert isinstance(model.model[i], C3k2) and len(model.model[i].m) == len(plain.model[i].m)
        assert model.model[i].cv2.conv.weight.shape == plain.model[i].cv2.conv.weight.shape
    assert model.eval()(torch.zeros(1, 3, 64, 64))[0].shape[0] == 1


def test_wrong_b_args_and_host_constraints_name_the_layer():
    with pytest.raises(YAMLRowError, match=r"layer 2 .*C3k2_EMA.*factor"):
        DetectionModel(_yolo11("C3k2_EMA"), verbose=False)  # EMA's default 32 groups do not divide 16 channels
    with pytest.raises(YAMLRowError, match=r"layer 2 .*unexpected keyword argument 'k'"):
        DetectionModel(_yolo11("C3k2_SE", mapping={"k": 3}), verbose=False)
    d = yaml_model_load("yolo11n.yaml")
    d["backbone"][10] = [-1, 2, "C2PSA_SE", [512]]  # C2PSA needs c2 == c1 (SPPF gives 1024 before scaling)
    with pytest.raises(YAMLRowError, match=r"layer 10 .*C2PSA_SE.*host C2PSA refuses"):
        DetectionModel(d, verbose=False)


def test_a_users_registered_block_composes_with_no_further_code():
    registry.register_block(PointGate, name="PointGateCSP")
    try:
        model = DetectionModel(_yolo11("c3k2-pointgatecsp"), verbose=False)
        assert sum(isinstance(m, PointGate) for m in model.modules()) == 11  # one per bottleneck at n, C3k's too
        assert type(model.model[2]).__name__ == "C3k2_PointGateCSP"
    finally:
        registry.unregister_block("PointGateCSP")
    assert registry.get("C3k2_PointGateCSP") is None


@pytest.mark.parametrize(
    ("base", "host", "name"),
    [("yolov8n.yaml", "C2f", "C2f_CBAM"), ("yolo11n.yaml", "C3k2", "C3k2_SimAM"), ("yolov5nu.yaml", "C3", "C3_SE")],
)
def test_transfer_lands_every_tensor_and_step_0_equals_the_pretrained_model(base, host, name):
    torch.manual_seed(0)
    source = DetectionModel(base, verbose=False)
    _randomize(source, seed=1)
    d = copy.deepcopy(source.yaml)
    for row in d["backbone"] + d["head"]:
        if row[2] == host:
            row[2] = name
    target = DetectionModel(d, verbose=False)
    report = load_pretrained(target, source, verbose=False)
    assert report.transferred == report.source_tensors and not report.not_transferred
    assert all(s == t for s, t in report.layer_map)  # no row inserted: every tensor under its own key
    src_state, tgt_state = source.state_dict(), target.state_dict()
    assert all(torch.equal(src_state[k], tgt_state[k]) for k in src_state)
    assert report.new_blocks and report.identity_start
    x = torch.rand(1, 3, 64, 64)
    source.eval(), target.eval()
    with torch.no_grad():
        torch.testing.assert_close(target(x)[0], source(x)[0], rtol=0, atol=1e-5)


def test_c2psa_b_replaces_the_pretrained_attention_and_says_so():
    source = DetectionModel("yolo11n.yaml", verbose=False)
    target = DetectionModel(_yolo11("C3k2_SE", c2psa="C2PSA_SE"), verbose=False)
    report = load_pretrained(target, source, verbose=False)
    assert report.replaced == {"model.10": "the attention of 1 PSABlock(s) by SE"}
    assert "replaced: model.10" in report.summary()
    assert all(".10.m.0.attn." in k for k in report.not_transferred)


def test_engagement_and_the_protocol_find_the_inner_blocks():
    from yolo_attn.finetune.transfer import outermost_attention_blocks

    model = DetectionModel(_yolo11("C3k2_SE"), verbose=False)
    found = outermost_attention_blocks(model)
    assert "model.2.m.0.attn" in found and "model.6.m.0.m.1.attn" in found and len(found) == 11


def test_composed_checkpoint_loads_in_a_fresh_process_and_under_safe_load(tmp_path):
    from ultralytics import YOLO

    model = YOLO("yolo11n.yaml")
    model.model = DetectionModel(_yolo11("C3k2_SimAM", c2psa="C2PSA_ECA"), verbose=False)
    model.ckpt = {}
    path = tmp_path / "composed.pt"
    torch.save({"model": model.model, "train_args": {}}, path)
    code = (
        "import torch, yolo_attn; from ultralytics.nn.tasks import load_checkpoint; "
        f"m, _ = load_checkpoint({str(path)!r}); print(type(m.model[2]).__module__, type(m.model[2]).__name__, "
        "type(m.model[10]).__name__)"
    )
    for safe in ("0", "1"):
        env = subprocess_env() | {"ULTRALYTICS_SAFE_LOAD": safe}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        assert "yolo_attn.modules.composed C3k2_SimAM C2PSA_ECA" in out.stdout


@pytest.mark.slow
def test_builds_at_x():
    model = DetectionModel(_yolo11("C3k2_CBAM", scale="x", c2psa="C2PSA_SE"), verbose=False)
    plain = DetectionModel("yolo11x.yaml", verbose=False)
    for i, layer in enumerate(plain.model):  # the host rows keep every tensor of the plain x model, shape for shape
        if isinstance(layer, C3k2):
            ours = model.model[i].state_dict()
            assert all(ours[k].shape == v.shape for k, v in layer.state_dict().items())
            assert len(ours) > len(layer.state_dict())
    assert any(isinstance(m, composed.AttnBottleneck) for m in model.model[22].m[0].modules())  # C3k inner blocks


def test_public_names():
    assert yolo_attn.modules.CA_C2f is composed_class("C2f", "CoordAtt")
    assert composed.C3k2_EMA is composed_class("C3k2", "EMA")  # PEP 562: made on demand, for pickle
    with pytest.raises(AttributeError):
        composed.Nothing_Here  # noqa: B018
