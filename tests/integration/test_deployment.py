"""End to end as a user works: the `yolo-attn` CLI trains, checkpoints load in fresh processes, fine-tune, resume,
safe loading, ONNX export checked by onnxruntime, and a DDP worker file started in a fresh interpreter."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from support.env import MODEL_YAMLS, TRAIN_ARGS, TRAIN_KWARGS, subprocess_env, yolo_attn_command

pytestmark = pytest.mark.slow


def run(cmd: list[str], cwd: Path, env: dict | None = None) -> str:
    """Run a command, fail the test with its output when it fails, and return stdout + stderr."""
    proc = subprocess.run(cmd, cwd=cwd, env=env or subprocess_env(), capture_output=True, text=True, timeout=600)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{cmd} failed ({proc.returncode}):\n{output[-4000:]}"
    return output


def python(code: str, cwd: Path, env: dict | None = None) -> str:
    """Run code in a fresh interpreter that has NOT imported yolo_attn."""
    return run([sys.executable, "-c", textwrap.dedent(code)], cwd, env)


@pytest.fixture(scope="module")
def trained(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Train yolov8n-cbam for one epoch through the `yolo-attn train` CLI; return best.pt."""
    project = tmp_path_factory.mktemp("runs")
    model = MODEL_YAMLS / "yolov8n-cbam.yaml"
    run([*yolo_attn_command(), "train", f"model={model}", f"data={tiny_data}", "epochs=1", *TRAIN_ARGS,
         f"project={project}", "name=e2e"], cwd=project)  # fmt: skip
    best = project / "e2e" / "weights" / "best.pt"
    assert best.exists()
    return best


@pytest.mark.seam
def test_best_pt_loads_and_predicts_in_a_fresh_process(trained: Path, tiny_data: Path, tmp_path: Path):
    images = tiny_data.parent / "images" / "val"
    out = python(
        f"""
        import sys
        from ultralytics import YOLO
        assert "yolo_attn" not in sys.modules
        model = YOLO({str(trained)!r})
        results = model.predict({str(images)!r}, imgsz=64, device="cpu", verbose=False)
        metrics = model.val(data={str(tiny_data)!r}, imgsz=64, batch=4, device="cpu", plots=False, workers=0)
        modules = {{type(m).__module__ for m in model.model.modules()}}
        print("blocks", sorted(m for m in modules if m.startswith("yolo_attn")))
        print("n_results", len(results), "map50", metrics.box.map50)
        """,
        tmp_path,
    )
    assert "n_results 4" in out
    assert "yolo_attn.modules.cbam" in out


def test_cli_predict_saves_results_by_default(trained: Path, tiny_data: Path, tmp_path: Path):
    images = tiny_data.parent / "images" / "val"
    out = run([*yolo_attn_command(), "predict", f"model={trained}", f"source={images}", "imgsz=64", "device=cpu",
               f"project={tmp_path}", "name=pred"], cwd=tmp_path)  # fmt: skip
    assert "Results saved to" in out
    assert len(list((tmp_path / "pred").glob("*.jpg"))) == 4


def test_fine_tune_from_best_then_resume_after_interruption(trained: Path, tiny_data: Path, tmp_path: Path):
    # Fine-tune from best.pt (the trainer rebuilds the model from the YAML saved in the checkpoint) and interrupt it
    # after the first of two epochs, in a fresh process; then resume it through the CLI.
    python(
        f"""
        from ultralytics import YOLO

        class Interrupt(Exception):
            pass

        def stop(trainer):
            raise Interrupt

        model = YOLO({str(trained)!r})
        model.add_callback("on_fit_epoch_end", stop)
        try:
            model.train(data={str(tiny_data)!r}, epochs=2, **{TRAIN_KWARGS!r}, project={str(tmp_path)!r}, name="ft")
        except Interrupt:
            print("interrupted")
        """,
        tmp_path,
    )
    last = tmp_path / "ft" / "weights" / "last.pt"
    assert torch.load(last, weights_only=False)["epoch"] == 0
    out = run([*yolo_attn_command(), "train", f"model={last}", "resume=True"], cwd=tmp_path)
    assert re.search(r"Resuming training .* from epoch 2 to 2", out.replace("\n", " ")), out[-3000:]
    assert (tmp_path / "ft" / "weights" / "best.pt").exists()


def test_safe_load_with_blocks_allow_listed(trained: Path, tmp_path: Path):
    env = subprocess_env() | {"ULTRALYTICS_SAFE_LOAD": "1"}
    out = python(
        f"""
        import yolo_attn
        import torch
        from ultralytics import YOLO
        model = YOLO({str(trained)!r})
        print("loaded", type(model.model.model[10]).__name__)
        print(model.predict(torch.zeros(1, 3, 64, 64), verbose=False)[0].boxes.shape)
        """,
        tmp_path,
        env,
    )
    assert "loaded CBAM" in out


ALL_BLOCKS_HEAD = [
    [-1, 1, "SE", []],
    [-1, 1, "ChannelAttention", [8]],
    [-1, 1, "SpatialAttention", [[3, 1], "mean"]],
    [-1, 1, "CBAM", [8, 3]],
    [-1, 1, "ECA", []],
    [-1, 1, "SAM", []],
    [-1, 1, "CoordAtt", []],
    [-1, 1, "MHSA", [4]],
    [-1, 1, "SeparableSelfAttention", []],
    [-1, 1, "CA_C2f", [256, True]],
    [-1, 1, "CA_C3k2", [256, True]],
]


def test_onnx_export_matches_pytorch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)  # a YAML-built model exports into the working directory
    import onnxruntime as ort
    from ultralytics import YOLO

    backbone = [[-1, 1, "Conv", [32, 3, 2]], [-1, 1, "Conv", [64, 3, 2]], [-1, 1, "Conv", [128, 3, 2]],
                [-1, 1, "Conv", [256, 3, 2]], [-1, 1, "Conv", [256, 3, 2]]]  # fmt: skip
    head = [*ALL_BLOCKS_HEAD, [[2, 3, -1], 1, "Detect", ["nc"]]]
    cfg = {"nc": 3, "scales": {"n": [1.0, 1.0, 1024]}, "backbone": backbone, "head": head}
    path = tmp_path / "yolov8n-allblocks.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    model = YOLO(str(path))
    onnx_file = model.export(format="onnx", imgsz=64, device="cpu", simplify=True)

    torch_model = model.model.eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        expected = torch_model(x)[0].numpy()
    session = ort.InferenceSession(onnx_file, providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    diff = float(np.abs(got - expected).max())
    print(f"ONNX vs PyTorch max abs difference: {diff:.3g} (output {tuple(got.shape)})")
    assert got.shape == expected.shape
    assert diff < 1e-3


def test_ddp_worker_file_builds_blocks_from_yaml(tiny_data: Path, tmp_path: Path):
    # Ultralytics writes this file for multi-GPU runs and starts it with torch.distributed.run in fresh interpreters.
    # The worker receives the model as its YAML path here, so it must rebuild CBAM rows without `import yolo_attn`.
    from ultralytics.models.yolo.detect import DetectionTrainer
    from ultralytics.utils.dist import generate_ddp_file

    overrides = TRAIN_KWARGS | {
        "model": str(MODEL_YAMLS / "yolov8n-cbam.yaml"),
        "data": str(tiny_data),
        "epochs": 1,
        "project": str(tmp_path),
        "name": "ddp",
    }
    trainer = DetectionTrainer(overrides=overrides)
    assert isinstance(trainer.model, str)  # not built yet: the worker builds it from the YAML
    file = generate_ddp_file(trainer)
    source = Path(file).read_text()
    assert "import yolo_attn" not in source  # nothing is edited into the file Ultralytics writes
    out = run([sys.executable, file], cwd=tmp_path)
    assert (tmp_path / "ddp" / "weights" / "best.pt").exists(), out[-3000:]
    ckpt = torch.load(tmp_path / "ddp" / "weights" / "best.pt", weights_only=False)
    assert type(ckpt["model"].model[10]).__module__ == "yolo_attn.modules.cbam"


def test_cli_train_from_pretrained_transfers_every_tensor_then_resumes(baseline_pt: Path, tiny_data: Path, tmp_path):
    # Train yolov8n-cbam from yolov8n weights in a fresh process, interrupted after the first of two epochs; then
    # resume through the CLI: the trainer rebuilds from the checkpoint's YAML, and the identity mixes must reload
    # before the optimizer state does.
    model = MODEL_YAMLS / "yolov8n-cbam.yaml"
    out = python(
        f"""
        import yolo_attn
        from ultralytics import YOLO

        class Interrupt(Exception):
            pass

        def stop(trainer):
            raise Interrupt

        model = YOLO({str(model)!r})
        model.add_callback("on_fit_epoch_end", stop)
        try:
            model.train(data={str(tiny_data)!r}, epochs=2, pretrained={str(baseline_pt)!r}, **{TRAIN_KWARGS!r},
                        project={str(tmp_path)!r}, name="ft")
        except Interrupt:
            print("interrupted")
        """,
        tmp_path,
    )
    assert "yolo_attn: 355/355 tensors of yolov8n.pt transferred (layers 10-22 -> 11-26); new: 4 CBAM blocks" in out
    last = tmp_path / "ft" / "weights" / "last.pt"
    ckpt = torch.load(last, weights_only=False)
    assert sum(k.endswith("identity_mix") for k in ckpt["ema"].state_dict()) == 4
    out = run([*yolo_attn_command(), "train", f"model={last}", "resume=True"], cwd=tmp_path)
    assert re.search(r"Resuming training .* from epoch 2 to 2", out.replace("\n", " ")), out[-3000:]
    assert re.search(r"yolo_attn: (\d+)/\1 tensors of last.pt transferred", out), out[-3000:]

    # the CLI, as a user types it: pretrained= with a model YAML
    out = run([*yolo_attn_command(), "train", f"model={model}", f"pretrained={baseline_pt}", f"data={tiny_data}",
               "epochs=1", *TRAIN_ARGS, f"project={tmp_path}", "name=cli"], cwd=tmp_path)  # fmt: skip
    assert "yolo_attn: 355/355 tensors of yolov8n.pt transferred" in out, out[-3000:]


def test_ddp_worker_file_remaps_pretrained_weights(baseline_pt: Path, tiny_data: Path, tmp_path: Path):
    # The worker builds the model from the YAML and loads pretrained= in a fresh interpreter that imports yolo_attn
    # only through the pickled callbacks. Run the file as a worker would, with training replaced by model set-up.
    from ultralytics.models.yolo.detect import DetectionTrainer
    from ultralytics.utils.dist import generate_ddp_file

    overrides = TRAIN_KWARGS | {
        "model": str(MODEL_YAMLS / "yolov8n-cbam.yaml"),
        "pretrained": str(baseline_pt),
        "data": str(tiny_data),
        "epochs": 1,
        "project": str(tmp_path),
        "name": "ddp",
    }
    file = generate_ddp_file(DetectionTrainer(overrides=overrides))
    assert "import yolo_attn" not in Path(file).read_text()
    out = python(
        f"""
        import runpy, sys
        from ultralytics.models.yolo.detect import DetectionTrainer

        def set_up_only(trainer):
            trainer.setup_model()
            print("report", trainer.model.transfer_report["summary"])

        assert "yolo_attn" not in sys.modules
        DetectionTrainer.train = set_up_only
        runpy.run_path({file!r}, run_name="__main__")
        """,
        tmp_path,
    )
    assert "report yolo_attn: 355/355 tensors of yolov8n.pt transferred (layers 10-22 -> 11-26)" in out, out[-3000:]
