"""Pretrained-weights transfer for every shipped YAML: Ultralytics' key-and-shape count against yolo_attn's alignment.

For each ``model_yamls/*.yaml`` (detection, built at scale n through its scaled name) a baseline checkpoint is built
from the matching Ultralytics YAML (``yolov8n.yaml``, ``yolo11n.yaml``, ``yolo26n.yaml``) with random weights and
random BatchNorm statistics, then loaded into the variant twice:

- by Ultralytics' rule, ``intersect_dicts`` (same key, same shape), the count its "Transferred x/y items" line gives;
- by `yolo_attn.integration.load_pretrained` (YAML alignment + identity start), which every ``load`` uses once yolo_attn
  is imported.

The last column is the step-0 relative difference of the eval-mode raw outputs (max |variant - baseline| / max
|baseline|, on two random 64 px images) after yolo_attn's load.

Usage:
    python scripts/transfer_table.py          # also writes docs/benchmarks/transfer_table.md (--no-docs: print only)
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")  # must precede the first ultralytics import
os.environ.setdefault("YOLO_AUTOINSTALL", "0")

import torch
from torch import nn
from ultralytics.nn.tasks import ClassificationModel, DetectionModel
from ultralytics.utils.torch_utils import intersect_dicts

import yolo_attn  # noqa: F401  (registers the blocks with Ultralytics)
from yolo_attn.integration import load_pretrained
from yolo_attn.modules.random_weights import randomize_
from yolo_attn.profiling.publish import add_docs_argument, wants_docs, write_benchmark

MODEL_YAMLS = Path(__file__).resolve().parents[1] / "model_yamls"


def main() -> None:
    """Print the table as markdown, and write it to the docs."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_docs_argument(parser, "the table")
    args = parser.parse_args()
    image = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    baselines: dict[str, nn.Module] = {}
    lines = ["| model | Ultralytics (key + shape) | yolo_attn (alignment) | new blocks | step-0 rel. diff |"]
    lines.append("| --- | ---: | ---: | --- | ---: |")
    print("\n".join(lines))
    worst = 0.0
    for path in sorted(MODEL_YAMLS.glob("*.yaml")):
        name = re.sub(r"^(yolov8|yolo11|yolo26)-", r"\1n-", path.name)
        base_name = f"{re.match(r'(yolov8|yolo11|yolo26)n(-cls)?', name)[0]}.yaml"
        model_class = ClassificationModel if "-cls" in name else DetectionModel
        if base_name not in baselines:
            baselines[base_name] = randomize_(model_class(base_name, verbose=False), fan_in=True).eval()
        base = baselines[base_name]
        model = model_class(str(MODEL_YAMLS / name), verbose=False)
        by_key = len(intersect_dicts(base.state_dict(), model.state_dict()))
        report = load_pretrained(model, base, verbose=False)
        with torch.no_grad():
            expected, got = (
                out if isinstance(out, torch.Tensor) else out[0] for out in (base(image), model.eval()(image))
            )
        diff = float((got - expected).abs().max() / expected.abs().max())
        worst = max(worst, diff)
        new = ", ".join(sorted({f"{n} x {k}" for k, n in _counts(report.new_blocks).items()}))
        total = report.source_tensors
        lines.append(f"| {name} | {by_key}/{total} | {report.transferred}/{total} | {new} | {diff:.2g} |")
        print(lines[-1])
    summary = f"max step-0 relative output difference over all YAMLs: {worst:.3g}"
    print(f"\n{summary}")
    if wants_docs(args.docs):
        print(write_benchmark("transfer_table", "\n".join(lines), note=summary))


def _counts(blocks: dict[str, str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for kind in blocks.values():
        counts[kind] = counts.get(kind, 0) + 1
    return counts


if __name__ == "__main__":
    main()
