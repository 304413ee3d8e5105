"""The classification YAMLs (yolo_attn/cfg/model_yamls/*-cls-*.yaml): they load by scaled name at every scale, classify,
and cost exactly the Ultralytics baseline (yolov8n-cls.yaml, yolo11n-cls.yaml) plus the inserted blocks.

Expected channels come from Ultralytics' own scale tables and a small table here of the nominal width of each stage
the blocks follow, never from the model under test.
"""

from __future__ import annotations

import math
from functools import cache
from pathlib import Path

import pytest
import torch
from torch import nn
from ultralytics import YOLO
from ultralytics.nn import tasks
from ultralytics.nn.tasks import ClassificationModel, yaml_model_load
from ultralytics.utils import YAML
from ultralytics.utils.checks import check_yaml

import yolo_attn

YAML_DIR = Path(__file__).resolve().parents[1] / "yolo_attn" / "cfg" / "model_yamls"
SCALES = ("n", "s", "m", "l", "x")
BUILD_SCALES = ("n", "x")  # smallest and widest; the whole scale table is compared with Ultralytics' by the rows test
SLOW_SCALES = {"x"}
NC = 7
BLOCK_NAMES = {"se": "SE", "cbam": "CBAM", "eca": "ECA", "ca": "CoordAtt"}
# Nominal widths (as written in Ultralytics' YAML, before scaling) of the stage outputs the blocks follow, in order.
STAGE_WIDTHS = {"yolov8": (128, 256, 512, 1024), "yolo11": (256, 512, 512, 1024)}
STEMS = sorted(f"{fam}-cls-{key}" for fam in STAGE_WIDTHS for key in BLOCK_NAMES)


def split(stem: str) -> tuple[str, str]:
    """Return (family, block key) of a stem, e.g. ``("yolov8", "se")`` for ``yolov8-cls-se``."""
    fam, _, key = stem.split("-")
    return fam, key


def scaled_path(stem: str, scale: str) -> Path:
    """The scaled name a user loads, e.g. yolo_attn/cfg/model_yamls/yolov8n-cls-se.yaml."""
    fam, key = split(stem)
    return YAML_DIR / f"{fam}{scale}-cls-{key}.yaml"


def n_params(module: nn.Module) -> int:
    """Number of parameters of a module."""
    return sum(p.numel() for p in module.parameters())


@cache
def ultralytics_scales(fam: str) -> dict[str, list[float]]:
    """Ultralytics' own [depth, width, max_channels] table of the family's classifier."""
    return YAML.load(check_yaml(f"{fam}-cls.yaml"))["scales"]


def scaled_width(fam: str, scale: str, nominal: int) -> int:
    """Channels of a layer of nominal width at a scale, as Ultralytics rounds them (up to a multiple of 8)."""
    _, width, max_channels = ultralytics_scales(fam)[scale]
    return math.ceil(min(nominal, max_channels) * width / 8) * 8


def params_from_yaml(cfg: str | Path) -> int:
    """Params of the layers Ultralytics builds from a (scaled) YAML name, with NC classes."""
    d = yaml_model_load(cfg)
    d["nc"] = NC
    return n_params(tasks.parse_model(d, ch=3, verbose=False)[0])


@cache
def baseline_params(fam: str, scale: str) -> int:
    """Params of Ultralytics' classifier, e.g. yolov8n-cls.yaml."""
    return params_from_yaml(f"{fam}{scale}-cls.yaml")


def expected_extra_params(stem: str, scale: str) -> int:
    """Params of the four blocks built standalone with the expected channels."""
    fam, key = split(stem)
    block = getattr(yolo_attn, BLOCK_NAMES[key])
    return sum(n_params(block(scaled_width(fam, scale, c))) for c in STAGE_WIDTHS[fam])


def test_every_cls_yaml_is_covered() -> None:
    assert sorted(p.stem for p in YAML_DIR.glob("*-cls-*.yaml")) == STEMS


@pytest.mark.parametrize("stem", STEMS)
def test_rows_are_the_baseline_plus_one_block_per_stage(stem: str) -> None:
    """Drop the inserted rows and Ultralytics' classifier remains; a block follows each stage's last layer."""
    fam, key = split(stem)
    d = YAML.load(YAML_DIR / f"{stem}.yaml")
    base = YAML.load(check_yaml(f"{fam}-cls.yaml"))
    assert list(d["scales"]) == list(SCALES)  # a name without a scale letter gets the first key: it must be n
    assert d["scales"] == base["scales"]
    rows, base_rows = d["backbone"] + d["head"], base["backbone"] + base["head"]
    inserted = [i for i, row in enumerate(rows) if row[2] in yolo_attn.BLOCKS]
    assert [rows[i] for i in inserted] == [[-1, 1, BLOCK_NAMES[key], []]] * 4
    assert [row for i, row in enumerate(rows) if i not in inserted] == base_rows
    stage_ends = [i - 1 for i in inserted]  # the row each block follows: a stage's last layer, then the next Conv
    assert all(rows[i][2] in {"C2f", "C3k2", "C2PSA"} for i in stage_ends)
    assert all(rows[i + 1][2] in {"Conv", "Classify"} for i in inserted)
    assert rows[-1][2] == "Classify" and inserted[-1] == len(rows) - 2


def _cases() -> list:
    return [
        pytest.param(stem, scale, marks=[pytest.mark.slow] if scale in SLOW_SCALES else [], id=f"{stem}-{scale}")
        for stem in STEMS
        for scale in BUILD_SCALES
    ]


@pytest.mark.parametrize(("stem", "scale"), _cases())
def test_builds_classifies_and_costs_baseline_plus_blocks(stem: str, scale: str) -> None:
    fam, _ = split(stem)
    model = ClassificationModel(str(scaled_path(stem, scale)), nc=NC, verbose=False)
    assert model.yaml["scale"] == scale
    extra = n_params(model) - baseline_params(fam, scale)
    assert extra == expected_extra_params(stem, scale)
    assert extra > 0
    model.eval()
    with torch.no_grad():
        for h, w in ((32, 32), (64, 32)):
            probabilities, logits = model(torch.rand(2, 3, h, w))  # Classify in eval: (softmax, logits)
            assert probabilities.shape == logits.shape == (2, NC)
            torch.testing.assert_close(probabilities, logits.softmax(1))


def test_loads_as_a_classifier_by_scaled_name() -> None:
    """``YOLO("yolov8s-cls-se.yaml")``: Ultralytics picks the classify task and scale s from the name."""
    model = YOLO(str(scaled_path("yolov8-cls-se", "s")))
    assert model.task == "classify"
    assert isinstance(model.model, ClassificationModel)
    assert model.model.yaml["scale"] == "s"
    assert yaml_model_load(scaled_path("yolo11-cls-cbam", "x"))["scale"] == "x"


@pytest.mark.parametrize("stem", STEMS)
def test_header_cost_table_params_are_current(stem: str) -> None:
    """The header's table (yolo-attn profile --update-headers) must match what the file builds today."""
    fam, key = split(stem)
    rows = {}
    for line in (YAML_DIR / f"{stem}.yaml").read_text().splitlines():
        if line.startswith("# | yolo"):
            cells = [c.strip() for c in line[2:].strip("|").split("|")]
            rows[cells[0]] = int(cells[1].replace(",", ""))

    def params_1000(cfg: str | Path) -> int:
        d = yaml_model_load(cfg)  # the header is for the YAML's own nc: 1000, Ultralytics' ImageNet default
        return n_params(tasks.parse_model(d, ch=3, verbose=False)[0])

    assert rows == {
        f"{fam}n-cls (baseline)": params_1000(f"{fam}n-cls.yaml"),
        f"{fam}n-cls-{key}": params_1000(scaled_path(stem, "n")),
    }
