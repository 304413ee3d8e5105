"""Plugins by entry point (group ``yolo_attn.blocks``): loaded, refused when two claim a name, broken ones warn."""

from __future__ import annotations

import importlib
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import subprocess_env
from test_registry import build, small_yaml

import yolo_attn
from yolo_attn import registry
from yolo_attn.registry import plugins


def fake_distribution(site: Path, dist: str, entries: dict[str, str], module: str = "", code: str = "") -> None:
    """Write an installed distribution (dist-info with entry points) and, optionally, its module, into ``site``."""
    info = site / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    lines = "\n".join(f"{name} = {value}" for name, value in entries.items())
    (info / "entry_points.txt").write_text(f"[{plugins.GROUP}]\n{lines}\n")
    if module:
        (site / f"{module}.py").write_text(textwrap.dedent(code))


GATE = """
    import torch
    from torch import nn

    class Gate(nn.Module):
        def __init__(self, c1: int) -> None:
            super().__init__()
            self.conv = nn.Conv2d(c1, c1, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * self.conv(x).sigmoid()
"""


@pytest.fixture
def site(tmp_path, monkeypatch):
    """An extra site folder on sys.path, and fresh plugin bookkeeping; plugin blocks are unregistered afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(plugins, "LOADED", {})
    monkeypatch.setattr(plugins, "FAILED", {})
    monkeypatch.delenv(plugins.DISABLE_ENV, raising=False)
    before = set(registry.names())
    yield tmp_path
    importlib.invalidate_caches()
    for name in set(registry.names()) - before:
        if registry.get(name) is not None:
            registry.unregister_block(name)


def test_a_plugin_block_is_registered_under_its_entry_point_name(site):
    fake_distribution(site, "yolo-attn-gates", {"PluginGate": "gates_mod:Gate"}, "gates_mod", GATE)
    assert plugins.load_plugins() == {"PluginGate": "yolo-attn-gates"}
    spec = registry.get("PluginGate")
    assert spec.origin == "yolo-attn-gates" and spec.identity == "mix"
    assert type(build(small_yaml([[-1, 1, "PluginGate", []]])).model[5]).__name__ == "Gate"
    assert plugins.load_plugins() == {}  # loaded once


def test_a_plugin_that_raises_on_import_warns_naming_it_and_its_yaml_name_says_why(site):
    code = "raise RuntimeError('broken on purpose')\n"
    fake_distribution(site, "yolo-attn-broken", {"Broken": "broken_mod:Broken"}, "broken_mod", code)
    with pytest.warns(
        plugins.PluginWarning, match=r"plugin Broken = 'broken_mod:Broken' from package yolo-attn-broken"
    ):
        plugins.load_plugins()
    assert registry.get("Broken") is None
    with pytest.raises(
        yolo_attn.YAMLRowError, match=r"layer 5 .*plugin that declares 'Broken' failed.*broken on purpose"
    ):
        build(small_yaml([[-1, 1, "Broken", []]]))


def test_two_plugins_claiming_one_name_are_both_refused_naming_both(site):
    fake_distribution(site, "pkg-one", {"Twin": "twin_one:Gate"}, "twin_one", GATE)
    fake_distribution(site, "pkg-two", {"Twin": "twin_two:Gate"}, "twin_two", GATE)
    with pytest.warns(plugins.PluginWarning, match=r"'Twin' is claimed by pkg-one \(twin_one:Gate\) and pkg-two"):
        plugins.load_plugins()
    assert registry.get("Twin") is None


def test_a_plugin_taking_a_shipped_name_is_refused_and_the_shipped_block_kept(site):
    fake_distribution(site, "pkg-cbam", {"CBAM": "fake_cbam:Gate"}, "fake_cbam", GATE)
    with pytest.warns(plugins.PluginWarning, match=r"plugin CBAM .*pkg-cbam.*already used by block"):
        plugins.load_plugins()
    assert registry.get("CBAM").cls is yolo_attn.CBAM


def test_autoload_can_be_turned_off(site, monkeypatch):
    fake_distribution(site, "yolo-attn-gates", {"OffGate": "off_mod:Gate"}, "off_mod", GATE)
    monkeypatch.setenv(plugins.DISABLE_ENV, "1")
    assert plugins.load_plugins() == {}
    assert registry.get("OffGate") is None


def test_import_yolo_attn_loads_plugins_in_a_fresh_process_and_a_broken_one_does_not_break_it(tmp_path):
    fake_distribution(tmp_path, "yolo-attn-gates", {"FreshGate": "fresh_mod:Gate"}, "fresh_mod", GATE)
    fake_distribution(tmp_path, "yolo-attn-broken", {"Broken": "missing_module:Nothing"})
    env = subprocess_env()
    env["PYTHONPATH"] = f"{tmp_path}:{env['PYTHONPATH']}"
    code = "import yolo_attn; from yolo_attn import registry; print('FreshGate' in registry.names())"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("True")
    assert (
        "PluginWarning: yolo_attn: plugin Broken = 'missing_module:Nothing' from package yolo-attn-broken"
        in proc.stderr
    )
    env[plugins.DISABLE_ENV] = "1"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.stdout.strip().endswith("False") and "PluginWarning" not in proc.stderr
