"""SEAM and MultiSEAM (Krasjet-Yu/YOLO-FaceV2): math against the restated authors' modules, small maps, arg checks."""

from __future__ import annotations

import io

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from yolo_attn.modules import SEAM, BlockArgumentError, MultiSEAM
from yolo_attn.modules.random_weights import randomize_
from yolo_attn.testing import export_onnx

ATOL = 1e-5
SIZES = [(1, 1), (1, 7), (7, 1), (2, 2), (3, 5), (4, 4), (15, 20), (20, 15)]


class Residual(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x) + x


class ReferenceSEAM(nn.Module):
    """YOLO-FaceV2 ``models/common.py`` ``SEAM``, restated."""

    def __init__(self, c1, c2, n, reduction=16):
        super().__init__()
        if c1 != c2:
            c2 = c1
        self.DCovN = nn.Sequential(
            *[
                nn.Sequential(
                    Residual(
                        nn.Sequential(
                            nn.Conv2d(in_channels=c2, out_channels=c2, kernel_size=3, stride=1, padding=1, groups=c2),
                            nn.GELU(),
                            nn.BatchNorm2d(c2),
                        )
                    ),
                    nn.Conv2d(in_channels=c2, out_channels=c2, kernel_size=1, stride=1, padding=0, groups=1),
                    nn.GELU(),
                    nn.BatchNorm2d(c2),
                )
                for i in range(n)
            ]
        )
        self.avg_pool = torch.nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(
            nn.Linear(c2, c2 // reduction, bias=False),
            nn.ReLU(inplace=True),
            nn.Linear(c2 // reduction, c2, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, x):
        b, c, _, _ = x.size()
        y = self.DCovN(x)
        y = self.avg_pool(y).view(b, c)
        y = self.fc(y).view(b, c, 1, 1)
        y = torch.exp(y)
        return x * y.expand_as(x)


def DcovN(c1, c2, depth, kernel_size=3, patch_size=3):
    dcovn = nn.Sequential(
        nn.Conv2d(c1, c2, kernel_size=patch_size, stride=patch_size),
        nn.GELU(),
        nn.BatchNorm2d(c2),
        *[
            nn.Sequential(
                Residual(
                    nn.Sequential(
                        nn.Conv2d(
                            in_channels=c2, out_channels=c2, kernel_size=kernel_size, stride=1, padding=1, groups=c2
                        ),
                        nn.GELU(),
                        nn.BatchNorm2d(c2),
                    )
                ),
                nn.Conv2d(in_channels=c2, out_channels=c2, kernel_size=1, stride=1, padding=0, groups=1),
                nn.GELU(),
                nn.BatchNorm2d(c2),
            )
            for i in range(depth)
        ],
    )
    return dcovn


class ReferenceMultiSEAM(nn.Module):
    """YOLO-FaceV2 ``models/common.py`` ``MultiSEAM`` (GELU, as the authors' code), restated."""

    def __init__(self, c1, c2, depth, kernel_size=3, patch_size=[3, 5, 7], reduction=16):  # noqa: B006 (the authors')
        super().__init__()
        if c1 != c2:
            c2 = c1
        self.DCovN0 = DcovN(c1, c2, depth, kernel_size=kernel_size, patch_size=patch_size[0])
        self.DCovN1 = DcovN(c1, c2, depth, kernel_size=kernel_size, patch_size=patch_size[1])
        self.DCovN2 = DcovN(c1, c2, depth, kernel_size=kernel_size, patch_size=patch_size[2])
        self.avg_pool = torch.nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(
            nn.Linear(c2, c2 // reduction, bias=False),
            nn.ReLU(inplace=True),
            nn.Linear(c2 // reduction, c2, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, x):
        b, c, _, _ = x.size()
        y0 = self.DCovN0(x)
        y1 = self.DCovN1(x)
        y2 = self.DCovN2(x)
        y0 = self.avg_pool(y0).view(b, c)
        y1 = self.avg_pool(y1).view(b, c)
        y2 = self.avg_pool(y2).view(b, c)
        y4 = self.avg_pool(x).view(b, c)
        y = (y0 + y1 + y2 + y4) / 4
        y = self.fc(y).view(b, c, 1, 1)
        y = torch.exp(y)
        return x * y.expand_as(x)


def _input(c: int, size: tuple[int, int], batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, c, *size, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize(("c", "n", "reduction"), [(16, 1, 16), (32, 2, 8)])
@pytest.mark.parametrize("size", [(12, 12), (13, 7)])
def test_seam_matches_the_reference_and_loads_its_state_dict_both_ways(c, n, reduction, size):
    reference = randomize_(ReferenceSEAM(c, 2 * c, n, reduction), 1, fan_in=True).eval()
    ours = SEAM(c, n, reduction).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = _input(c, size)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), atol=ATOL, rtol=0)
    ReferenceSEAM(c, c, n, reduction).load_state_dict(randomize_(SEAM(c, n, reduction), 2).state_dict(), strict=True)


def test_seam_runs_at_every_feature_map_size():
    reference = randomize_(ReferenceSEAM(16, 16, 1), 3, fan_in=True).eval()
    ours = SEAM(16).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    for size in SIZES:
        x = _input(16, size)
        with torch.no_grad():
            torch.testing.assert_close(ours(x), reference(x), atol=ATOL, rtol=0)


@pytest.mark.parametrize(("c", "depth", "patches", "reduction"), [(16, 1, [3, 5, 7], 16), (32, 2, [6, 7, 8], 8)])
@pytest.mark.parametrize("size", [(12, 12), (17, 9)])
def test_multiseam_matches_the_reference_and_loads_its_state_dict_both_ways(c, depth, patches, reduction, size):
    reference = randomize_(ReferenceMultiSEAM(c, c, depth, 3, patches, reduction), 1, fan_in=True).eval()
    ours = MultiSEAM(c, depth, 3, patches, reduction).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = _input(c, size)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), atol=ATOL, rtol=0)
    fresh = ReferenceMultiSEAM(c, c, depth, 3, patches, reduction)
    fresh.load_state_dict(randomize_(MultiSEAM(c, depth, 3, patches, reduction), 2).state_dict(), strict=True)


def _padded_reference(reference: ReferenceMultiSEAM, x: torch.Tensor, patches: list[int]) -> torch.Tensor:
    """The authors' computation with each branch fed the map zero-padded (bottom, right) up to one patch."""
    b, c, h, w = x.shape
    pooled = [x.mean((2, 3))]
    for branch, p in zip((reference.DCovN0, reference.DCovN1, reference.DCovN2), patches, strict=True):
        pooled.insert(-1, branch(F.pad(x, (0, max(p - w, 0), 0, max(p - h, 0)))).mean((2, 3)))
    y = reference.fc(sum(pooled) / 4).view(b, c, 1, 1)
    return x * torch.exp(y)


def test_multiseam_runs_at_every_size_padding_small_maps_up_to_one_patch():
    reference = randomize_(ReferenceMultiSEAM(16, 16, 1), 3, fan_in=True).eval()
    ours = MultiSEAM(16).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    with pytest.raises(RuntimeError):  # the authors' module: no 7 x 7 patch in a 5 x 5 map
        reference(_input(16, (5, 5)))
    for size in SIZES:
        x = _input(16, size)
        with torch.no_grad():
            expected = reference(x) if min(size) >= 7 else _padded_reference(reference, x, [3, 5, 7])
            torch.testing.assert_close(ours(x), expected, atol=ATOL, rtol=0)


def test_batch_one_trains_where_a_branch_sees_one_patch():
    block = randomize_(MultiSEAM(16), 4).train()
    for size in [(10, 10), (1, 1), (3, 5)]:  # the 7 x 7 branch holds one value per channel
        x = _input(16, size, batch=1).requires_grad_()
        block(x).sum().backward()
        assert torch.isfinite(x.grad).all()
    seam = SEAM(16).train()
    assert seam(_input(16, (1, 1), batch=1)).shape == (1, 16, 1, 1)


def test_multiseam_onnx_pads_at_sizes_other_than_the_traced_one():
    ort = pytest.importorskip("onnxruntime")
    block = randomize_(MultiSEAM(16), 5, fan_in=True).eval()
    buffer = io.BytesIO()
    buffer.write(export_onnx(block, torch.randn(1, 16, 8, 10), 17))
    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    for size in [(1, 1), (3, 5), (6, 2), (20, 15)]:
        x = _input(16, size)
        (y,) = session.run(None, {"x": x.numpy()})
        with torch.no_grad():
            torch.testing.assert_close(torch.from_numpy(y), block(x), atol=1e-4, rtol=0)


@pytest.mark.parametrize(
    ("cls", "args", "match"),
    [
        (SEAM, (-1,), r"SEAM: n \(number of depthwise-separable units\) must be an integer >= 0"),
        (SEAM, (1.5,), r"SEAM: n \(number of depthwise-separable units\)"),
        (SEAM, (1, 32), r"SEAM: reduction=32 leaves no hidden unit for 16 input channels"),
        (SEAM, (1, 0), r"SEAM: reduction \(reduction ratio\) must be a positive integer"),
        (MultiSEAM, (-1,), r"MultiSEAM: depth \(depthwise-separable units per branch\) must be an integer >= 0"),
        (MultiSEAM, (1, 4), r"MultiSEAM: kernel_size=4 is even"),
        (MultiSEAM, (1, 0), r"MultiSEAM: kernel_size \(depthwise kernel size\) must be a positive integer"),
        (MultiSEAM, (1, 3, [3, 5]), r"MultiSEAM: patch_size must be a list of three positive integers"),
        (MultiSEAM, (1, 3, [3, 0, 7]), r"MultiSEAM: patch_size must be a list of three positive integers"),
        (MultiSEAM, (1, 3, 7), r"MultiSEAM: patch_size must be a list of three positive integers"),
        (MultiSEAM, (1, 3, [3, 5, 7], 17), r"MultiSEAM: reduction=17 leaves no hidden unit for 16 input channels"),
    ],
)
def test_bad_args_are_refused(cls, args, match):
    with pytest.raises(BlockArgumentError, match=match):
        cls(16, *args)


def test_zero_units_and_other_odd_kernels_build_and_keep_the_shape():
    x = _input(16, (9, 6))
    assert SEAM(16, 0).eval()(x).shape == x.shape
    assert MultiSEAM(16, 0).eval()(x).shape == x.shape
    assert MultiSEAM(16, 2, 5).eval()(x).shape == x.shape
