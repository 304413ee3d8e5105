"""Why new blocks stayed at the identity under SGD: the gradient scale of each new identity_mix, per site.

On the detect demo's fine-tune (its data and pretrained yolov8n, `yolo_attn.demos.detect`; --demo reuses a built one),
each model is fine-tuned a few epochs per optimizer and protocol, and at every optimizer step (after Ultralytics
unscaled and clipped the gradients) it records, for each new block: |gradient| of its ``identity_mix``, the RMS gradient
of the block's other weights, the RMS gradient of the pretrained layer that feeds it, and the mix after the step. It
writes the medians over steps, and the mix at the end and at its largest, to docs/benchmarks/mix_gradient_scale.md
(``--no-docs``: printed only).

python scripts/mix_gradient_scale.py --models cbam eca simam --optimizers SGD AdamW --protocols old default
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OPTIMIZERS = {"SGD": 0.01, "AdamW": 0.001}
PROTOCOLS = {"old": {"attn_mix_lr": 0}, "default": {}}


def measure(model: str, weights: Path, data: Path, optimizer: str, protocol: str, epochs: int, out: Path) -> dict:
    """Fine-tune ``model`` and return per block path: the medians over steps and the mix's path."""
    import torch
    from ultralytics import YOLO

    from yolo_attn import protocol as P

    records: dict[str, dict[str, list]] = {}

    def setup(trainer) -> None:
        net = trainer.model
        blocks = P.new_block_modules(net)
        feeding = {path: net.model[int(path.split(".")[1]) - 1] for path in blocks}

        def rms(params) -> float | None:
            grads = [p.grad.flatten() for p in params if p.grad is not None]
            return float(torch.cat(grads).pow(2).mean().sqrt()) if grads else None

        def before(opt, args, kwargs) -> None:
            for path, block in blocks.items():
                r = records.setdefault(path, {"mix_grad": [], "block_grad": [], "feed_grad": [], "mix": []})
                r["mix_grad"].append(
                    abs(float(block.identity_mix.grad)) if block.identity_mix.grad is not None else 0.0
                )
                r["block_grad"].append(rms(p for n, p in block.named_parameters() if n != "identity_mix"))
                r["feed_grad"].append(rms(p for p in feeding[path].parameters() if p.ndim > 1))

        def after(opt, args, kwargs) -> None:
            for path, block in blocks.items():
                records[path]["mix"].append(float(block.identity_mix.detach()))

        handle = trainer.optimizer.register_step_pre_hook(before)
        # first, before the protocol's own hook takes the mixes' gradients (a measurement may use torch's internals)
        trainer.optimizer._optimizer_step_pre_hooks.move_to_end(handle.id, last=False)
        trainer.optimizer.register_step_post_hook(after)

    yolo = YOLO(model)
    yolo.add_callback("on_pretrain_routine_end", setup)
    settings = P.FineTuneProtocol.from_settings({**P.FineTuneProtocol().to_settings(), **PROTOCOLS[protocol]})
    yolo.train(
        trainer=P.attach(yolo, settings), data=str(data), pretrained=str(weights), epochs=epochs, imgsz=128, batch=8,
        optimizer=optimizer, lr0=OPTIMIZERS[optimizer], warmup_epochs=1, close_mosaic=5, val=False, workers=0,
        plots=False, amp=False, seed=0, deterministic=True, project=str(out), name=f"{Path(model).stem}-{optimizer}-"
        f"{protocol}", exist_ok=True, verbose=False,
    )  # fmt: skip

    def median(values: list) -> float | None:
        values = [v for v in values if v is not None]
        return statistics.median(values) if values else None

    return {
        path: {
            "mix_grad": median(r["mix_grad"]),
            "block_grad": median(r["block_grad"]),
            "feed_grad": median(r["feed_grad"]),
            "mix_end": r["mix"][-1],
            "mix_max": max(map(abs, r["mix"])),
            "steps": len(r["mix"]),
        }
        for path, r in records.items()
    }


def main() -> None:
    from yolo_attn.profiling.publish import add_docs_argument

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/mix_gradient_scale"))
    parser.add_argument(
        "--demo", type=Path, default=None, help="demo folder with data/ and pretrain/ (default out/demo)"
    )
    add_docs_argument(parser, "its table (docs/benchmarks/mix_gradient_scale.md)")
    parser.add_argument("--models", nargs="+", default=["cbam", "eca", "simam"])
    parser.add_argument("--optimizers", nargs="+", default=list(OPTIMIZERS), choices=list(OPTIMIZERS))
    parser.add_argument("--protocols", nargs="+", default=["old", "default"], choices=list(PROTOCOLS))
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()

    import torch
    import ultralytics

    from yolo_attn.demos import detect

    demo = (args.demo or args.out / "demo").resolve()
    upstream = detect.synthetic_data(demo / "data" / "upstream", detect.N_UPSTREAM_TRAIN, detect.N_VAL, seed=1)
    weights = detect.pretrain_baseline(upstream, demo / "pretrain")
    data = detect.synthetic_data(demo / "data", detect.N_TRAIN, detect.N_VAL, seed=0)
    from yolo_attn.profiling.publish import wants_docs, write_benchmark

    lines = [
        f"Every figure is measured by the script. CPU training, torch {torch.__version__}, ultralytics "
        f"{ultralytics.__version__}.",
        "",
        f"- the detect demo's fine-tune: its pretrained yolov8n, its 96 training images at 128 px, batch 8 (nbs 64: "
        f"an optimizer step every 8 batches after the warm-up), {args.epochs} epochs, warmup_epochs=1, seed 0; SGD at "
        f"lr0=0.01, AdamW at lr0=0.001. Protocol `old`: `attn_mix_lr=0` (the run's optimizer steps the mix at lr "
        f"x30, the earlier default); `default`: this commit's default (the mix's own Adam step, 0.03).",
        "",
        "Medians over the optimizer steps. |g mix|: the mix's gradient; g block: RMS gradient of the block's other "
        "weights (none for SimAM); g feed: RMS gradient of the weights of the pretrained layer that feeds the block.",
        "",
        "| model | optimizer | protocol | block | \\|g mix\\| | g block | g feed | mix at the end | largest \\|mix\\| "
        "| steps |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]

    def e(value: float | None) -> str:
        return "–" if value is None else f"{value:.2e}"

    configurations = [(n, p, o) for n in args.models for p in args.protocols for o in args.optimizers]
    count_line = 3  # after the fine-tune's description
    lines.insert(count_line, "")
    for done, (name, protocol, optimizer) in enumerate(configurations, 1):
        model = f"yolov8n-{name}.yaml"
        for path, r in measure(model, weights, data, optimizer, protocol, args.epochs, args.out.resolve()).items():
            lines.append(
                f"| {model} | {optimizer} | {protocol} | {path} | {e(r['mix_grad'])} | {e(r['block_grad'])} | "
                f"{e(r['feed_grad'])} | {r['mix_end']:+.2e} | {e(r['mix_max'])} | {r['steps']} |"
            )
        lines[count_line] = f"- configurations: {done} of {len(configurations)} ran (model x protocol x optimizer)"
        if not wants_docs(args.docs):
            print("\n".join(lines), flush=True)
            continue
        written = write_benchmark("mix_gradient_scale", "\n".join(lines))  # header: this command, machine and commit
        print(f"written {written}", flush=True)


if __name__ == "__main__":
    main()
