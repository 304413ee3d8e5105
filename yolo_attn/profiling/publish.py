"""Benchmark tables for the documentation: the one writer every benchmark script uses.

A figure in the docs is never typed: a benchmark script measures, then calls `write_benchmark`, which writes
``docs/benchmarks/<name>.md``: a header (the command, the machine, the date, the git commit) and the table. The docs
pages include those files (``pymdownx.snippets``), so rerunning a script updates the docs with no hand edit, and
``tests/docs`` checks that every figure table in the docs comes from such a file. `read_benchmark` parses one back.

Example::

    from yolo_attn.profiling.publish import write_benchmark

    write_benchmark("cost_table", table_markdown, note="20 paired rounds per runtime")
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

MARK = "<!-- benchmark table written by yolo_attn.profiling.publish: rerun its command, never edit by hand -->"
FIELDS = ("Command", "Machine", "Date", "Commit")
REPO = Path(__file__).resolve().parents[2]
DOCS_BENCHMARKS = REPO / "docs" / "benchmarks"


def command_line(argv: list[str] | None = None) -> str:
    """Return the command that is running, as a user would type it from the repository root.

    Args:
        argv (list[str] | None): The arguments; ``sys.argv`` when None.

    Returns:
        (str): ``python scripts/x.py --flag ...`` (a script path relative to the repository when it lies inside it).
    """
    argv = list(sys.argv if argv is None else argv)
    if argv:
        path = Path(argv[0]).resolve()
        argv[0] = str(path.relative_to(REPO)) if path.is_relative_to(REPO) else argv[0]
        if argv[0].endswith(".py"):
            argv.insert(0, "python")
    return shlex.join(argv)


def machine(device: str | None = None) -> str:
    """Describe the machine measuring now: CPU model and cores, load, OS, Python, torch, Ultralytics, GPU if used.

    Args:
        device (str | None): The device the benchmark ran on; a CUDA device adds the GPU's name.

    Returns:
        (str): One line.
    """
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    parts = [f"{cpu}, {os.cpu_count()} logical cores"]
    if hasattr(os, "getloadavg"):
        parts.append(f"load average {os.getloadavg()[0]:.1f} when written")
    parts.append(f"{platform.system()} {platform.release()}, Python {platform.python_version()}")
    for module in ("torch", "ultralytics", "onnxruntime"):
        if module in sys.modules:
            parts.append(f"{module} {getattr(sys.modules[module], '__version__', '?')}")
    if device and str(device) not in ("cpu", "") and "torch" in sys.modules:
        torch = sys.modules["torch"]
        if torch.cuda.is_available():
            parts.append(f"GPU {torch.cuda.get_device_name()}")
    return "; ".join(parts)


def git_commit(repo: Path = REPO) -> str:
    """Return the short commit of the checkout, with ``(uncommitted changes)`` when the tree differs from it.

    The benchmark files themselves (``docs/benchmarks/``) do not count: a run that rewrites them measured the commit.
    """
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!docs/benchmarks"],
            cwd=repo,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return f"{sha} (uncommitted changes)" if dirty else sha


def header(command: str, machine: str, date: str, commit: str) -> str:
    """Return the header block of a benchmark file (the mark, then one line per field)."""
    values = dict(zip(FIELDS, (command, machine, date, commit), strict=True))
    lines = [MARK, ""]
    for field in FIELDS:
        value = values[field]
        lines.append(f"- **{field}:** `{value}`" if field == "Command" else f"- **{field}:** {value}")
    return "\n".join(lines)


def write_benchmark(
    name: str,
    body: str,
    *,
    command: str | None = None,
    machine_line: str | None = None,
    device: str | None = None,
    date: str | None = None,
    commit: str | None = None,
    note: str | None = None,
    out_dir: str | Path | None = None,
) -> Path:
    """Write one benchmark table for the docs: ``<out_dir>/<name>.md``, header then table.

    Args:
        name (str): File stem, e.g. ``"cost_table"``; the docs include ``docs/benchmarks/<name>.md``.
        body (str): The markdown table (and any lines the script prints with it).
        command (str | None): The command that measured it; the running command when None.
        machine_line (str | None): The machine; this machine (`machine`) when None.
        device (str | None): The device measured on (a GPU's name is recorded).
        date (str | None): When it was measured; now (UTC) when None.
        commit (str | None): The code measured; the checkout's commit when None.
        note (str | None): One paragraph after the table (settings the table does not show).
        out_dir (str | Path | None): Folder; ``docs/benchmarks`` of this checkout when None.

    Returns:
        (Path): The file written.
    """
    out = Path(out_dir) if out_dir is not None else DOCS_BENCHMARKS
    out.mkdir(parents=True, exist_ok=True)
    text = header(
        command if command is not None else command_line(),
        machine_line if machine_line is not None else machine(device),
        date if date is not None else _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        commit if commit is not None else git_commit(),
    )
    text += "\n\n" + body.strip() + "\n"
    if note:
        text += "\n" + note.strip() + "\n"
    path = out / f"{name}.md"
    path.write_text(text)
    return path


def read_benchmark(path: str | Path) -> tuple[dict[str, str], str]:
    """Parse a file that `write_benchmark` wrote.

    Args:
        path (str | Path): The file.

    Returns:
        fields (dict[str, str]): ``Command``, ``Machine``, ``Date``, ``Commit`` -> their text.
        body (str): Everything after the header.

    Raises:
        ValueError: The file does not start with the mark, or a field is missing or empty.
    """
    lines = Path(path).read_text().splitlines()
    if not lines or lines[0] != MARK:
        raise ValueError(f"{path}: does not start with the benchmark mark (not written by write_benchmark)")
    fields, index = {}, 2
    for field in FIELDS:
        prefix = f"- **{field}:** "
        if index >= len(lines) or not lines[index].startswith(prefix) or not lines[index][len(prefix) :].strip():
            raise ValueError(f"{path}: line {index + 1} should be {prefix!r} and a value")
        fields[field] = lines[index][len(prefix) :].strip().strip("`")
        index += 1
    return fields, "\n".join(lines[index:]).strip()


def add_docs_argument(parser: argparse.ArgumentParser, what: str = "its tables") -> None:
    """Add ``--docs / --no-docs`` to a benchmark script: whether it writes ``what`` under ``docs/benchmarks/``.

    The default (None) lets the script decide with `wants_docs`: a full run writes, a subset (``--blocks``) does not.
    """
    parser.add_argument(
        "--docs",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=f"write {what} to docs/benchmarks/ for the documentation site (default: only for a full run)",
    )


def wants_docs(flag: bool | None, full_run: bool = True) -> bool:
    """Return whether to write the docs tables: ``--docs``/``--no-docs`` when given, else whether the run is full."""
    return full_run if flag is None else flag
