"""The cost table in each shipped model YAML's header: params and GFLOPs at scale n against its Ultralytics baseline.

Every shipped ``<family>[-cls]-<variant>.yaml`` (family ``yolov8``, ``yolo11`` or ``yolo26``) is built at scale n
through its scaled name, exactly as a user loads it (``yolov8-cbam.yaml`` from ``yolov8n-cbam.yaml``), beside the
Ultralytics baseline of the same family and task (``yolov8n.yaml``; ``yolov8n-cls.yaml`` for a classifier). Costs are
``static_cost``'s: parameters of the model as built, and both FLOP counters of this package on the fused model.
Detectors are counted at 640 px, classifiers at 224 px (Ultralytics' classification size) with the YAML's own nc.
``yolo-attn profile --update-headers`` prints the tables and rewrites them in the headers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from yolo_attn.cfg import MODEL_YAMLS_DIR
from yolo_attn.profiling.cost import static_cost

SHIPPED_YAMLS = MODEL_YAMLS_DIR
DETECT_IMGSZ, CLS_IMGSZ = 640, 224
# unscaled shipped stems: yolov8-cbam, yolo11-ca-c3k2, yolov8-cls-se (the scale letter goes after the family)
SHIPPED_STEM = re.compile(r"^(yolov8|yolo11|yolo26)(-cls)?-(.+)$")
INTRO_LINE = "# Cost at scale n"  # first header line that this module writes
TABLE_LINE = "# |"
TABLE_HEAD = (
    "| model | params | extra params | GFLOPs | extra GFLOPs | GFLOPs (torch) | extra (torch) |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
)


def scaled_pair(yaml_path: str | Path, scale: str = "n") -> tuple[Path, str]:
    """Return the scaled YAML path of a shipped unscaled YAML and its Ultralytics baseline's YAML name.

    Args:
        yaml_path (str | Path): Unscaled shipped YAML, e.g. ``model_yamls/yolov8-cls-se.yaml``.
        scale (str): One of ``n, s, m, l, x``.

    Returns:
        (tuple[Path, str]): E.g. ``(model_yamls/yolov8n-cls-se.yaml, "yolov8n-cls.yaml")``.
    """
    path = Path(yaml_path)
    match = SHIPPED_STEM.match(path.stem)
    if match is None:
        raise ValueError(f"{path.name}: expected <family>[-cls]-<variant>.yaml with family yolov8, yolo11 or yolo26")
    family, task, variant = match.group(1), match.group(2) or "", match.group(3)
    return path.with_name(f"{family}{scale}{task}-{variant}.yaml"), f"{family}{scale}{task}.yaml"


def _row(name: str, cost: Mapping[str, Any], base: Mapping[str, Any] | None) -> str:
    """Format one markdown row of ``TABLE_HEAD``; the baseline row (``base`` None) has no extra columns."""
    if base is None:
        flops = f"{cost['gflops']:.2f} | - | {cost['gflops_torch']:.2f}"
        return f"| {name} (baseline) | {cost['params']:,} | - | {flops} | - |"
    cells = [name, f"{cost['params']:,}", _extra(cost["params"], base["params"], "{:+,}", 2)]
    for key in ("gflops", "gflops_torch"):
        cells += [f"{cost[key]:.2f}", _extra(cost[key], base[key], "{:+.3f}", 1)]
    return "| " + " | ".join(cells) + " |"


def _extra(value: float, reference: float, form: str, digits: int) -> str:
    """Format ``value - reference`` and its percentage of ``reference``."""
    percent = f"{100 * (value - reference) / reference:+.{digits}f}%" if reference else "-"
    return f"{form.format(value - reference)} ({percent})"


def header_lines(yaml_path: str | Path, costs: dict[str, dict[str, Any]] | None = None) -> list[str]:
    """Measure a shipped YAML at scale n beside its baseline and return its header's cost section (comment lines).

    Args:
        yaml_path (str | Path): Unscaled shipped YAML.
        costs (dict[str, dict[str, Any]] | None): Cache of ``static_cost`` results by YAML name, shared across calls
            so that each baseline is measured once.

    Returns:
        (list[str]): The comment lines, from ``INTRO_LINE`` to the table's last row.
    """
    costs = {} if costs is None else costs
    scaled, baseline = scaled_pair(yaml_path)
    classifier = "-cls" in baseline
    imgsz = CLS_IMGSZ if classifier else DETECT_IMGSZ
    for key, cfg in ((baseline, baseline), (scaled.name, scaled)):
        if key not in costs:
            costs[key] = static_cost(cfg, imgsz)
    size = f"{imgsz}x{imgsz} input{', nc=1000' if classifier else ''}"
    intro = [
        f"{INTRO_LINE}, {size}, vs {baseline} (`yolo-attn profile --update-headers`; fused Conv+BN, as",
        "# val/predict run). GFLOPs: Ultralytics' get_flops (what model.info() prints) and PyTorch's FlopCounterMode",
        "# on one full-size pass (convolutions and matrix products). Neither counts sigmoid/multiply gating work.",
    ]
    rows = [_row(Path(baseline).stem, costs[baseline], None), _row(scaled.stem, costs[scaled.name], costs[baseline])]
    return intro + [f"# {line}" for line in (*TABLE_HEAD, *rows)]


def update_header(yaml_path: str | Path, lines: Sequence[str]) -> None:
    """Replace a YAML header's cost section (``INTRO_LINE`` through the last ``# |`` line after it) with ``lines``.

    Args:
        yaml_path (str | Path): YAML rewritten in place.
        lines (Sequence[str]): The new comment lines, e.g. from ``header_lines``.
    """
    path = Path(yaml_path)
    text = path.read_text().splitlines()
    start = next((i for i, line in enumerate(text) if line.startswith(INTRO_LINE)), None)
    if start is None:
        raise ValueError(f"{path}: no header line starting with {INTRO_LINE!r} to replace")
    end = next((i for i in range(start, len(text)) if text[i].startswith(TABLE_LINE)), None)
    if end is None:
        raise ValueError(f"{path}: no {TABLE_LINE!r} table after {INTRO_LINE!r}")
    while end < len(text) and text[end].startswith(TABLE_LINE):
        end += 1
    text[start:end] = lines
    path.write_text("\n".join(text) + "\n")


def update_headers(yaml_paths: Sequence[str | Path] | None = None) -> dict[Path, list[str]]:
    """Measure shipped YAMLs and rewrite the cost section of each one's header.

    Args:
        yaml_paths (Sequence[str | Path] | None): Unscaled shipped YAMLs; None: every one in ``SHIPPED_YAMLS``.

    Returns:
        (dict[Path, list[str]]): The lines written, per YAML.
    """
    paths = [Path(p) for p in yaml_paths] if yaml_paths else sorted(SHIPPED_YAMLS.glob("*.yaml"))
    costs: dict[str, dict[str, Any]] = {}
    written = {}
    for path in paths:
        written[path] = header_lines(path, costs)
        update_header(path, written[path])
    return written
