"""Every shipped channel-preserving block builds from a YAML row with inferred channels, and the detector runs.

One test parametrised over the block table (so a block added tomorrow is covered without a new test): the row goes
after SPPF (P5) of YOLOv8, YOLO11 and YOLO26 at scale n, and of yolo11x (the widest P5, 768 channels); the block is
the declared class, has the state-dict shapes of ``cls(c, *args)`` at the inferred width, and receives and returns
that width. `ROWS` gives the blocks whose test row sets arguments (through a fork alias where forks use one) and what
those arguments must set.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
from support.blocks import shipped
from support.zoo_builds import BUILD_CASES, assert_builds, p5_width
from torch import nn


def _mlca_kernel(block: nn.Module, c: int) -> bool:
    t = int(abs(math.log(c, 2) + 1) / 2)
    return block.conv.kernel_size == (t if t % 2 else t + 1,)


#: block name -> (YAML name in the row, row args, check of the built block given its input channels)
ROWS: dict[str, tuple[str, list, Callable[[nn.Module, int], bool]]] = {
    "BAM": ("BAM", [16, 2], lambda b, c: b.spatial_att.gate_s.gate_s_conv_di_1.dilation == (2, 2)),
    "DoubleAttention": ("A2Attention", [], lambda b, c: b.c_m == 128),
    "ELA": ("ELA", ["L"], lambda b, c: b.phi == "L"),
    "EMA": ("EMA", [], lambda b, c: b.groups == 32),
    "GAM": ("GAM_Attention", [], lambda b, c: True),
    "EffectiveSE": ("ESE", [], lambda b, c: True),
    "GatherExcite": ("GE", [True, 4], lambda b, c: True),
    "LSKA": ("LSKA", [23], lambda b, c: b.k_size == 23),
    "MLCA": ("MLCA", [], _mlca_kernel),
    "SKAttention": ("SK", [[1, 3]], lambda b, c: len(b.convs) == 2),
    "SimAM": ("SimAM", [1e-3], lambda b, c: b.e_lambda == 1e-3),
    "SpatialGroupEnhance": ("SGE", [], lambda b, c: True),
}
SPECS = [pytest.param(s, id=s.name) for s in shipped("channel")]


def test_every_row_above_names_a_shipped_block():
    assert set(ROWS) <= {s.name for s in shipped("channel")}


@pytest.mark.parametrize(("fam", "scale"), BUILD_CASES)
@pytest.mark.parametrize("spec", SPECS)
def test_builds_from_a_yaml_row(spec, fam, scale):
    row_name, args, check = ROWS.get(spec.name, (spec.name, [], lambda b, c: True))
    block = assert_builds(fam, scale, row_name, spec.cls, args)
    assert check(block, p5_width(fam, scale))
