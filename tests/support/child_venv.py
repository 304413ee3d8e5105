"""A fresh virtual environment for tests that install a package of their own, seeing this interpreter's packages.

``python -m venv --system-site-packages`` is not enough: when pytest itself runs inside a venv, as most users run it,
the new venv sees the *base* interpreter's site-packages, not the outer venv's, so torch and ultralytics go missing.
Instead the child venv gets a ``.pth`` file listing this interpreter's own site-packages folders. They come after the
child's own site-packages, so what the child installs (a wheel, a plugin) wins; the outer folders' ``.pth`` files are
not processed, so an editable install of this checkout in the outer environment does not leak in.
"""

from __future__ import annotations

import os
import site
import subprocess
import sys
import sysconfig
from pathlib import Path


def outer_site_packages() -> list[str]:
    """Return this interpreter's site-packages folders (the venv's when pytest runs in one), without duplicates.

    Those on ``sys.path`` count too, so a venv that itself sees another one through such a ``.pth`` file passes both on.
    """
    folders = [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], *site.getsitepackages()]
    folders += [entry for entry in sys.path if Path(entry).name in {"site-packages", "dist-packages"}]
    return list(dict.fromkeys(str(Path(f).resolve()) for f in folders if Path(f).is_dir()))


def make_child_venv(path: Path, env: dict[str, str]) -> Path:
    """Create a venv at ``path`` that sees this interpreter's installed packages, and return its python.

    Args:
        path (Path): Folder of the new venv.
        env (dict[str, str]): Environment for the ``venv`` call.

    Returns:
        (Path): The child venv's python executable.
    """
    subprocess.run([sys.executable, "-m", "venv", str(path)], env=env, check=True, capture_output=True, timeout=300)
    python = path / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    query = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    child_site = subprocess.run([str(python), "-c", query], capture_output=True, text=True, check=True).stdout.strip()
    Path(child_site, "_outer_site_packages.pth").write_text("\n".join(outer_site_packages()) + "\n")
    return python
