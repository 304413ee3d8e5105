"""The cost table in the shipped YAML headers: baseline pairing, the section rewrite, and `profile --update-headers`."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from yolo_attn.cli import main
from yolo_attn.profiling import headers
from yolo_attn.profiling.headers import INTRO_LINE, SHIPPED_YAMLS, scaled_pair, update_header


@pytest.mark.parametrize(
    ("stem", "scale", "scaled", "baseline"),
    [
        ("yolov8-cbam", "n", "yolov8n-cbam", "yolov8n.yaml"),
        ("yolo11-ca-c3k2", "s", "yolo11s-ca-c3k2", "yolo11s.yaml"),
        ("yolo26-se", "x", "yolo26x-se", "yolo26x.yaml"),
        ("yolov8-cls-se", "n", "yolov8n-cls-se", "yolov8n-cls.yaml"),
    ],
)
def test_scaled_pair_names_the_variant_and_its_ultralytics_baseline(stem, scale, scaled, baseline):
    path, base = scaled_pair(SHIPPED_YAMLS / f"{stem}.yaml", scale)
    assert (path.name, base) == (f"{scaled}.yaml", baseline)


def test_scaled_pair_rejects_other_names():
    with pytest.raises(ValueError, match="family yolov8, yolo11 or yolo26"):
        scaled_pair("yolov5-cbam.yaml")


def test_update_header_replaces_only_the_cost_section(tmp_path: Path):
    path = tmp_path / "yolov8-x.yaml"
    path.write_text(f"# intro\n{INTRO_LINE}, old\n# old prose\n# | a |\n# | b |\n\nnc: 80 # classes\n")
    update_header(path, [f"{INTRO_LINE}, new", "# | c |"])
    assert path.read_text() == f"# intro\n{INTRO_LINE}, new\n# | c |\n\nnc: 80 # classes\n"
    path.write_text("nc: 80\n")
    with pytest.raises(ValueError, match="no header line"):
        update_header(path, ["# | c |"])


def test_every_shipped_yaml_has_a_cost_section_to_rewrite():
    for path in SHIPPED_YAMLS.glob("*.yaml"):
        lines = path.read_text().splitlines()
        start = next(i for i, line in enumerate(lines) if line.startswith(INTRO_LINE))
        assert "`yolo-attn profile --update-headers`" in lines[start], path.name
        assert any(line.startswith("# | ") for line in lines[start:]), path.name


def test_profile_update_headers_rewrites_the_table_with_measured_params(tmp_path: Path, capsys, monkeypatch):
    shutil.copy(SHIPPED_YAMLS / "yolov8-se.yaml", tmp_path / "yolov8-se.yaml")
    original = (tmp_path / "yolov8-se.yaml").read_text()
    fake, calls = {"yolov8n.yaml": 100, "yolov8n-se.yaml": 125}, []

    def static_cost(cfg, imgsz):
        calls.append((Path(cfg).name, imgsz))
        return {"params": fake[Path(cfg).name], "gflops": 2.0, "gflops_torch": 1.5}

    monkeypatch.setattr(headers, "static_cost", static_cost)
    main(["profile", "--update-headers", str(tmp_path / "yolov8-se.yaml")])
    text = (tmp_path / "yolov8-se.yaml").read_text()
    assert calls == [("yolov8n.yaml", 640), ("yolov8n-se.yaml", 640)]  # baseline first, the variant by scaled name
    assert "| yolov8n (baseline) | 100 | - | 2.00 | - | 1.50 | - |" in text
    assert "| yolov8n-se | 125 | +25 (+25.00%) | 2.00 | +0.000 (+0.0%) | 1.50 | +0.000 (+0.0%) |" in text
    assert text.split(INTRO_LINE)[0] == original.split(INTRO_LINE)[0]  # the prose above is kept
    assert text.split("\n\n", 1)[1] == original.split("\n\n", 1)[1]  # and the YAML body below
    assert "yolov8-se.yaml:" in capsys.readouterr().out


def test_profile_without_models_or_update_headers_fails():
    with pytest.raises(SystemExit, match="--models is required"):
        main(["profile"])
