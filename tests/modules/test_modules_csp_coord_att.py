"""CA-C2f and CA-C3k2: their Ultralytics parent exactly, plus CoordAtt on every bottleneck's residual branch."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn
from ultralytics.nn.modules import C2f, C3k2
from ultralytics.nn.modules.block import Bottleneck

from yolo_attn.modules import AttnBottleneck, CA_C2f, CA_C3k2, CoordAtt, CoordAttBottleneck
from yolo_attn.modules.csp_coord_att import add_coord_att
from yolo_attn.modules.random_weights import randomize_

# (ours, parent, constructor args, CoordAtt blocks expected)
CONFIGS = [
    pytest.param(CA_C2f, C2f, (32, 48, 1), 1, id="C2f-n1"),
    pytest.param(CA_C2f, C2f, (32, 48, 3, True), 3, id="C2f-n3-shortcut"),
    pytest.param(CA_C2f, C2f, (32, 64, 2, False, 2, 0.25), 2, id="C2f-groups-e0.25"),
    pytest.param(CA_C3k2, C3k2, (32, 48, 2), 2, id="C3k2"),
    pytest.param(CA_C3k2, C3k2, (32, 48, 1, False, 0.25), 1, id="C3k2-e0.25"),
    pytest.param(CA_C3k2, C3k2, (32, 48, 2, True), 4, id="C3k2-c3k"),  # each C3k holds two bottlenecks
    pytest.param(CA_C3k2, C3k2, (64, 128, 1, True, 0.5, True), 1, id="C3k2-attn"),
    pytest.param(CA_C3k2, C3k2, (32, 48, 1, False, 0.5, False, 1, False), 1, id="C3k2-no-shortcut"),
]


def _without_coord_att(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if not re.search(r"(^|\.)m\.\d+(\.m\.\d+|\.0)?\.attn\.", k)}


@pytest.mark.parametrize(("ours", "parent", "args", "n_ca"), CONFIGS)
def test_every_bottleneck_gets_coord_att_and_nothing_else_changes(ours, parent, args, n_ca):
    block, reference = ours(*args), parent(*args)
    assert not any(type(m) is Bottleneck for m in block.modules())
    coord = [m for m in block.modules() if isinstance(m, CoordAtt)]
    assert len(coord) == sum(isinstance(m, AttnBottleneck) for m in block.modules()) == n_ca
    # same layers under the same names, so the parent's weights load and Ultralytics' tooling sees familiar keys
    assert _without_coord_att(block.state_dict()).keys() == reference.state_dict().keys()
    assert all(v.shape == reference.state_dict()[k].shape for k, v in _without_coord_att(block.state_dict()).items())


@pytest.mark.parametrize(("ours", "parent", "args", "n_ca"), CONFIGS)
def test_forward_is_the_parent_forward_with_attention_on_the_residual_branch(ours, parent, args, n_ca):
    torch.manual_seed(0)
    block, reference = randomize_(ours(*args)).eval(), parent(*args).eval()
    reference.load_state_dict(_without_coord_att(block.state_dict()))
    x = torch.randn(2, args[0], 12, 10)
    with torch.no_grad():
        assert not torch.allclose(block(x), reference(x), atol=1e-3)  # the attention does something
        for m in block.modules():
            if isinstance(m, AttnBottleneck):
                m.attn = nn.Identity()
        torch.testing.assert_close(block(x), reference(x))  # and is the only difference


def test_coord_att_sits_before_the_residual_add():
    bottleneck = randomize_(Bottleneck(16, 16, shortcut=True)).eval()
    block = CoordAttBottleneck(bottleneck).eval()
    randomize_(block.attn, seed=1)
    x = torch.randn(2, 16, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(block(x), x + block.attn(bottleneck.cv2(bottleneck.cv1(x))))
    no_shortcut = CoordAttBottleneck(Bottleneck(16, 16, shortcut=False)).eval()
    with torch.no_grad():
        branch = no_shortcut.attn(no_shortcut.cv2(no_shortcut.cv1(x)))
        torch.testing.assert_close(no_shortcut(x), branch)


def test_add_coord_att_counts_and_leaves_other_modules_alone():
    container = nn.Sequential(Bottleneck(8, 8), nn.Sequential(Bottleneck(8, 8), nn.ReLU()), nn.Conv2d(8, 8, 1))
    assert add_coord_att(container) == 2
    assert isinstance(container[0], CoordAttBottleneck) and isinstance(container[1][0], CoordAttBottleneck)
    assert isinstance(container[1][1], nn.ReLU) and isinstance(container[2], nn.Conv2d)
    assert add_coord_att(container) == 0  # already upgraded


@pytest.mark.parametrize(("ours", "parent", "args", "n_ca"), CONFIGS)
def test_parent_args_rebuild_a_built_parent(ours, parent, args, n_ca):
    reference = parent(*args)
    rebuilt_args = ours.parent_args(reference)
    rebuilt = ours(*rebuilt_args)
    assert type(rebuilt) is ours
    assert rebuilt_args[:3] == list(args[:3])  # c1, c2, n
    missing, unexpected = rebuilt.load_state_dict(reference.state_dict(), strict=False)
    assert not unexpected and not _without_coord_att(dict.fromkeys(missing))
    state = _without_coord_att(rebuilt.state_dict())
    assert all(v.shape == reference.state_dict()[k].shape for k, v in state.items())


@pytest.mark.parametrize(("c2", "e"), [(48, 0.5), (40, 0.25), (96, 0.33), (22, 0.7), (39, 0.8), (45, 0.3)])
def test_parent_args_reproduce_the_hidden_width_exactly(c2, e):
    # C2f computes int(c2 * e); the recovered e must give back the same integer even where c / c2 * c2 rounds down
    # (hidden 15 of 22, 31 of 39, 13 of 45)
    reference = C2f(16, c2, 1, False, 1, e)
    assert CA_C2f(*CA_C2f.parent_args(reference)).c == reference.c


def test_parent_args_read_options_from_the_parent():
    c2f_args = CA_C2f.parent_args(C2f(16, 32, 2, True, 2, 0.5))
    assert c2f_args == [16, 32, 2, True, 2, 0.5]
    c3k2_args = CA_C3k2.parent_args(C3k2(16, 32, 2, True, 0.25, False, 1, False))
    assert c3k2_args == [16, 32, 2, True, 0.25, False, 1, False]
    assert CA_C3k2.parent_args(C3k2(64, 128, 1, False, 0.5, True))[5] is True  # attn
