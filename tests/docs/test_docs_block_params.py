"""The README block table's one figure column, params added at the standard sites of yolov8n, against the models.

The table is typed by hand (other columns are names, args and papers), so its numbers are checked here: each row's
"params added (k)" is the parameter count of its ``yolov8n-<block>.yaml`` minus yolov8n's, in thousands, one decimal;
"–" for a block with no yolov8n variant.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def block_rows() -> list[tuple[str, str]]:
    """(first YAML name, params cell) of each README block-table row."""
    table = README.read_text().split("\n## Blocks\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("|")]
    head = [c.strip() for c in rows[0].strip("|").split(" | ")]
    column = head.index("params added (k)")
    found = []
    for row in rows[2:]:
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", row.strip().strip("|"))]
        found.append((re.findall(r"`([^`]+)`", cells[0])[0], cells[column]))
    return found


def params_of(cfg: str) -> int:
    """Parameters of the detection model built from ``cfg`` (a bare name: the generated or shipped YAML)."""
    from ultralytics.nn.tasks import DetectionModel

    return sum(p.numel() for p in DetectionModel(cfg, verbose=False).parameters())


@functools.cache
def baseline_params() -> int:
    return params_of("yolov8n.yaml")


def test_the_table_has_a_params_column_for_every_row():
    rows = block_rows()
    assert len(rows) >= 30
    assert all(re.fullmatch(r"\d+\.\d|–", params) for _, params in rows), rows


@pytest.mark.slow
@pytest.mark.parametrize(("name", "params"), block_rows(), ids=[name for name, _ in block_rows()])
def test_readme_params_added_match_the_built_model(name, params):
    from yolo_attn.cfg.sites import SiteError

    try:
        added = params_of(f"yolov8n-{name.lower()}.yaml") - baseline_params()
    except SiteError:
        assert params == "–", f"{name}: no yolov8n variant, so the README should say –"
        return
    assert params == f"{added / 1e3:.1f}", f"{name}: README says {params} k, yolov8n-{name.lower()}.yaml adds {added}"
