"""``yolo-attn profile``: params, GFLOPs and latency of models against the first, or the shipped YAMLs' cost headers."""

from __future__ import annotations

import argparse

VERB = "profile"
TAKES_OVERRIDES = False


def add_parser(verbs: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``profile`` parser to ``verbs`` and return it."""
    p = verbs.add_parser(
        VERB, help="params, GFLOPs and batch-1 CPU latency of models against the first (paired shuffled rounds)"
    )
    p.add_argument("--models", nargs="+", default=None, help="model YAMLs or weights; the first is the baseline")
    p.add_argument("--imgsz", type=int, default=640, help="image size")
    p.add_argument(
        "--update-headers",
        nargs="*",
        metavar="YAML",
        default=None,
        help="instead: rewrite the cost table (scale n vs the Ultralytics baseline, params and GFLOPs) in the header "
        "of these unscaled shipped YAMLs (none given: all of them) and print it",
    )
    p.add_argument("--runtime", default="torch", choices=("torch", "onnxruntime"), help="PyTorch eager or ONNX Runtime")
    p.add_argument("--rounds", type=int, default=60, help="timed rounds, each running every model once, shuffled")
    p.add_argument("--warmup", type=int, default=5, help="untimed runs of each model first")
    p.add_argument("--threads", type=int, default=2, help="CPU threads (0: keep the current setting)")
    p.add_argument("--device", default="cpu", help="cpu (paired rounds above), or a GPU such as 0 (torch runtime)")
    return p


def run(args: argparse.Namespace, overrides: dict) -> None:
    """Print the cost table of ``--models`` (or rewrite the YAML headers with ``--update-headers``)."""
    # imported here: yolo_attn.profiling loads torch.utils.flop_counter, which loads triton (about 0.5 s that every
    # other yolo-attn command, --help included, would pay)
    from yolo_attn.profiling.cost import print_cost_table
    from yolo_attn.profiling.headers import update_headers
    from yolo_attn.profiling.runtime import runtime_costs, runtime_table

    if args.update_headers is not None:
        for path, lines in update_headers(args.update_headers or None).items():
            print(f"{path.name}:", *lines, sep="\n", end="\n\n")
        return
    if not args.models:
        raise SystemExit("profile: --models is required (or --update-headers)")
    if str(args.device) != "cpu":  # interleaved, synchronised GPU timing of the fused models (PyTorch only)
        if args.runtime != "torch":
            raise SystemExit(f"profile --device {args.device}: only --runtime torch runs on a GPU here")
        print_cost_table(args.models, imgsz=args.imgsz, device=args.device)
        return
    rows = runtime_costs(
        args.models, args.imgsz, args.runtime, rounds=args.rounds, warmup=args.warmup, threads=args.threads or None
    )
    print(runtime_table(rows))
