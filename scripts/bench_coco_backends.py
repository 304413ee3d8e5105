"""Time pycocotools against faster-coco-eval on one synthetic box set and check they give the same 12 numbers.

python scripts/bench_coco_backends.py --images 5000      # also writes docs/benchmarks/coco_backends.md
"""

from __future__ import annotations

import argparse
import time

from yolo_attn.data import synthetic_detection_case
from yolo_attn.evaluation import METRIC_NAMES, coco_metrics
from yolo_attn.evaluation.coco_eval import check_detections, load_coco_json
from yolo_attn.profiling.publish import add_docs_argument, wants_docs, write_benchmark


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tolerance", type=float, default=1e-12, help="largest allowed |difference| of a metric")
    add_docs_argument(parser, "the table")
    args = parser.parse_args()

    gt, detections = synthetic_detection_case(n_images=args.images, seed=args.seed)
    n_gt = len(gt["annotations"])
    print(f"{args.images} images, {n_gt} ground-truth boxes, {len(detections)} detections, 4 classes")
    start = time.perf_counter()
    check_detections(detections, load_coco_json(gt))
    print(f"input copy + validation, shared by both timings below: {time.perf_counter() - start:.2f} s")
    results, seconds = {}, {}
    for backend in ("pycocotools", "faster-coco-eval"):
        start = time.perf_counter()
        results[backend] = coco_metrics(gt, detections, backend=backend)  # load + evaluate + accumulate + summarize
        seconds[backend] = time.perf_counter() - start
        print(f"{backend:>17}: {seconds[backend]:.2f} s")
    print(f"speed-up: {seconds['pycocotools'] / seconds['faster-coco-eval']:.1f}x")

    reference, fast = results["pycocotools"], results["faster-coco-eval"]
    print(f"{'metric':>6} {'pycocotools':>20} {'faster-coco-eval':>20}  |diff|")
    worst = 0.0
    for name in METRIC_NAMES:
        diff = abs(reference[name] - fast[name])
        worst = max(worst, diff)
        print(f"{name:>6} {reference[name]:20.17f} {fast[name]:20.17f}  {diff:.1e}")
    for name, ap in reference["per_class_AP"].items():
        worst = max(worst, abs(ap - fast["per_class_AP"][name]))
    exact = sum(reference[name] == fast[name] for name in METRIC_NAMES)
    print(f"{exact}/12 metrics bit-identical; largest difference (12 metrics and per-class AP) {worst:.1e}")
    assert worst <= args.tolerance, f"backends disagree by {worst:.1e} > {args.tolerance:.1e}"
    print(f"all 12 metrics agree within {args.tolerance:.0e}")
    if wants_docs(args.docs):
        table = ["| backend | seconds (load, evaluate, accumulate, summarize) |", "| --- | ---: |"]
        table += [f"| {backend} | {seconds[backend]:.2f} |" for backend in seconds]
        note = (
            f"{args.images} images, {n_gt} ground-truth boxes, {len(detections)} detections, 4 classes, seed "
            f"{args.seed}. Speed-up {seconds['pycocotools'] / seconds['faster-coco-eval']:.1f}x; {exact}/12 metrics "
            f"bit-identical, largest difference (12 metrics and per-class AP) {worst:.1e}."
        )
        print(write_benchmark("coco_backends", "\n".join(table), note=note))


if __name__ == "__main__":
    main()
