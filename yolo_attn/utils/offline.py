"""Offline defaults for Ultralytics: no downloads, no auto-installs, a local font.

Nothing here imports ultralytics: the environment must be set before ultralytics is first imported, because it reads
``YOLO_AUTOINSTALL`` and ``YOLO_CONFIG_DIR`` at import time.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

OFFLINE_ENV = {"YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "0"}
CLI_NAMES = {"yolo-attn", "yolo-attn.exe"}
SCRIPTS_DIR = Path(__file__).resolve().parents[1] / "scripts"  # the benchmark scripts, in a source checkout


def invoked_as_cli() -> bool:
    """Return True when this interpreter runs the ``yolo-attn`` command, ``python -m yolo_attn`` or a ``scripts/`` file.

    While ``python -m`` imports the target's packages, ``sys.argv[0]`` is ``"-m"``; it is the script path afterwards,
    so a library merely imported by another ``-m`` program is not mistaken for the command.
    """
    if not sys.argv or not sys.argv[0]:
        return False
    if sys.argv[0] == "-m":
        return True
    program = Path(sys.argv[0])
    return program.name in CLI_NAMES or (program.suffix == ".py" and program.resolve().parent == SCRIPTS_DIR)


def apply_offline_env() -> None:
    """Set the offline environment variables, keeping any value the user set explicitly."""
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)


def install_local_font() -> Path | None:
    """Give Ultralytics a local ``Arial.ttf`` so plotting never fetches the font from the internet.

    Ultralytics looks for ``Arial.ttf`` in its user config directory and downloads it when absent. Matplotlib ships
    DejaVu Sans, which covers the same glyphs for labels; it is copied there only if no font exists yet.

    Returns:
        (Path | None): The font path, or None when matplotlib's font could not be found.
    """
    import matplotlib
    from ultralytics.utils import USER_CONFIG_DIR

    source = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    if not source.exists():
        return None
    for name in ("Arial.ttf", "Arial.Unicode.ttf"):
        target = Path(USER_CONFIG_DIR) / name
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
    return Path(USER_CONFIG_DIR) / "Arial.ttf"
