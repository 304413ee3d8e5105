"""The `yolo-attn` command: Ultralytics' grammar passes through, our verbs parse, errors surface, offline defaults."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import subprocess_env, yolo_attn_command

from yolo_attn.cli import build_parser, parse_verb
from yolo_attn.utils import offline


def cli(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*yolo_attn_command(), *args], cwd=cwd, env=env or subprocess_env(), capture_output=True, text=True
    )


def test_settings_pass_through_to_ultralytics(tmp_path: Path):
    proc = cli("settings", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "settings_version" in proc.stdout + proc.stderr


def test_help_lists_our_verbs_and_ultralytics_modes(tmp_path: Path):
    proc = cli("--help", cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0
    for verb in ("subset", "eval", "compare", "profile", "visualize", "demo"):
        assert verb in out
    assert "yolo TASK MODE ARGS" in out  # Ultralytics' own help follows ours


def test_bad_yaml_row_fails_with_layer_and_block(tmp_path: Path):
    cfg = yaml.safe_load(Path(__file__).parents[1].joinpath("model_yamls", "yolov8-cbam.yaml").read_text())
    cfg["backbone"][-1] = [-1, 1, "CBAM", [1024]]
    (tmp_path / "yolov8n-bad.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    proc = cli("train", "model=yolov8n-bad.yaml", "data=none.yaml", "epochs=1", cwd=tmp_path)
    assert proc.returncode != 0
    assert "layer 10 [-1, 1, CBAM, [1024]]" in proc.stderr
    assert "Expected CBAM [r=16, k=7]" in proc.stderr


def test_compare_parser_takes_key_value_overrides():
    argv = ["compare", "--data", "d.yaml", "--models", "a.yaml", "b.yaml", "--seeds", "0", "1", "lr0=0.02", "mosaic=0"]
    args, overrides = parse_verb(build_parser(), argv)
    assert args.models == ["a.yaml", "b.yaml"] and args.seeds == [0, 1] and args.epochs == 100
    assert overrides == {"lr0": 0.02, "mosaic": 0}


def test_verbs_without_overrides_reject_key_values():
    with pytest.raises(SystemExit):
        parse_verb(build_parser(), ["demo", "epochs=3"])


def test_offline_defaults_keep_explicit_user_settings(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("YOLO_OFFLINE", "0")
    monkeypatch.delenv("YOLO_AUTOINSTALL", raising=False)
    offline.apply_offline_env()
    assert os.environ["YOLO_OFFLINE"] == "0"
    assert os.environ["YOLO_AUTOINSTALL"] == "0"


def test_console_script_is_detected(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(sys, "argv", ["/usr/bin/yolo-attn", "train"])
    assert offline.invoked_as_cli()
    monkeypatch.setattr(sys, "argv", ["-m"])  # `python -m yolo_attn`, while it imports the package
    assert offline.invoked_as_cli()
    monkeypatch.setattr(sys, "argv", ["/usr/bin/python", "x.py"])
    assert not offline.invoked_as_cli()


def test_compare_parser_takes_the_scaling_options():
    argv = ["compare", "--data", "d.yaml", "--models", "a.yaml", "--device", "0,1", "--parallel", "--per-device", "2"]
    argv += ["--pretrained", "w.pt", "--slurm", "partition=gpu,time=60", "--array-parallelism", "4", "workers=2"]
    args, overrides = parse_verb(build_parser(), argv)
    assert (args.parallel, args.per_device, args.pretrained, args.array_parallelism) == (True, 2, "w.pt", 4)
    assert args.slurm == ["partition=gpu,time=60"] and args.executor is None and overrides == {"workers": 2}
    args, _ = parse_verb(build_parser(), ["compare", "--out", "runs/compare/exp", "--report"])
    assert args.report and args.data is None


def test_compare_report_needs_a_comparison_folder(tmp_path: Path):
    proc = cli("compare", "--report", cwd=tmp_path)
    assert proc.returncode != 0 and "compare --report needs --out DIR" in proc.stderr
    proc = cli("compare", "--out", str(tmp_path), "--report", cwd=tmp_path)
    assert proc.returncode != 0 and "plan.json not found" in proc.stderr
    proc = cli("compare", "--models", "a.yaml", cwd=tmp_path)
    assert proc.returncode != 0 and "compare needs --data and --models" in proc.stderr
