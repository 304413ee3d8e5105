"""Named sites (``p3 p4 p5 sppf neck all``, layer indices) on every task of the v8, 11 and 26 families, and others.

Every site's output is checked as a dict; the ``all`` output of each base (every site at once) is also built by
Ultralytics at n scale with a 64 px forward pass (20 builds, about 0.3 s each on an idle core).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from ultralytics.nn.tasks import (
    ClassificationModel,
    DetectionModel,
    OBBModel,
    PoseModel,
    SegmentationModel,
    guess_model_task,
)

from yolo_attn import cli
from yolo_attn.cfg.generated import FAMILIES, TASKS, base_yaml, find_block, insert_block, load_base
from yolo_attn.cfg.sites import (
    SiteError,
    args_label,
    named_sites,
    resolve_sites,
    split_site_specs,
    variant_label,
)
from yolo_attn.cfg.yaml_command import resolve_base
from yolo_attn.registry import EXTENDS

MODELS = {
    "detect": DetectionModel,
    "segment": SegmentationModel,
    "pose": PoseModel,
    "obb": OBBModel,
    "classify": ClassificationModel,
}
FAMILY_TASKS = [(f, t) for f in FAMILIES for t in (None, *TASKS)]
SITES = ("p3", "p4", "p5", "sppf", "neck", "all")


def _rows(cfg: dict) -> list[list]:
    return cfg["backbone"] + cfg["head"]


def _absolute(f: int | list, j: int) -> list[int]:
    return [x if x >= 0 else j + x for x in (f if isinstance(f, list) else [f])]


def _build(cfg: dict) -> list[tuple[str, int | list]]:
    """Build a model dict at scale n with Ultralytics' own model class for its task, run a 64 px forward pass, and
    return each built layer's module name and ``from``."""
    model = MODELS[guess_model_task(cfg)](dict(cfg, scale="n"), verbose=False)
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 3, 64, 64))
    return [(m.type.removeprefix("torch.nn.modules.").split(".")[-1], m.f) for m in model.model]


def _layers(cfg: dict) -> list[tuple[str, int | list]]:
    """The same from a model dict: each row's module name and ``from``."""
    return [(m.removeprefix("nn."), f) for f, _, m, _ in _rows(cfg)]


def _check_wiring(base: dict, sites: list[int], layers: list[tuple[str, int | list]], block: str) -> None:
    """Every base row keeps its module and reads the same layers (a site's consumers read its block)."""
    new = {j: j + sum(s < j for s in sites) for j in range(-1, len(_rows(base)))}  # -1: the input image
    blocks_at = [new[s] + 1 for s in sites]
    assert [i for i, (m, _) in enumerate(layers) if m == block] == blocks_at
    assert len(layers) == len(_rows(base)) + len(sites)
    for s, k in zip(sites, blocks_at, strict=True):
        assert _absolute(layers[k][1], k) == [new[s]]
    for j, (f, _, m, _) in enumerate(_rows(base)):
        name, got_from = layers[new[j]]
        assert name == m.removeprefix("nn."), (j, m)
        want = [new[x] + 1 if x in sites else new[x] for x in _absolute(f, j)]
        got = _absolute(got_from, new[j])
        assert got == want, f"row {j} ({m}) reads {got}, expected {want}"


@pytest.mark.seam
@pytest.mark.parametrize(("family", "task"), FAMILY_TASKS)
def test_every_named_site_has_the_block_there_and_keeps_the_wiring(family: str, task: str | None) -> None:
    """Each site's output as a dict; ``all`` (every site at once) also built by Ultralytics: one build per base."""
    base = load_base(base_yaml(family, task))
    spec = find_block("SE")
    names = named_sites(base)
    assert {"p3", "p4", "p5", "neck", "all"} <= set(names)
    for site in SITES:
        if site not in names:  # the classify bases of YOLOv8, YOLO11 and YOLO26 have no SPPF
            assert site == "sppf" and task == "cls"
            with pytest.raises(SiteError, match="'sppf': this model has no such site; its sites are p2"):
                insert_block(base, spec, (), site)
            continue
        cfg, added = insert_block(base, spec, (), site)
        sites = resolve_sites(base, site)
        assert added == [s + k + 1 for k, s in enumerate(sites)]
        _check_wiring(base, sites, _layers(cfg), "SE")
        if site == "all":
            assert sites == sorted({i for k in SITES if k in names for i in names[k]})
            _check_wiring(base, sites, _build(cfg), "SE")


@pytest.mark.parametrize(("family", "task"), FAMILY_TASKS)
def test_the_sites_are_the_stage_ends_sppf_and_head_inputs(family: str, task: str | None) -> None:
    base = load_base(base_yaml(family, task))
    rows = _rows(base)
    names = named_sites(base)
    p5 = len(base["backbone"]) - 1  # every stride-32 row of these backbones is at the end
    assert (names["p3"], names["p4"], names["p5"]) == ([4], [6], [p5])
    head = rows[-1][0]
    assert names["neck"] == sorted(_absolute(head, len(rows) - 1))
    if "sppf" in names:
        assert [rows[i][2] for i in names["sppf"]] == ["SPPF"]
    assert names["all"] == sorted({4, 6, p5, *names.get("sppf", []), *names["neck"]})


@pytest.mark.seam
@pytest.mark.parametrize(
    ("base", "expected"),
    [
        ("yolov5n", {"p3": [4], "p4": [6], "p5": [9], "sppf": [9], "neck": [17, 20, 23]}),
        ("yolov9t", {"p3": [4], "p4": [6], "p5": [9], "sppf": [9], "neck": [15, 18, 21]}),
        ("yolov10n", {"p3": [4], "p4": [6], "p5": [10], "sppf": [9], "neck": [16, 19, 22]}),
        ("yolo12n", {"p3": [4], "p4": [6], "p5": [8], "neck": [14, 17, 20]}),
        ("yolov8n-p6", {"p5": [8], "p6": [11], "sppf": [11], "neck": [20, 23, 26, 29]}),
    ],
)
def test_other_generations_where_their_rows_allow(base: str, expected: dict[str, list[int]]) -> None:
    cfg = load_base(resolve_base(base)[0])
    names = named_sites(cfg)
    assert {k: names[k] for k in expected} == expected
    spec = find_block("ECA")
    made, _ = insert_block(cfg, spec, (), "all")
    _check_wiring(cfg, names["all"], _build(made), "ECA")


def test_site_tokens_split_on_words_commas_and_plus() -> None:
    assert split_site_specs(["p4", "p5,neck", "4+6"]) == ["p4", "p5", "neck", "4", "6"]
    base = load_base(base_yaml("yolov8"))
    assert resolve_sites(base, ["p5", "sppf", "9"]) == [9]  # one row in YOLOv8: the block goes there once
    assert resolve_sites(base, "P4+p3") == [4, 6]
    for bad, message in [("p7", "no such site"), ("backbone", "not a site name"), ("22", "0..21"), ([], "no site")]:
        with pytest.raises(SiteError, match=message):
            resolve_sites(base, bad)


def test_an_extends_block_replaces_its_parent_rows_and_refuses_others() -> None:
    base = load_base(base_yaml("yolo11"))
    spec = find_block("CA_C3k2")
    assert spec.kind == EXTENDS
    cfg, added = insert_block(base, spec, (), ["p3", "p4"])
    assert added == [4, 6] and [_rows(cfg)[i][2] for i in added] == ["CA_C3k2", "CA_C3k2"]
    assert len(_rows(cfg)) == len(_rows(base))
    with pytest.raises(SiteError, match="10 C2PSA"):
        insert_block(base, spec, (), "p5")


def test_labels_name_the_base_block_args_and_sites() -> None:
    spec = find_block("CBAM")
    assert variant_label("yolo11n", "EMA", "p4") == "yolo11n+EMA@p4"
    assert variant_label("yolo11n", "EMA", ["p4", "p5"]) == "yolo11n+EMA@p4+p5"
    assert variant_label("yolo11n", "EMA", "P4,p5") == "yolo11n+EMA@p4+p5"
    assert variant_label("yolo11n-seg", "CBAM", "p5", args_label(spec, [8, 3])) == "yolo11n-seg+CBAM-r8-k3@p5"


def test_the_cli_prints_the_rows_it_added(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "yolo11n-pose-ema-p45.yaml"
    cli.main(["yaml", "yolo11n-pose.yaml", "--block", "EMA", "--at", "p4", "p5", "-o", str(out)])
    printed = capsys.readouterr().out
    assert "layer 7: [-1, 1, EMA, []]" in printed and "layer 12: [-1, 1, EMA, []]" in printed
    cfg = yaml.safe_load(out.read_text())
    assert [i for i, r in enumerate(_rows(cfg)) if r[2] == "EMA"] == [7, 12]
    assert "(p4+p5)" in out.read_text().splitlines()[0]
    cli.main(["yaml", "yolov8", "CBAM", "8", "--at", "p3,6", "-o", str(tmp_path / "two.yaml")])  # positional form
    cfg = yaml.safe_load((tmp_path / "two.yaml").read_text())
    assert [(i, r[3]) for i, r in enumerate(_rows(cfg)) if r[2] == "CBAM"] == [(5, [8]), (8, [8])]
