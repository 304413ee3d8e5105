"""The block contract: every shipped block passes `check_block`; broken blocks fail on the right row, with a reason."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from support import user_blocks
from support.env import subprocess_env, yolo_attn_command

from yolo_attn import registry
from yolo_attn.testing import PROPERTIES, check_block
from yolo_attn.testing.contract import COMPOSE_HOSTS

SHIPPED = [s.name for s in registry.specs() if s.origin == "yolo_attn"]
FAST = {"ECA"}  # one shipped block in the quick suite; the others, ~20 s each on 2 cores, are slow


@pytest.mark.parametrize("name", [n if n in FAST else pytest.param(n, marks=pytest.mark.slow) for n in SHIPPED])
def test_every_shipped_block_passes_the_contract(name):
    report = check_block(name)
    assert report.ok, report.table()
    inside = [f"inside {h}" for h in COMPOSE_HOSTS] if registry.get(name).kind == registry.CHANNEL else []
    assert [r.name for r in report.results] == ["registers", *PROPERTIES, *inside]
    skipped = {r.name for r in report.results if r.status == "skip"}
    assert skipped <= {"torch.compile", *inside}, report.table()  # onnx and onnxruntime are test dependencies
    for row in skipped - {"torch.compile"}:  # composed with default args, the block is refused by a clear row error
        assert "YAMLRowError" in report.result(row).reason, report.table()


@pytest.mark.slow
def test_block_variants_pass_the_contract():
    for name, kwargs in [("SpatialAttention", {"k": [3, 1], "pool": "mean", "bn": True}), ("MHSA", {"heads": 8})]:
        report = check_block(name, onnx=False, **kwargs)
        assert report.ok, report.table()


def test_a_users_block_outside_our_base_passes_and_is_unregistered_afterwards():
    report = check_block(user_blocks.PointGate)
    assert report.ok, report.table()
    assert "identity start: mix" in report.result("registers").reason
    assert registry.get("PointGate") is None  # registered for the check only


@pytest.mark.parametrize(
    ("cls", "row", "reason"),
    [
        (
            user_blocks.ShapeChanger,
            "shape kept",
            r"output shape differs from input.*\(1, 64, 40, 40\) -> \(1, 32, 40, 40\)",
        ),
        (user_blocks.BadFuse, "fuse", r"block fuse\(\) changes the output"),
        (user_blocks.NoOnnx, "ONNX", r"adaptive_avg_pool2d"),
        (user_blocks.NoChannels, "registers", r"takes no input-channel argument"),
    ],
)
def test_broken_blocks_fail_on_their_row_with_the_reason(cls, row, reason):
    report = check_block(cls, only=[row] if row != "registers" else [])
    assert not report.ok
    result = report.result(row)
    assert result.status == "FAIL", report.table()
    assert re.search(reason, result.reason), result.reason
    assert registry.get(cls.__name__) is None


@pytest.mark.slow
def test_cli_check_block_prints_the_table_and_exits_non_zero_on_a_failure(tmp_path):
    env = subprocess_env()
    here = str(Path(user_blocks.__file__).parent)
    env["PYTHONPATH"] = os.pathsep.join([here, env["PYTHONPATH"]])  # user_blocks importable as a top-level module
    proc = subprocess.run(
        [*yolo_attn_command(), "check-block", "user_blocks:BadFuse", "--no-onnx"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "fuse                     FAIL" in proc.stdout
    # the same bad fuse() fails the block inside both hosts too, and nothing else fails
    assert re.search(r"inside C2f +FAIL .*fuse: AssertionError: block fuse\(\) changes the output", proc.stdout)
    assert re.search(r"inside C3k2 +FAIL .*fuse: AssertionError: block fuse\(\) changes the output", proc.stdout)
    assert "BadFuse: 3 propert(ies) FAILED" in proc.stdout


def test_the_readme_example_registers_and_keeps_its_promises(repo):
    section = (repo / "README.md").read_text().split("\n## Your own block\n", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict = {"__name__": "readme_example"}
    exec(compile(code, "README.md", "exec"), namespace)
    try:
        assert registry.get("mysimam").cls is namespace["MySimAM"]
        report = check_block("MySimAM", only=["shape kept", "identity start", "transfer"])
        assert report.ok, report.table()
    finally:
        registry.unregister_block("MySimAM")


def test_without_the_identity_start_the_transfer_row_fails(monkeypatch):
    monkeypatch.setenv("YOLO_ATTN_IDENTITY_START", "0")  # fresh gates scale by 0.5: step 0 no longer matches
    result = check_block("SE", only=["transfer"]).result("transfer")
    assert result.status == "FAIL"
    assert re.search(r"step-0 outputs differ from the baseline's by 0\.\d+ \(relative\)", result.reason), result.reason


def test_cli_check_block_names_an_unknown_target():
    proc = subprocess.run(
        [*yolo_attn_command(), "check-block", "NoSuchBlock"],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1
    assert "yolo-attn check-block: 'NoSuchBlock' is neither module:Class nor a registered block (" in proc.stderr
    assert "Traceback" not in proc.stderr
