"""The model_yamls variants: they carry Ultralytics' scale table, build at the smallest and the widest scale (n, x; and
m, where C3k2 switches to C3k, for the C2f/C3k2 replacements), run, wire Detect to strides 8/16/32, and cost exactly
the baseline plus the inserted blocks.

Expected channels come from Ultralytics' own scale tables (its yolov8.yaml / yolo11.yaml / yolo26.yaml) and a small
table here of where each file inserts which block after which nominal layer width, never from the model under test.
"""

from __future__ import annotations

import math
from functools import cache
from pathlib import Path

import pytest
import torch
from torch import nn
from ultralytics.nn import tasks
from ultralytics.nn.tasks import DetectionModel, yaml_model_load
from ultralytics.utils import YAML
from ultralytics.utils.checks import check_yaml

import yolo_attn
from yolo_attn.integration.lookup import MODEL_YAMLS_DIR

REPO = Path(__file__).resolve().parents[2]
YAML_DIR = MODEL_YAMLS_DIR  # the shipped files, inside the package; the repo-root model_yamls links here
FAMILIES = ("yolov8", "yolo11", "yolo26")
SCALES = ("n", "s", "m", "l", "x")
# The scales each file is built at. Channel inference and the cost identity are the same code at every width, so n and
# x (the widest: max_channels bites) stand for all five; s, m and l differ only in Ultralytics' own table, which
# test_scales_match_ultralytics_in_order checks. m also for the C2f/C3k2 replacements: C3k2 switches to C3k from m on,
# and the bottleneck count follows the depth column.
BUILD_SCALES = ("n", "x")
SLOW_SCALES = {"x"}  # the large builds dominate the run time on 2 CPU cores
NC = 80
INPUT_SIZES = ((32, 32), (64, 32))  # (H, W): square and non-square, multiples of stride 32, kept tiny

# Channel-preserving insertions per file: (YAML name, nominal width of the layer it follows), in file order.
# Nominal widths are those written in Ultralytics' YAML (1024 = P5, 512 = P4, 256 = P3), before scaling.
FOUR_SITES = (1024, 256, 512, 1024)  # backbone P5, then neck P3, P4, P5
MHSA_SITES = (1024, 512, 1024)  # backbone P5, then neck P4, P5 only
INSERTED: dict[str, tuple[tuple[str, int], ...]] = {
    **{
        f"{fam}-{key}": tuple((name, c) for c in FOUR_SITES)
        for fam in FAMILIES
        for key, name in (("se", "SE"), ("eca", "ECA"), ("cbam", "CBAM"), ("sam", "SAM"), ("ca", "CoordAtt"))
    },
    **{f"{fam}-mhsa": tuple(("MHSA", c) for c in MHSA_SITES) for fam in FAMILIES},
}
# C2f-like replacements: (parent, nominal c2, YAML repeats, c3k flag, attn flag written in the YAML), in file order.
REPLACED: dict[str, tuple[tuple[str, int, int, bool, bool], ...]] = {
    "yolov8-ca-c2f": tuple(("C2f", c, 3, False, False) for c in (1024, 256, 512, 1024)),
    "yolo11-ca-c3k2": (
        ("C3k2", 1024, 2, True, False),
        ("C3k2", 256, 2, False, False),
        ("C3k2", 512, 2, False, False),
        ("C3k2", 1024, 2, True, False),
    ),
    "yolo26-ca-c3k2": (  # YOLO26's neck C3k2 all use C3k; its P5 one is a single bottleneck + PSABlock (attn)
        ("C3k2", 1024, 2, True, False),
        ("C3k2", 256, 2, True, False),
        ("C3k2", 512, 2, True, False),
        ("C3k2", 1024, 1, True, True),
    ),
}
EXTENDED_PARENT = {"CA_C2f": "C2f", "CA-C2f": "C2f", "CA_C3k2": "C3k2"}
ALL_STEMS = sorted({*INSERTED, *REPLACED})


def family(stem: str) -> str:
    """Return ``yolov8``, ``yolo11`` or ``yolo26`` for a model_yamls stem."""
    return stem.split("-", 1)[0]


def scaled_path(stem: str, scale: str) -> Path:
    """Return the scaled name a user loads, e.g. model_yamls/yolov8n-cbam.yaml for (yolov8-cbam, n)."""
    fam, variant = stem.split("-", 1)
    return YAML_DIR / f"{fam}{scale}-{variant}.yaml"


@cache
def ultralytics_scales(fam: str) -> dict[str, list[float]]:
    """Ultralytics' own [depth, width, max_channels] table for a family."""
    return YAML.load(check_yaml(f"{fam}.yaml"))["scales"]


def scaled_width(fam: str, scale: str, nominal: int) -> int:
    """Channels of a layer of nominal width at a scale: min(c, max_channels) * width, rounded up to a multiple of 8."""
    _, width, max_channels = ultralytics_scales(fam)[scale]
    return math.ceil(min(nominal, max_channels) * width / 8) * 8


def scaled_repeats(fam: str, scale: str, repeats: int) -> int:
    """Depth-scaled repeat count, as Ultralytics scales the ``n`` column."""
    depth = ultralytics_scales(fam)[scale][0]
    return max(round(repeats * depth), 1) if repeats > 1 else repeats


def n_params(module: nn.Module) -> int:
    """Number of parameters of a module."""
    return sum(p.numel() for p in module.parameters())


def coordatt_channels(stem: str, scale: str) -> list[int]:
    """Output channels of every bottleneck that carries a CoordAtt in a CA_C2f / CA_C3k2 file at a scale."""
    fam = family(stem)
    channels = []
    for parent, nominal, repeats, c3k, attn in REPLACED[stem]:
        hidden = int(scaled_width(fam, scale, nominal) * 0.5)  # C2f / C3k2 hidden width at the default e=0.5
        n = scaled_repeats(fam, scale, repeats)
        if attn:  # C3k2(attn=True): each repeat is one full-width bottleneck followed by a PSABlock (no bottleneck)
            channels += [hidden] * n
        elif parent == "C3k2" and (c3k or scale in {"m", "l", "x"}):  # Ultralytics forces C3k at m/l/x
            channels += [int(hidden * 0.5)] * (2 * n)  # each C3k holds 2 bottlenecks at half its width
        else:
            channels += [hidden] * n
    return channels


def expected_extra_params(stem: str, scale: str) -> int:
    """Params the file adds to its baseline, from blocks built standalone with the expected channels."""
    if stem in REPLACED:
        return sum(n_params(yolo_attn.CoordAtt(c)) for c in coordatt_channels(stem, scale))
    return sum(
        n_params(getattr(yolo_attn, name)(scaled_width(family(stem), scale, nominal)))
        for name, nominal in INSERTED[stem]
    )


def params_from_yaml(cfg: str | Path) -> int:
    """Params of the layers Ultralytics builds from a (scaled) YAML name, without DetectionModel's forward passes."""
    d = yaml_model_load(cfg)
    d["nc"] = NC
    return n_params(tasks.parse_model(d, ch=3, verbose=False)[0])


@cache
def baseline_params(fam: str, scale: str) -> int:
    """Params of the Ultralytics baseline, e.g. yolov8n.yaml."""
    return params_from_yaml(f"{fam}{scale}.yaml")


def load_rows(path: Path) -> list[list]:
    """All [from, repeats, module, args] rows of a model YAML, backbone then head."""
    d = YAML.load(path)
    return d["backbone"] + d["head"]


def absolute_from(f: int | list[int], i: int) -> list[int]:
    """Absolute source indices of row i's ``from`` field; -1 stands for the input image (row 0's source)."""
    return [max(i + x, -1) if x < 0 else x for x in ([f] if isinstance(f, int) else f)]


def test_every_yaml_is_covered() -> None:
    assert sorted(p.stem for p in YAML_DIR.glob("*.yaml") if "-cls-" not in p.stem) == ALL_STEMS  # cls: test_cls_yamls


@pytest.mark.parametrize("stem", ALL_STEMS)
def test_scales_match_ultralytics_in_order(stem: str) -> None:
    scales = YAML.load(YAML_DIR / f"{stem}.yaml")["scales"]
    assert list(scales) == list(SCALES)  # a name without a scale letter gets the first key: it must be n
    assert scales == ultralytics_scales(family(stem))


@pytest.mark.parametrize("stem", ALL_STEMS)
def test_removing_inserted_rows_gives_the_baseline(stem: str) -> None:
    """Renumbering check: drop the inserted rows, map CA_* back to its parent, and the baseline YAML must remain,
    with every Concat / Detect source pointing at the same baseline layer (an in-line block stands for the layer
    it follows)."""
    rows = load_rows(YAML_DIR / f"{stem}.yaml")
    baseline = load_rows(Path(check_yaml(f"{family(stem)}.yaml")))
    to_baseline: list[int] = []
    kept = []
    for i, (f, n, m, args) in enumerate(rows):
        if m in yolo_attn.BLOCKS:
            assert f == -1, f"row {i}: an inserted block must follow the previous layer"
            to_baseline.append(to_baseline[i - 1])
            continue
        to_baseline.append(len(kept))
        kept.append((i, f, n, EXTENDED_PARENT.get(m, m), args))
    assert len(kept) == len(baseline)
    for (i, f, n, m, args), (j, (bf, bn, bm, bargs)) in zip(kept, enumerate(baseline), strict=True):
        assert (n, m, args) == (bn, bm, bargs), f"row {i} differs from baseline row {j}"
        sources = [to_baseline[x] if x >= 0 else x for x in absolute_from(f, i)]
        assert sources == absolute_from(bf, j), f"row {i}: wrong `from` {f}"
    inserted = [m for _, _, m, _ in rows if m in yolo_attn.BLOCKS]
    replaced = [m for _, _, m, _ in rows if m in EXTENDED_PARENT]
    assert inserted == [name for name, _ in INSERTED.get(stem, ())]
    assert len(replaced) == len(REPLACED.get(stem, ()))


@pytest.mark.parametrize("stem", ALL_STEMS)
def test_detect_reads_the_attention_outputs(stem: str) -> None:
    rows = load_rows(YAML_DIR / f"{stem}.yaml")
    detect_from, _, detect, _ = rows[-1]
    assert detect == "Detect"
    if stem in REPLACED:
        expected = [f"CA_{REPLACED[stem][0][0]}"] * 3
    elif stem.endswith("-mhsa"):
        expected = ["C2f" if family(stem) == "yolov8" else "C3k2", "MHSA", "MHSA"]  # no O((HW)^2) block at P3
    else:
        expected = [INSERTED[stem][0][0]] * 3
    assert [rows[k][2] for k in detect_from] == expected


def _cases() -> list:
    """Every stem at n and x (m too for the C2f/C3k2 replacements); x marked slow, the scale-n builds marked seam."""
    return [
        pytest.param(stem, scale, marks=_marks(stem, scale), id=f"{stem}-{scale}")
        for stem in ALL_STEMS
        for scale in SCALES
        if scale in BUILD_SCALES or (scale == "m" and stem in REPLACED)
    ]


def _marks(stem: str, scale: str) -> list[pytest.MarkDecorator]:
    marks = [pytest.mark.slow] if scale in SLOW_SCALES else []
    if scale == "n":  # one build per YAML is enough for the run against the lowest Ultralytics release
        marks.append(pytest.mark.seam)
    return marks


@pytest.mark.parametrize(("stem", "scale"), _cases())
def test_builds_runs_and_costs_baseline_plus_blocks(stem: str, scale: str) -> None:
    fam = family(stem)
    model = DetectionModel(str(scaled_path(stem, scale)), nc=NC, verbose=False)
    assert model.yaml["scale"] == scale
    assert model.stride.tolist() == [8.0, 16.0, 32.0]  # Detect got P3, P4, P5 in order
    extra = n_params(model) - baseline_params(fam, scale)
    assert extra == expected_extra_params(stem, scale)
    assert extra > 0
    model.eval()
    head = model.model[-1]
    with torch.no_grad():
        for h, w in INPUT_SIZES:
            predictions = model(torch.rand(1, 3, h, w))[0]
            anchors = sum((h // s) * (w // s) for s in (8, 16, 32))
            # Ultralytics < 8.4.142 builds YOLO26 as end-to-end (NMS-free): its top max_det boxes, (x1, y1, x2, y2,
            # score, class) each; later releases return the raw boxes and class scores of every anchor, as YOLOv8 does.
            end2end = getattr(head, "end2end", False)
            assert predictions.shape == ((1, min(head.max_det, anchors), 6) if end2end else (1, 4 + NC, anchors))
            assert torch.isfinite(predictions).all()


@pytest.mark.seam
def test_scale_letter_in_the_name_picks_the_scale() -> None:
    nano, xlarge = scaled_path("yolov8-cbam", "n"), scaled_path("yolov8-cbam", "x")
    assert (yaml_model_load(nano)["scale"], yaml_model_load(xlarge)["scale"]) == ("n", "x")
    counts = {scale: params_from_yaml(path) for scale, path in (("n", nano), ("x", xlarge))}
    for scale, count in counts.items():
        assert count == baseline_params("yolov8", scale) + expected_extra_params("yolov8-cbam", scale)
    assert counts["n"] < counts["x"]


@pytest.mark.seam
def test_unscaled_name_falls_back_to_the_first_scale_n() -> None:
    model = DetectionModel(str(YAML_DIR / "yolo11-cbam.yaml"), verbose=False)
    assert n_params(model) == baseline_params("yolo11", "n") + expected_extra_params("yolo11-cbam", "n")


@pytest.mark.parametrize("stem", ALL_STEMS)
def test_header_cost_table_params_are_current(stem: str) -> None:
    """The header's table (yolo-attn profile --update-headers) must match what the file builds today."""
    fam, variant = stem.split("-", 1)
    rows = {}
    for line in (YAML_DIR / f"{stem}.yaml").read_text().splitlines():
        if line.startswith("# | yolo"):
            cells = [c.strip() for c in line[2:].strip("|").split("|")]
            rows[cells[0]] = int(cells[1].replace(",", ""))
    assert rows == {
        f"{fam}n (baseline)": baseline_params(fam, "n"),
        f"{fam}n-{variant}": params_from_yaml(scaled_path(stem, "n")),
    }


def test_repo_root_model_yamls_is_a_relative_link_to_the_package_folder() -> None:
    link = REPO / "model_yamls"
    assert link.is_symlink()
    assert not Path(link.readlink()).is_absolute()  # survives moving the clone
    assert link.resolve() == MODEL_YAMLS_DIR.resolve()
    assert (link / "yolov8-cbam.yaml").is_file()  # old paths keep working
