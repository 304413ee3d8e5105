"""Write the checkpoint fixtures of tests/fixtures/checkpoints with the release installed now.

The fixtures pin what an earlier release saved: real ``yolo-attn train`` checkpoints (pickled block classes by their
module paths, identity mixes, the model YAML), and each model's output on one fixed input. The tests load them with
the current code, plainly and under ``ULTRALYTICS_SAFE_LOAD=1``, and compare the outputs.

Usage: python scripts/make_checkpoint_fixtures.py  (minutes on 2 CPU cores; rerun only to add a release's fixtures)
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import yaml

OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "checkpoints"
BACKBONE = [
    [-1, 1, "Conv", [64, 3, 2]],
    [-1, 1, "Conv", [128, 3, 2]],
    [-1, 1, "C2f", [128, True]],
    [-1, 1, "Conv", [256, 3, 2]],
    [-1, 1, "C2f", [256, True]],
]
BASE_HEAD = [[-1, 1, "Conv", [256, 3, 1]], [[4, -1], 1, "Detect", ["nc"]]]
MODELS = {
    # from scratch: CBAM and CoordAtt rows, a CA_C2f row (pickles csp_coord_att.CA_C2f and CoordAttBottleneck)
    "small-cbam-ca_c2f": {
        "backbone": [*BACKBONE[:4], [-1, 1, "CA_C2f", [256, True]], [-1, 1, "CBAM", []]],
        "head": [[-1, 1, "CoordAtt", []], [[5, -1], 1, "Detect", ["nc"]]],
    },
    # fine-tuned from small-base: SE and EMA rows that started as the identity (identity_mix parameters)
    "small-se-ema": {
        "backbone": [*BACKBONE, [-1, 1, "SE", []]],
        "head": [[-1, 1, "EMA", [16]], [-1, 1, "Conv", [256, 3, 1]], [[5, -1], 1, "Detect", ["nc"]]],
    },
    "small-base": {"backbone": BACKBONE, "head": BASE_HEAD},
}


def write_yaml(folder: Path, name: str) -> Path:
    """Write model ``name`` as ``<name>-n.yaml``-style file with scale n (the scale letter comes from the file name)."""
    spec = {"nc": 2, "scales": {"n": [0.33, 0.25, 1024]}, **copy.deepcopy(MODELS[name])}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def train(folder: Path, model: Path, data: Path, name: str, *extra: str) -> Path:
    """Train three epochs through the CLI users type; return last.pt."""
    cmd = [
        "yolo-attn",
        "train",
        f"model={model}",
        f"data={data}",
        "epochs=3",
        "warmup_epochs=0",
        "imgsz=64",
        "batch=4",
        "workers=0",
        "device=cpu",
        "plots=False",
        f"project={folder / 'runs'}",
        f"name={name}",
        "exist_ok=True",
        "seed=0",
        "deterministic=True",
        "amp=False",
        *extra,
    ]
    subprocess.run(cmd, check=True)
    return folder / "runs" / name / "weights" / "last.pt"


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from conftest import write_tiny_yolo_dataset  # the suite's own tiny data set

    OUT.mkdir(parents=True, exist_ok=True)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        data = write_tiny_yolo_dataset(folder / "data")
        base = train(folder, write_yaml(folder, "small-base"), data, "small-base")
        runs = {
            "small-cbam-ca_c2f": train(folder, write_yaml(folder, "small-cbam-ca_c2f"), data, "small-cbam-ca_c2f"),
            "small-se-ema": train(
                folder, write_yaml(folder, "small-se-ema"), data, "small-se-ema", f"pretrained={base}"
            ),
        }
        import yolo_attn  # noqa: F401  (registers the blocks before unpickling)

        x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
        for name, weights in runs.items():
            ckpt = torch.load(weights, map_location="cpu", weights_only=False)
            model = (ckpt.get("ema") or ckpt["model"]).float().eval()
            with torch.no_grad():
                out = model(x)
            out = out[0] if isinstance(out, (list, tuple)) else out
            (OUT / f"{name}.pt").write_bytes(weights.read_bytes())
            torch.save({"input": x, "output": out}, OUT / f"{name}.expected.pt")
    (OUT / "provenance.json").write_text(json.dumps({"commit": commit, "script": Path(__file__).name}, indent=1))


if __name__ == "__main__":
    main()
