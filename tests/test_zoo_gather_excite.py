"""GatherExcite: timm's GatherExcite, re-stated and imported, against the block; the extent constraints."""

from __future__ import annotations

import math

import pytest
import timm.layers.gather_excite as timm_ge
import torch
import torch.nn.functional as F
from torch import nn
from zoo_builds import BUILD_CASES, assert_builds, build_small

import yolo_attn
from yolo_attn.modules import BlockArgumentError, GatherExcite
from yolo_attn.modules.random_weights import randomize_

# (extra_params, extent, use_mlp, add_maxpool)
CONFIGS = [
    (False, 0, True, False),
    (False, 0, False, False),
    (False, 0, True, True),
    (False, 2, True, False),
    (False, 4, False, False),
    (False, 6, True, False),
    (False, 8, True, True),
    (True, 2, True, False),
    (True, 4, True, False),
    (True, 8, False, False),
]


class ReferenceMlp(nn.Module):
    """timm ``ConvMlp`` as GatherExcite builds it: fc1, no norm, ReLU, no dropout, fc2."""

    def __init__(self, c: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(c, hidden, 1, bias=True)
        self.norm = nn.Identity()
        self.act = nn.ReLU()
        self.drop = nn.Dropout(0.0)
        self.fc2 = nn.Conv2d(hidden, c, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.drop(self.act(self.norm(self.fc1(x)))))


class ReferenceGE(nn.Module):
    """timm ``GatherExcite.__init__``/``forward`` (timm/layers/gather_excite.py), rd_ratio=1/16, rd_divisor=1."""

    def __init__(self, c: int, extra_params: bool, extent: int, use_mlp: bool, add_maxpool: bool) -> None:
        super().__init__()
        self.add_maxpool, self.extent = add_maxpool, extent
        if extra_params:
            self.gather = nn.Sequential()
            n = int(math.log2(extent))
            for i in range(n):
                self.gather.add_module(f"conv{i + 1}", nn.Conv2d(c, c, 3, stride=2, padding=1, groups=c, bias=False))
                self.gather.add_module(f"norm{i + 1}", nn.BatchNorm2d(c))
                if i != n - 1:
                    self.gather.add_module(f"act{i + 1}", nn.ReLU(inplace=True))
        else:
            self.gather = None
            self.gk, self.gs = (0, 0) if extent == 0 else (extent * 2 - 1, extent)
        hidden = max(1, int(c / 16 + 0.5))
        self.mlp = ReferenceMlp(c, hidden) if use_mlp else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        if self.gather is not None:
            x_ge = self.gather(x)
        elif self.extent == 0:
            x_ge = x.mean(dim=(2, 3), keepdim=True)
            if self.add_maxpool:
                x_ge = 0.5 * x_ge + 0.5 * x.amax((2, 3), keepdim=True)
        else:
            x_ge = F.avg_pool2d(x, kernel_size=self.gk, stride=self.gs, padding=self.gk // 2, count_include_pad=False)
            if self.add_maxpool:
                x_ge = 0.5 * x_ge + 0.5 * F.max_pool2d(x, kernel_size=self.gk, stride=self.gs, padding=self.gk // 2)
        x_ge = self.mlp(x_ge)
        if x_ge.shape[-1] != 1 or x_ge.shape[-2] != 1:
            x_ge = F.interpolate(x_ge, size=size)
        return x * x_ge.sigmoid()


def _without_str(fn):
    """timm 1.0.31 passes ``*dd`` (the strings 'device', 'dtype') positionally; drop them."""
    return lambda *args, **kwargs: fn(*(a for a in args if not isinstance(a, str)), **kwargs)


class _TorchNN:
    """``torch.nn`` as timm's gather_excite module sees it, with ``BatchNorm2d(channels, *dd)`` repaired."""

    BatchNorm2d = staticmethod(_without_str(nn.BatchNorm2d))

    def __getattr__(self, name: str):
        return getattr(nn, name)


@pytest.fixture
def timm_gather_excite(monkeypatch):
    monkeypatch.setattr(timm_ge, "ConvMlp", _without_str(timm_ge.ConvMlp))
    monkeypatch.setattr(timm_ge, "create_conv2d", _without_str(timm_ge.create_conv2d))
    monkeypatch.setattr(timm_ge, "nn", _TorchNN())
    return timm_ge.GatherExcite


@pytest.mark.parametrize(("extra_params", "extent", "use_mlp", "add_maxpool"), CONFIGS)
def test_matches_the_restated_reference_both_ways(extra_params, extent, use_mlp, add_maxpool):
    block = randomize_(GatherExcite(32, extra_params, extent, use_mlp, 1 / 16, 1, add_maxpool)).eval()
    reference = ReferenceGE(32, extra_params, extent, use_mlp, add_maxpool).eval()
    reference.load_state_dict(block.state_dict(), strict=True)
    with torch.no_grad():
        for h, w in [(13, 10), (20, 20), (3, 5)]:
            x = torch.randn(2, 32, h, w)
            torch.testing.assert_close(block(x), reference(x), atol=1e-5, rtol=0)
        randomize_(reference, seed=7)
        block.load_state_dict(reference.state_dict(), strict=True)
        torch.testing.assert_close(block(x), reference(x), atol=1e-5, rtol=0)
        torch.testing.assert_close(block.fuse()(x), reference(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("extra_params", "extent", "use_mlp", "add_maxpool"), CONFIGS)
def test_matches_timm(timm_gather_excite, extra_params, extent, use_mlp, add_maxpool):
    theirs = timm_gather_excite(32, extra_params=extra_params, extent=extent, use_mlp=use_mlp, add_maxpool=add_maxpool)
    theirs = randomize_(theirs, seed=2).eval()
    ours = GatherExcite(32, extra_params, extent, use_mlp, add_maxpool=add_maxpool).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    theirs.load_state_dict(ours.state_dict(), strict=True)
    x = torch.randn(2, 32, 15, 11)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), atol=1e-5, rtol=0)


def test_the_default_is_squeeze_excitation_with_a_one_half_start():
    block = GatherExcite(64)
    assert block.mlp.fc1.out_channels == 4 and block.gather is None
    x = torch.randn(1, 64, 6, 6)
    torch.testing.assert_close(block(x), 0.5 * x)
    assert yolo_attn.registry.get("GE").cls is GatherExcite


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"extra_params": True, "extent": 0}, "feature map"),
        ({"extra_params": True, "extent": 6}, "power of two"),
        ({"extent": 3}, "even"),
        ({"extent": -2}, "even"),
        ({"rd_ratio": 0}, "rd_ratio"),
        ({"extra_params": 1}, "extra_params"),
    ],
)
def test_bad_extents_are_refused(kwargs, message):
    with pytest.raises(BlockArgumentError, match=message):
        GatherExcite(32, **kwargs)


@pytest.mark.seam
def test_the_global_parametric_variant_is_a_row_error_at_build_time():
    with pytest.raises(yolo_attn.YAMLRowError, match=r"layer 5 .*GE.*extra_params=True with extent=0"):
        build_small([[-1, 1, "GE", [True]]])


@pytest.mark.parametrize(("fam", "scale"), BUILD_CASES)
def test_builds_from_a_yaml_row(fam, scale):
    assert_builds(fam, scale, "GE", GatherExcite, [True, 4])
