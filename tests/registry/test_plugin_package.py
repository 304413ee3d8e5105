"""A plugin package as a third party publishes one: pip-installed into a fresh venv, its block used through the CLI.

The package has one block (SimAM, not an AttentionBlock) and an entry point in the group ``yolo_attn.blocks``. In the
venv, the ``yolo-attn`` CLI (``python -m yolo_attn``) trains the YOLOv8 YAML with the block inserted, fine-tuning from
a baseline checkpoint; the block starts as the identity, so the step-0 outputs equal the baseline's; the trained
checkpoint reloads in a fresh process (also under ``ULTRALYTICS_SAFE_LOAD=1``) and exports to ONNX.
"""

from __future__ import annotations

import base64
import hashlib
import subprocess
import textwrap
import zipfile
from pathlib import Path

import pytest
import yaml
from support.child_venv import make_child_venv
from support.env import TRAIN_ARGS, subprocess_env

pytestmark = pytest.mark.slow

PLUGIN = {
    "pyproject.toml": """
        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "yolo-attn-simam"
        version = "0.1.0"

        [project.entry-points."yolo_attn.blocks"]
        MySimAM = "simam_plugin:MySimAM"
    """,
    "simam_plugin.py": '''
        """SimAM (Yang et al., ICML 2021) as a yolo_attn plugin: parameter-free, x * sigmoid(energy)."""

        import torch
        from torch import nn


        class MySimAM(nn.Module):
            def __init__(self, c1: int, e_lambda: float = 1e-4) -> None:
                super().__init__()
                self.e_lambda = e_lambda

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                n = x.shape[2] * x.shape[3] - 1
                d = (x - x.mean((2, 3), keepdim=True)).pow(2)
                return x * (d / (4 * (d.sum((2, 3), keepdim=True) / n + self.e_lambda)) + 0.5).sigmoid()
    ''',
}


def build_wheel(folder: Path) -> Path:
    """Write the plugin as a wheel by hand (a zip with its dist-info): no build backend needed, nothing downloaded.

    What ``pip wheel`` would build from ``PLUGIN["pyproject.toml"]``; done by hand because the setuptools of a
    fresh venv (65, from ensurepip) cannot build wheels without the ``wheel`` package.
    """
    folder.mkdir(parents=True, exist_ok=True)
    dist, version = "yolo_attn_simam", "0.1.0"
    info = f"{dist}-{version}.dist-info"
    files = {
        "simam_plugin.py": textwrap.dedent(PLUGIN["simam_plugin.py"]).lstrip(),
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: yolo-attn-simam\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        f"{info}/entry_points.txt": "[yolo_attn.blocks]\nMySimAM = simam_plugin:MySimAM\n",
    }
    record = "".join(f"{name},sha256={_digest(text)},{len(text.encode())}\n" for name, text in files.items())
    files[f"{info}/RECORD"] = record + f"{info}/RECORD,,\n"
    wheel = folder / f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return wheel


def _digest(text: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()


def run(cmd: list[str], cwd: Path, env: dict[str, str]) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{cmd} failed ({proc.returncode}):\n{output[-4000:]}"
    return output


def test_plugin_block_trains_fine_tunes_as_identity_reloads_and_exports(tmp_path, tiny_data, baseline_pt):
    env = subprocess_env()  # this checkout on PYTHONPATH: yolo_attn from here, the plugin from the venv
    env["PIP_NO_INDEX"] = "1"
    wheel = build_wheel(tmp_path / "wheels")
    python = str(make_child_venv(tmp_path / "venv", env))
    run([python, "-m", "pip", "install", "-q", "--no-deps", str(wheel)], tmp_path, env)

    from ultralytics.nn.tasks import yaml_model_load

    from yolo_attn.cfg.edit import insert_after

    cfg = insert_after(yaml_model_load("yolov8n.yaml"), 9, "MySimAM")  # by name, only the plugin knows it
    cfg.update(nc=2)
    (tmp_path / "yolov8-simam.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    model = tmp_path / "yolov8n-simam.yaml"

    # step 0 of the fine-tuning, in a fresh process of the venv: the block starts as the identity
    out = run([python, "-c", textwrap.dedent(f"""
        import torch
        from ultralytics import YOLO
        import yolo_attn

        assert yolo_attn.registry.get("MySimAM").origin == "yolo-attn-simam"
        base = torch.load({str(baseline_pt)!r}, weights_only=False)["model"].float().eval()
        tuned = YOLO({str(model)!r}).load({str(baseline_pt)!r}).model.eval()
        x = torch.rand(1, 3, 64, 64)
        with torch.no_grad():
            print("step-0 max diff", float((tuned(x)[0] - base(x)[0]).abs().max()))
    """)], tmp_path, env)  # fmt: skip
    assert "step-0 max diff 0.0" in out, out[-3000:]

    # the CLI: the block by name in a YAML, fine-tuned from the baseline for one epoch
    train = ["train", f"model={model}", f"pretrained={baseline_pt}", f"data={tiny_data}", "epochs=1", *TRAIN_ARGS]
    out = run([python, "-m", "yolo_attn", *train, f"project={tmp_path}", "name=ft"], tmp_path, env)
    summary = [line for line in out.splitlines() if line.startswith("yolo_attn: ")]
    transferred = "355/355 tensors of yolov8n.pt transferred (layers 10-22 -> 11-23); new: 1 MySimAM"
    (transfer_line,) = [s for s in summary if transferred in s]
    assert transfer_line.endswith("started as identity"), summary
    assert any("layer 10 MySimAM: identity_mix" in s for s in summary), summary  # the engagement at the end of training
    best = tmp_path / "ft" / "weights" / "best.pt"
    assert best.exists()

    # a fresh process reloads it, plainly and under ULTRALYTICS_SAFE_LOAD=1, through the CLI
    image = next((tiny_data.parent / "images" / "val").glob("*.jpg"))
    for safe in ("0", "1"):
        env_safe = env | {"ULTRALYTICS_SAFE_LOAD": safe}
        out = run([python, "-m", "yolo_attn", "predict", f"model={best}", f"source={image}", "imgsz=64",
                   "save=False", "device=cpu"], tmp_path, env_safe)  # fmt: skip
        assert "1 image" in out.replace("image 1/1", "1 image"), out[-3000:]
    out = run([python, "-c", f"import torch; m = torch.load({str(best)!r}, weights_only=False)['model']; "
               "print(type(m.model[10]).__module__, 'identity_mix' in dict(m.model[10].named_parameters()))"],
              tmp_path, env)  # fmt: skip
    assert "simam_plugin True" in out, out[-3000:]

    # ONNX export through the CLI
    out = run([python, "-m", "yolo_attn", "export", f"model={best}", "format=onnx", "imgsz=64", "device=cpu"],
              tmp_path, env)  # fmt: skip
    onnx_file = best.with_suffix(".onnx")
    assert onnx_file.exists(), out[-3000:]
