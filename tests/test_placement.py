"""Placement grids (baseline + block x site YAMLs) and the block x site heat map (PNG and markdown table)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from matplotlib.image import imread
from ultralytics import YOLO

from yolo_attn.cfg.generated import base_yaml, load_base
from yolo_attn.cfg.sites import SiteError
from yolo_attn.experiments.heatmap import PlacementCell, heatmap_table, plot_heatmap
from yolo_attn.experiments.placement import Variant, placement_grid


def _block_rows(path: Path, name: str) -> list[int]:
    cfg = yaml.safe_load(path.read_text())
    return [i for i, r in enumerate(cfg["backbone"] + cfg["head"]) if r[2] == name]


def test_the_grid_writes_the_baseline_and_each_block_at_each_site(tmp_path: Path) -> None:
    grid = placement_grid("yolo11n", ["EMA", ("CBAM", [8], {"k": 3})], ["p4", "p4+p5"], tmp_path / "models")
    folder = tmp_path / "models"
    assert grid == [
        Variant("yolo11n", folder / "yolo11n.yaml", None, None),
        Variant("yolo11n+EMA@p4", folder / "yolo11n+EMA@p4.yaml", "EMA", "p4"),
        Variant("yolo11n+EMA@p4+p5", folder / "yolo11n+EMA@p4+p5.yaml", "EMA", "p4+p5"),
        Variant("yolo11n+CBAM-r8-k3@p4", folder / "yolo11n+CBAM-r8-k3@p4.yaml", "CBAM-r8-k3", "p4"),
        Variant("yolo11n+CBAM-r8-k3@p4+p5", folder / "yolo11n+CBAM-r8-k3@p4+p5.yaml", "CBAM-r8-k3", "p4+p5"),
    ]
    assert sorted(p.name for p in folder.iterdir()) == sorted(v.path.name for v in grid)
    base = yaml.safe_load(grid[0].path.read_text())
    assert {k: base[k] for k in ("backbone", "head")} == {
        k: load_base(base_yaml("yolo11"))[k] for k in ("backbone", "head")
    }
    assert _block_rows(grid[1].path, "EMA") == [7]  # after layer 6 (the end of P4)
    assert _block_rows(grid[2].path, "EMA") == [7, 12]  # and after layer 10 (the end of P5)
    cbam = yaml.safe_load(grid[4].path.read_text())
    assert [r[3] for r in cbam["backbone"] if r[2] == "CBAM"] == [[8, 3], [8, 3]]


@pytest.mark.seam
def test_the_files_build_at_the_scale_of_their_name(tmp_path: Path) -> None:
    grid = placement_grid("yolo11n-seg", ["SE"], ["neck"], tmp_path)
    model = YOLO(grid[1].path)
    assert model.task == "segment" and model.model.yaml["scale"] == "n"
    assert [i for i, m in enumerate(model.model.model) if type(m).__name__ == "SE"] == [17, 21, 25]


def test_a_rerun_finds_the_same_names_and_leaves_the_files(tmp_path: Path) -> None:
    first = placement_grid("yolov8n", ["SE", "ECA"], ["p3", "p5"], tmp_path)
    stamps = {v.path: v.path.stat().st_mtime_ns for v in first}
    texts = {v.path: v.path.read_text() for v in first}
    second = placement_grid("yolov8n", ["SE", "ECA"], ["p3", "p5"], tmp_path)
    assert second == first
    assert {v.path: v.path.stat().st_mtime_ns for v in second} == stamps
    first[1].path.write_text("edited")  # a changed file is written back
    placement_grid("yolov8n", ["SE", "ECA"], ["p3", "p5"], tmp_path)
    assert first[1].path.read_text() == texts[first[1].path]


def test_a_missing_site_or_a_repeated_name_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(SiteError, match="'sppf': this model has no such site"):
        placement_grid("yolo12n", ["SE"], ["p4", "sppf"], tmp_path / "a")
    with pytest.raises(ValueError, match="one name: yolo11n\\+SE@p4"):
        placement_grid("yolo11n", ["SE", "se"], ["p4"], tmp_path / "b")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


CELLS = [
    PlacementCell("SE", "p3", 0.5, noise=True, resolved=False),
    PlacementCell("SE", "p4", -1.25, noise=False, resolved=True),
    {"block": "CBAM", "site": "p3", "delta": 0.9, "noise": False, "resolved": False},
    {"block": "CBAM", "site": "p4", "delta": None},
]


def test_the_table_marks_noise_unresolved_and_resolved_cells() -> None:
    table = heatmap_table(CELLS, "mAP50-95")
    assert table.splitlines()[:4] == [
        "| Δ mAP50-95 | p3 | p4 |",
        "|---|---:|---:|",
        "| SE | +0.50 ~ | **-1.25** |",
        "| CBAM | +0.90 † | n/a |",
    ]
    assert "Holm-adjusted p < 0.05" in table


def test_the_heat_map_png_has_one_coloured_cell_per_variant(tmp_path: Path) -> None:
    path = plot_heatmap(CELLS, tmp_path / "heatmap.png", "mAP50-95")
    image = imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    red, blue = image[..., 0], image[..., 2]  # RdBu: the negative resolved cell is red, the positive ones blue
    assert np.any((red > 0.4) & (blue < 0.2)) and np.any((blue > 0.4) & (red < 0.2))
