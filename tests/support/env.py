"""The checkout's paths and the environment of the processes the tests start (the installed CLI, child interpreters)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MODEL_YAMLS = REPO / "model_yamls"


def subprocess_env() -> dict[str, str]:
    """Environment for child interpreters: the same offline settings, this checkout importable."""
    env = dict(os.environ) | {"YOLO_VERBOSE": "True"}  # child output is read by the tests
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    return env


def yolo_attn_command() -> list[str]:
    """The installed ``yolo-attn`` console script, as a user types it (beside this interpreter, else on PATH)."""
    script = Path(sys.executable).with_name("yolo-attn")
    return [str(script)] if script.exists() else ["yolo-attn"]


#: Settings of the tiny CLI trainings (``yolo-attn train ...``): CPU, 64 px, no plots.
TRAIN_KWARGS = {"imgsz": 64, "batch": 4, "workers": 0, "device": "cpu", "amp": False, "plots": False}


TRAIN_ARGS = [f"{k}={v}" for k, v in TRAIN_KWARGS.items()]
