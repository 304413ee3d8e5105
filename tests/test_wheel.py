"""A plain (non-editable) install: the wheel ships the model YAMLs and finds them by bare name from any folder."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from child_venv import make_child_venv
from conftest import REPO, subprocess_env

pytestmark = pytest.mark.slow


def run(cmd: list[str], cwd: Path, env: dict[str, str]) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{cmd} failed ({proc.returncode}):\n{output[-4000:]}"
    return output


def test_wheel_in_a_fresh_venv_loads_yolo26n_cbam_by_bare_name(tmp_path: Path):
    env = subprocess_env()
    env.pop("PYTHONPATH", None)  # the venv's own site-packages must decide what `import yolo_attn` finds
    env["PIP_NO_INDEX"] = "1"  # nothing to download: setuptools and ultralytics come from this interpreter
    source = tmp_path / "source"  # a clean copy: the build writes build/ and *.egg-info, and stale ones could leak in
    ignore = shutil.ignore_patterns(".git", "build", "dist", "*.egg-info", "runs", "__pycache__", ".*_cache", ".venv")
    shutil.copytree(REPO, source, symlinks=True, ignore=ignore)
    wheels = tmp_path / "wheels"
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(source),
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(wheels),
            "-q",
        ],
        tmp_path,
        env,
    )
    (wheel,) = wheels.glob("yolo_attn-*.whl")
    venv = tmp_path / "venv"
    venv_python = make_child_venv(venv, env)  # sees this interpreter's torch and ultralytics, in a venv or not
    run([str(venv_python), "-m", "pip", "install", "--no-deps", "-q", str(wheel)], tmp_path, env)

    empty = tmp_path / "empty"
    empty.mkdir()
    code = """
        import yolo_attn
        from ultralytics import YOLO

        print("yolo_attn file:", yolo_attn.__file__)
        model = YOLO("yolo26n-cbam.yaml")
        print("scale:", model.model.yaml["scale"])
        print("cbam:", sum(isinstance(m, yolo_attn.CBAM) for m in model.model.modules()))
    """
    output = run([str(venv_python), "-c", textwrap.dedent(code)], empty, env)
    keys = ("yolo_attn file", "scale", "cbam")
    lines = dict(line.split(": ", 1) for line in output.splitlines() if line.startswith(keys))
    installed = Path(lines["yolo_attn file"]).resolve()
    assert installed.is_relative_to(venv.resolve()), f"imported {installed}, not the wheel in {venv}"
    assert (installed.parent / "cfg" / "model_yamls" / "yolo26-cbam.yaml").is_file()
    assert {p.name for p in (installed.parent / "demos").glob("*.py")} >= {"detect.py", "classify.py", "timeseries.py"}
    assert (lines["scale"], lines["cbam"]) == ("n", "4")
