"""Params and GFLOPs of the model_yamls variants against their Ultralytics baseline, as a markdown table.

Each YAML in model_yamls is built at one scale (default n) through its scaled name, exactly as a user loads it
(``yolov8-cbam.yaml`` at scale n is built from ``yolov8n-cbam.yaml``), next to the matching Ultralytics baseline
(``yolov8n.yaml`` / ``yolo11n.yaml`` / ``yolo26n.yaml``; ``yolov8n-cls.yaml`` / ``yolo11n-cls.yaml`` for the ``-cls-``
classifiers, which are measured at 224 px, Ultralytics' classification size, unless ``--cls-imgsz`` says otherwise).
Params are the sum of ``numel`` over all parameters. GFLOPs are given twice:

- ``ultralytics.utils.torch_utils.get_flops(model, imgsz)``, the figure ``model.info()`` prints. It profiles one-stride-
  tall proxy images and extrapolates to the target size, which mis-scales costs that are not proportional to H*W:
  a pooled SE/CBAM MLP (constant) is counted once per stride cell, CoordAtt's H- and W-pooled convs (~H+W) likewise.
- A full pass: thop on one image of the target size, no extrapolation. Trust this column for the blocks' cost.

Neither counts elementwise work (sigmoid, gating multiplies, channel pooling), which is most of what the cheap gates
do, so measure latency too.

Usage:
    python scripts/yaml_cost_table.py                        # every model_yamls/*.yaml at scale n, 640 px (cls: 224)
    python scripts/yaml_cost_table.py --scale s model_yamls/yolov8-cbam.yaml
    python scripts/yaml_cost_table.py --update-headers       # also rewrite the cost table in each YAML's header
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")  # must precede the first ultralytics import
os.environ.setdefault("YOLO_AUTOINSTALL", "0")

import thop
import torch
from ultralytics.nn.tasks import ClassificationModel, DetectionModel
from ultralytics.utils.torch_utils import get_flops

import yolo_attn  # noqa: F401  (registers the blocks with Ultralytics)

REPO_ROOT = Path(__file__).resolve().parents[1]
YAML_DIR = REPO_ROOT / "yolo_attn" / "model_yamls"  # the repo-root model_yamls links here
# unscaled stems: yolov8-cbam, yolo11-ca-c3k2, yolov8-cls-se (group 2: the task suffix of the baseline)
FAMILY_PATTERN = re.compile(r"^(yolov8|yolo11|yolo26)(-cls)?(-.+)?$")
CLS_IMGSZ = 224  # Ultralytics' default image size for classification
TABLE_LINE = "# |"  # header lines of a YAML that hold its cost table
PLACEHOLDER_LINE = "# COST TABLE PLACEHOLDER"


@dataclass(frozen=True)
class ModelCost:
    """Size and compute of one built model.

    Attributes:
        name (str): Scaled model name, e.g. ``yolov8n-cbam``.
        params (int): Number of parameters.
        gflops (float): GFLOPs for one image at the profiled size, from Ultralytics' ``get_flops``.
        gflops_full (float): GFLOPs from one full-size thop pass.
    """

    name: str
    params: int
    gflops: float
    gflops_full: float


def scaled_name(yaml_path: Path, scale: str) -> tuple[str, str]:
    """Return the scaled model name and its baseline's name for an unscaled model_yamls file.

    Args:
        yaml_path (Path): Unscaled YAML, e.g. ``model_yamls/yolov8-cbam.yaml``.
        scale (str): One of ``n, s, m, l, x``.

    Returns:
        (tuple[str, str]): E.g. ``("yolov8n-cbam", "yolov8n")`` or ``("yolov8n-cls-se", "yolov8n-cls")``.
    """
    match = FAMILY_PATTERN.match(yaml_path.stem)
    if match is None:
        raise ValueError(f"{yaml_path.name}: expected a name like <family>-<variant>.yaml, family yolov8|yolo11|yolo26")
    family, task, variant = match.group(1), match.group(2) or "", match.group(3) or ""
    return f"{family}{scale}{task}{variant}", f"{family}{scale}{task}"


def is_classifier(yaml_path: Path) -> bool:
    """Return True for a classification YAML (``-cls`` right after the family, as Ultralytics names them)."""
    match = FAMILY_PATTERN.match(yaml_path.stem)
    return bool(match and match.group(2))


def measure(cfg: str | Path, name: str, imgsz: int) -> ModelCost:
    """Build a detection or classification model from a (scaled) YAML name or path and measure it.

    Args:
        cfg (str | Path): Scaled YAML path or an Ultralytics model YAML name like ``yolov8n.yaml``.
        name (str): Name to report.
        imgsz (int): Square input size for the GFLOPs count.

    Returns:
        (ModelCost): Params and GFLOPs.
    """
    model_class = ClassificationModel if "-cls" in Path(cfg).stem else DetectionModel
    model = model_class(str(cfg), verbose=False)
    params = sum(p.numel() for p in model.parameters())
    image = torch.empty(1, 3, imgsz, imgsz)
    macs = thop.profile(model, inputs=[image], verbose=False)[0]  # no `stride`: one pass at full size
    return ModelCost(name=name, params=params, gflops=get_flops(model, imgsz=imgsz), gflops_full=2 * macs / 1e9)


def format_row(cost: ModelCost, baseline: ModelCost | None) -> str:
    """Format one markdown row; a baseline row has no extra columns.

    Args:
        cost (ModelCost): The model's cost.
        baseline (ModelCost | None): Its baseline, or None for the baseline row itself.

    Returns:
        (str): One row under ``TABLE_HEAD``.
    """
    if baseline is None:
        return f"| {cost.name} (baseline) | {cost.params:,} | - | {cost.gflops:.2f} | - | {cost.gflops_full:.2f} | - |"
    extra_params = cost.params - baseline.params
    extra_flops = cost.gflops - baseline.gflops
    extra_full = cost.gflops_full - baseline.gflops_full
    return (
        f"| {cost.name} | {cost.params:,} | {extra_params:+,} ({100 * extra_params / baseline.params:+.2f}%) "
        f"| {cost.gflops:.2f} | {extra_flops:+.3f} ({100 * extra_flops / baseline.gflops:+.1f}%) "
        f"| {cost.gflops_full:.2f} | {extra_full:+.3f} ({100 * extra_full / baseline.gflops_full:+.1f}%) |"
    )


TABLE_HEAD = (
    "| model | params | extra params | GFLOPs | extra GFLOPs | GFLOPs, full pass | extra, full pass |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
)


def cost_rows(
    yaml_paths: list[Path], scale: str, imgsz: int, cls_imgsz: int = CLS_IMGSZ
) -> dict[Path, tuple[ModelCost, ModelCost]]:
    """Measure every YAML and its baseline (each baseline built once).

    Args:
        yaml_paths (list[Path]): Unscaled model_yamls files.
        scale (str): Scale letter.
        imgsz (int): Square input size for GFLOPs of detection models.
        cls_imgsz (int): Square input size for GFLOPs of classification models.

    Returns:
        (dict[Path, tuple[ModelCost, ModelCost]]): Per YAML, (its cost, its baseline's cost).
    """
    baselines: dict[str, ModelCost] = {}
    results = {}
    for path in yaml_paths:
        model_name, base_name = scaled_name(path, scale)
        size = cls_imgsz if is_classifier(path) else imgsz
        if base_name not in baselines:
            baselines[base_name] = measure(f"{base_name}.yaml", base_name, size)
        results[path] = (measure(path.with_name(f"{model_name}.yaml"), model_name, size), baselines[base_name])
    return results


def update_header(yaml_path: Path, table_lines: list[str]) -> None:
    """Replace the cost table (the first run of ``# |`` lines, or the placeholder line) in a YAML's header.

    Args:
        yaml_path (Path): YAML to rewrite in place.
        table_lines (list[str]): Markdown lines, without the ``# `` comment prefix.
    """
    lines = yaml_path.read_text().splitlines()
    start = next((i for i, ln in enumerate(lines) if ln.startswith((TABLE_LINE, PLACEHOLDER_LINE))), None)
    if start is None:
        raise ValueError(f"{yaml_path}: no '{TABLE_LINE}' table or '{PLACEHOLDER_LINE}' line to replace")
    end = start + 1
    while end < len(lines) and lines[end].startswith(TABLE_LINE):
        end += 1
    lines[start:end] = [f"# {ln}" for ln in table_lines]
    yaml_path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    """Print the cost table; optionally write each YAML's two-row table into its header."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("yamls", nargs="*", type=Path, help="unscaled YAMLs (default: every model_yamls/*.yaml)")
    parser.add_argument("--scale", default="n", choices=list("nsmlx"), help="model scale (default n)")
    parser.add_argument("--imgsz", type=int, default=640, help="square input size for GFLOPs (default 640)")
    parser.add_argument("--cls-imgsz", type=int, default=CLS_IMGSZ, help="the same for -cls- YAMLs (default 224)")
    parser.add_argument("--update-headers", action="store_true", help="rewrite the cost table in each YAML header")
    args = parser.parse_args(argv)
    if args.update_headers and (args.scale, args.imgsz, args.cls_imgsz) != ("n", 640, CLS_IMGSZ):
        parser.error("--update-headers writes the scale-n, 640 px (cls: 224 px) table that the YAML headers describe")

    torch.set_grad_enabled(False)
    yaml_paths = args.yamls or sorted(YAML_DIR.glob("*.yaml"))
    results = cost_rows(yaml_paths, args.scale, args.imgsz, args.cls_imgsz)

    print(f"Scale {args.scale}, {args.imgsz}x{args.imgsz} input (cls: {args.cls_imgsz}), torch {torch.__version__}\n")
    print("\n".join(TABLE_HEAD))
    printed_baselines = set()
    for cost, baseline in results.values():
        if baseline.name not in printed_baselines:
            printed_baselines.add(baseline.name)
            print(format_row(baseline, None))
        print(format_row(cost, baseline))

    if args.update_headers:
        for path, (cost, baseline) in results.items():
            update_header(path, [*TABLE_HEAD, format_row(baseline, None), format_row(cost, baseline)])
        print(f"\nUpdated the cost table in {len(results)} YAML header(s).", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
