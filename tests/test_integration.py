"""The Ultralytics seam: every internal it relies on still holds in the installed release; patches undo exactly."""

from __future__ import annotations

import re

import pytest
from conftest import REPO

import yolo_attn
from yolo_attn import integration, registry
from yolo_attn.integration import internals
from yolo_attn.integration.patches import ORIGINALS, Patch
from yolo_attn.integration.registration import PATCHES


@pytest.mark.parametrize("internal", list(internals.CHECKS))
def test_ultralytics_internal_relied_upon_holds(internal):
    assert internals.check_internals()[internal] is None, internals.check_internals()[internal]


def test_the_integration_docstring_lists_every_checked_internal():
    listed = {line[2:].split(" (`")[0] for line in integration.__doc__.splitlines() if line.startswith("- ")}
    assert set(internals.CHECKS) <= listed


def test_every_patch_is_applied_while_registered_and_undone_by_unregister():
    assert all(p.applied() for p in PATCHES if isinstance(p, Patch))
    before = {p.key: getattr(p.owner, p.attr) for p in PATCHES if isinstance(p, Patch)}
    yolo_attn.unregister()
    try:
        for patch in (p for p in PATCHES if isinstance(p, Patch)):
            assert getattr(patch.owner, patch.attr) is not patch.new
            assert ORIGINALS[patch.key] is None
    finally:
        yolo_attn.register()
    assert {p.key: getattr(p.owner, p.attr) for p in PATCHES if isinstance(p, Patch)} == before


def test_only_the_integration_imports_ultralytics_internals():
    # the block table, the row checks and the transfer plan are pure; the blocks import only the C2f family
    for path in ["registry/table.py", "registry/rows.py", "finetune/transfer.py", "registry/plugins.py"]:
        assert "ultralytics" not in (REPO / "yolo_attn" / path).read_text().replace("Ultralytics", ""), path


def test_readme_block_table_lists_exactly_the_shipped_blocks():
    text = (REPO / "README.md").read_text()
    table = text.split("\n## Blocks\n", 1)[1].split("\n## ", 1)[0]
    listed = set()
    for line in table.splitlines():
        if line.startswith("| `"):
            first = line.split("|")[1]
            listed |= set(re.findall(r"`([^`]+)`", first))
    shipped = {alias for s in registry.specs() if s.origin == "yolo_attn" for alias in s.names}
    assert listed == shipped


def test_a_changed_internal_is_reported_with_its_name(monkeypatch):
    monkeypatch.setitem(ORIGINALS, "parse_model", lambda cfg, channels: None)  # as if a release renamed the args
    results = internals.check_internals()
    assert "('cfg', 'channels')" in results["ultralytics.nn.tasks.parse_model(d, ch, verbose)"]
