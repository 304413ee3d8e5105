"""The inside placement in generated YAMLs: ``yolo-attn yaml ... --inside`` and the bare name ``yolo11n-ema-inside``."""

from __future__ import annotations

import yaml
from ultralytics.nn.tasks import yaml_model_load

import yolo_attn  # noqa: F401
from yolo_attn.cfg.yaml_command import write_yaml_rows


def test_yaml_inside_replaces_the_host_rows_at_the_sites(tmp_path):
    written = write_yaml_rows(
        "yolo11n", "EMA", (), {"factor": 8}, at=["p3", "p4", "p5"], out=tmp_path / "m.yaml", inside=True
    )
    assert [(i, r[2], r[3][-1]) for i, r in written.rows] == [(i, "C3k2_EMA", {"factor": 8}) for i in (4, 6, 8)]
    cfg = yaml.safe_load(written.path.read_text())
    assert len(cfg["backbone"] + cfg["head"]) == 24  # no row inserted


def test_bare_inside_name_generates_the_composition_at_the_standard_sites():
    d = yaml_model_load("yolov8n-se-inside.yaml")
    names = [r[2] for r in d["backbone"] + d["head"]]
    assert names.count("C2f_SE") == 4 and len(names) == 23
    d = yaml_model_load("yolo11n-c3k2_simam.yaml")  # the composed name itself is a bare name too
    assert [r[2] for r in d["backbone"] + d["head"]].count("C3k2_SimAM") == 4


def test_placement_grid_takes_inside_sites(tmp_path):
    from yolo_attn.experiments.placement import placement_grid

    variants = placement_grid("yolo11n", [("CBAM", [], {"r": 8})], ["p4", "inside:p4"], tmp_path)
    assert [(v.label, v.site) for v in variants[1:]] == [
        ("yolo11n+CBAM-r8@p4", "p4"),
        ("yolo11n+CBAM-r8@inside-p4", "inside-p4"),
    ]
    inside = yaml.safe_load(variants[2].path.read_text())
    rows = inside["backbone"] + inside["head"]
    assert len(rows) == 24 and rows[6][2:] == ["C3k2_CBAM", [512, True, {"r": 8}]]
