"""End to end: ``yolo-attn train model=yolo11n-coordatt.yaml pretrained=<baseline .pt>``, a name that is generated."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml
from conftest import subprocess_env, yolo_attn_command

from yolo_attn.cfg.generated import base_yaml, find_block, generate, load_base
from yolo_attn.modules.random_weights import randomize_

TRAIN_ARGS = ["imgsz=64", "batch=4", "workers=0", "device=cpu", "amp=False", "plots=False", "epochs=1"]


def _run(cmd: list[str], cwd: Path) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=subprocess_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{cmd} failed ({proc.returncode}):\n{(proc.stdout + proc.stderr)[-4000:]}"
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def baseline_pt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A yolo11n checkpoint for the tiny data set's 2 classes with random (non-zero) weights."""
    from ultralytics.nn.tasks import DetectionModel

    model = randomize_(DetectionModel("yolo11n.yaml", nc=2, verbose=False), fan_in=True)
    path = tmp_path_factory.mktemp("pretrained") / "yolo11n.pt"
    torch.save({"model": model, "train_args": {}}, path)
    return path


def test_train_a_generated_name_from_pretrained_and_reproduce_from_the_run_folder(
    baseline_pt: Path, tiny_data: Path, tmp_path: Path
) -> None:
    out = _run([*yolo_attn_command(), "train", "model=yolo11n-coordatt.yaml", f"pretrained={baseline_pt}",
                f"data={tiny_data}", *TRAIN_ARGS, f"project={tmp_path}", "name=gen"], cwd=tmp_path)  # fmt: skip
    assert re.search(r"tensors of yolo11n.pt transferred .*new: 4 CoordAtt blocks .*started as identity", out), out
    run = tmp_path / "gen"
    copy = run / "yolo11n-coordatt.yaml"
    expected = generate(load_base(base_yaml("yolo11")), find_block("CoordAtt"))
    assert yaml.safe_load(copy.read_text()) == expected
    assert yaml.safe_load((run / "args.yaml").read_text())["model"] == str(copy)
    ckpt = torch.load(run / "weights" / "last.pt", weights_only=False)
    assert {k: ckpt["model"].yaml[k] for k in ("backbone", "head")} == {k: expected[k] for k in ("backbone", "head")}
    # the run folder alone rebuilds the network, in a process whose generator refuses to run
    child = textwrap.dedent(f"""
        import yolo_attn
        from yolo_attn.cfg import generated
        generated.generate_for_name = generated.generate = None
        from ultralytics import YOLO
        print([type(m).__name__ for m in YOLO({str(copy)!r}).model.model].count("CoordAtt"))
        """)
    assert _run([sys.executable, "-c", child], cwd=tmp_path).strip().splitlines()[-1] == "4"
