"""How much each attention block is used: its identity mix and its relative change to its input on real images.

A block new to a pretrained network starts as the identity (``identity_mix = 0``) and may stay there. The
*engagement* of a block on an image is ``||out - x|| / ||x||``, the relative change it makes to its input (norms over
the whole C x H x W feature map); a block's engagement is its mean over a fixed sample of images (the first
`SAMPLE_IMAGES` validation images, sorted by file name, letterboxed to the run's ``imgsz``). It is 0 exactly for a
block at the identity and the same quantity for blocks built from scratch, so the two protocols compare. For a block
with a mix, ``out - x = mix * (block(x) - x)``: its engagement is ``|mix|`` times the relative change of the block's
own formula. A block that replaces a row (DySample for ``nn.Upsample``) is measured against what that row computes, its
``identity_output`` (the nearest upsampling), in place of its input ``x``.

`run_engagement` measures the weights that are evaluated: Ultralytics' ``best.pt`` holds the EMA as its ``model``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from yolo_attn.finetune.transfer import new_block_modules, outermost_attention_blocks

SAMPLE_IMAGES = 16  # validation images per measurement
NEAR_IDENTITY = 0.01  # engagement below which a block is "within 1% of the identity" (see docs/fine-tuning.md)


def relative_change(x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Return ``||out - x|| / ||x||`` per sample (norms over all but the batch dimension).

    Args:
        x (torch.Tensor): Block input of shape (B, ...).
        out (torch.Tensor): Block output, same shape.

    Returns:
        (torch.Tensor): Shape (B,), float64.
    """
    diff = (out.double() - x.double()).flatten(1).norm(dim=1)
    return diff / x.double().flatten(1).norm(dim=1).clamp_min(torch.finfo(torch.float64).tiny)


def block_mixes(model: nn.Module) -> dict[str, float | None]:
    """Return the ``identity_mix`` of every outermost attention block, by module path (None: the block has none)."""
    return {
        path: None if getattr(block, "identity_mix", None) is None else float(block.identity_mix.detach())
        for path, block in outermost_attention_blocks(model).items()
    }


def measure_engagement(model: nn.Module, images: Sequence[torch.Tensor] | torch.Tensor) -> dict[str, float]:
    """Return each attention block's engagement, the mean relative change it makes to its input over ``images``.

    Args:
        model (nn.Module): A model holding attention blocks; run in eval mode, without gradients (its mode is restored).
        images (Sequence[torch.Tensor] | torch.Tensor): Network inputs, each (B, 3, H, W) on the model's device and
            dtype; each image counts once.

    Returns:
        (dict[str, float]): Module path -> mean over images of ``||out - x|| / ||x||`` (empty without blocks).
    """
    blocks = outermost_attention_blocks(model)
    changes: dict[str, list[torch.Tensor]] = {path: [] for path in blocks}

    def record(path: str):
        def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            start = getattr(module, "identity_output", None)  # a block that replaces a row: what that row computed
            reference = inputs[0] if start is None else start(inputs[0])
            changes[path].append(relative_change(reference, output).cpu())

        return hook

    handles = [block.register_forward_hook(record(path)) for path, block in blocks.items()]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for batch in [images] if isinstance(images, torch.Tensor) else images:
                model(batch)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return {path: float(torch.cat(values).mean()) for path, values in changes.items() if values}


def sample_images(data: str | Path, task: str = "detect", n: int = SAMPLE_IMAGES) -> list[Path]:
    """Return the fixed engagement sample of a data set: its first ``n`` validation images, sorted by path.

    Args:
        data (str | Path): Detection: a data YAML (its ``val`` entry: a folder, a list file or a list of those).
            Classification: an ImageFolder root (``val/``, else ``test/``, searched recursively).
        task (str): ``"detect"`` or ``"classify"``.
        n (int): Images wanted.

    Returns:
        (list[Path]): Up to ``n`` image paths.
    """
    from ultralytics.data.utils import IMG_FORMATS

    if task == "classify":
        root = Path(data)
        sources: list[Any] = [root / "val" if (root / "val").is_dir() else root / "test"]
    else:
        from ultralytics.data.utils import check_det_dataset

        val = check_det_dataset(str(data)).get("val")
        sources = val if isinstance(val, (list, tuple)) else [val]
    files: list[Path] = []
    for source in map(Path, filter(None, sources)):
        if source.is_dir():
            files += [p for p in source.rglob("*") if p.is_file() and p.suffix[1:].lower() in IMG_FORMATS]
        elif source.is_file() and source.suffix == ".txt":  # a list of image paths, relative to the list's folder
            lines = [line.strip() for line in source.read_text().splitlines() if line.strip()]
            files += [Path(line) if Path(line).is_absolute() else (source.parent / line).resolve() for line in lines]
        elif source.is_file():
            files.append(source)
    return sorted(set(files))[:n]


def engagement_report(model: nn.Module, files: Sequence[Path], imgsz: int, device: str | None = None) -> dict:
    """Measure every attention block of a model on image files: its mix and its engagement.

    Args:
        model (nn.Module): An Ultralytics model (its ``stride`` sets the letterbox multiple).
        files (Sequence[Path]): Images (`sample_images`).
        imgsz (int): Square letterbox side.
        device (str | None): Torch device for the forward passes; None: CPU.

    Returns:
        (dict): ``blocks`` (path -> ``block`` class, ``identity_mix`` or None, ``engagement``), ``images`` (count),
            ``imgsz``, and over the blocks ``mean``, ``min``, ``max`` (None without blocks).
    """
    from ultralytics.utils.checks import check_imgsz

    from yolo_attn.utils.images import letterbox_image

    stride = int(getattr(model, "stride", torch.tensor([32])).max())
    imgsz = check_imgsz(imgsz, stride=stride)
    blocks = outermost_attention_blocks(model)
    torch_device = torch.device("cpu" if device in {None, "", "cpu"} else _torch_device(device))
    model = model.to(torch_device).float()
    images = [letterbox_image(f, imgsz, stride)[1].to(torch_device) for f in files] if blocks else []
    engaged = measure_engagement(model, images) if images else {}
    mixes = block_mixes(model)
    table = {
        path: {"block": type(block).__name__, "identity_mix": mixes[path], "engagement": engaged.get(path)}
        for path, block in blocks.items()
    }
    values = [v["engagement"] for v in table.values() if v["engagement"] is not None]
    return {
        "blocks": table,
        "images": len(images),
        "imgsz": imgsz,
        "mean": sum(values) / len(values) if values else None,
        "min": min(values) if values else None,
        "max": max(values) if values else None,
    }


def run_engagement(weights: str | Path, settings: dict[str, Any], device: str | None = None) -> dict:
    """Measure the attention blocks of a trained checkpoint on its comparison's fixed validation sample.

    Args:
        weights (str | Path): The evaluated checkpoint (``best.pt``: its ``model`` is the EMA; ``ema`` is preferred
            where a checkpoint still has one, as Ultralytics' own loader does).
        settings (dict[str, Any]): The plan's settings (``data``, ``imgsz``, ``task``).
        device (str | None): Device for the forward passes.

    Returns:
        (dict): `engagement_report`'s result, with ``weights`` added.

    The checkpoint holds its weights in fp16; the attention blocks' full-precision tensors, saved beside it by
    `save_full_precision`, replace them where they exist.
    """
    from ultralytics.nn.tasks import load_checkpoint

    model, _ = load_checkpoint(str(weights))
    load_full_precision(model, weights)
    files = sample_images(settings["data"], settings.get("task", "detect"))
    return {"weights": str(weights), **engagement_report(model, files, int(settings["imgsz"]), device)}


FULL_PRECISION_SUFFIX = ".attn_fp32.pt"  # beside best.pt / last.pt: the attention blocks' float32 tensors


def save_full_precision(trainer: Any) -> None:
    """Ultralytics ``on_model_save`` callback: save the attention blocks of the checkpoint just written in float32.

    Ultralytics saves its EMA in fp16, which rounds a mix of 1.8e-7 to a subnormal; ``last.attn_fp32.pt`` (and
    ``best.attn_fp32.pt`` when ``best.pt`` was written too) keep the blocks' tensors of that EMA as trained.
    """
    model = getattr(trainer.ema, "ema", None)
    blocks = outermost_attention_blocks(getattr(model, "module", model)) if model is not None else {}
    if not blocks:
        return
    state = {
        path: {k: v.detach().float().cpu().clone() for k, v in block.state_dict().items()}
        for path, block in blocks.items()
    }
    files = [Path(trainer.last)] + ([Path(trainer.best)] if trainer.best_fitness == trainer.fitness else [])
    for file in files:
        torch.save(state, str(file.with_suffix(FULL_PRECISION_SUFFIX)))


def load_full_precision(model: nn.Module, weights: str | Path) -> bool:
    """Load the attention blocks' float32 tensors saved beside ``weights`` (`save_full_precision`) into ``model``.

    Returns:
        (bool): Whether a file was found and loaded: it must hold exactly the model's attention blocks, and its
            tensors rounded to fp16 must be the checkpoint's (a file left by another training is ignored).
    """
    path = Path(weights).with_suffix(FULL_PRECISION_SUFFIX)
    if not path.is_file():
        return False
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    blocks = outermost_attention_blocks(model)
    if set(state) != set(blocks):  # not this checkpoint's blocks
        return False
    for path_, block in blocks.items():
        mine = block.state_dict()
        if set(mine) != set(state[path_]) or not all(
            torch.equal(v.to(mine[k].dtype) if not v.is_floating_point() else v.half().to(mine[k].dtype), mine[k])
            for k, v in state[path_].items()
        ):
            return False
    model.float()
    for path_, block in blocks.items():
        block.load_state_dict(state[path_])
    return True


def _torch_device(device: str) -> str:
    """Turn an Ultralytics device (``0``, ``cuda:0``, ``mps``) into a torch one."""
    text = str(device).strip().lower()
    return f"cuda:{text}" if text.isdigit() else text


def summary_lines(report: dict, what: str = "the block") -> list[str]:
    """Return the console summary of an `engagement_report`: one line per block, then the warnings.

    Every block below ``NEAR_IDENTITY`` is named with its layer; a mean below it gets the sentence "this comparison
    cannot say whether the block helps" (``what`` names the blocks in it).

    Args:
        report (dict): `engagement_report`'s (or `run_engagement`'s) result.
        what (str): How the sentence names the blocks, e.g. ``"CBAM"``.

    Returns:
        (list[str]): Lines, empty for a model without attention blocks.
    """
    blocks = report.get("blocks") or {}
    if not blocks or report.get("mean") is None:
        return []
    lines = [
        f"engagement of {len(blocks)} attention block(s) on {report['images']} val images at imgsz {report['imgsz']}: "
        f"mean {report['mean']:.2%} [{report['min']:.2%}, {report['max']:.2%}]"
    ]
    off = []
    for path, entry in blocks.items():
        mix = "" if entry["identity_mix"] is None else f"identity_mix {entry['identity_mix']:+.6g}, "
        value = entry["engagement"]
        low = value is not None and value < NEAR_IDENTITY
        flag = " (off)" if low else ""
        lines.append(f"  {layer_label(path)} {entry['block']}: {mix}engagement {_percent(value)}{flag}")
        if low:
            off.append(f"{layer_label(path)} ({entry['block']}, {_percent(value)})")
    if off:
        lines.append(
            f"WARNING: {len(off)} block(s) stayed within {NEAR_IDENTITY:.0%} of the identity: {', '.join(off)}"
        )
    if report["mean"] < NEAR_IDENTITY:
        lines.append(
            f"WARNING: the blocks' mean engagement {report['mean']:.2%} is under {NEAR_IDENTITY:.0%}: this comparison "
            f"cannot say whether {what} helps"
        )
    return lines


def print_at_train_end(trainer: Any) -> None:
    """Ultralytics ``on_train_end`` callback: print each new attention block's engagement on the validation images.

    Measured on the final EMA weights, the ones ``last.pt`` holds, at full precision (before the checkpoint's fp16), on
    the fixed sample of `sample_images` at the run's ``imgsz``. Nothing for a model without new blocks (the baseline,
    a model trained from scratch).
    """
    import copy

    from ultralytics.utils import LOGGER

    model = getattr(trainer.ema, "ema", None)
    model = trainer.model if model is None else model
    model = getattr(model, "module", model)
    if not new_block_modules(model):
        return
    try:
        files = sample_images(trainer.args.data, trainer.args.task)
        report = engagement_report(copy.deepcopy(model), files, int(trainer.args.imgsz), str(trainer.device))
    except Exception as error:  # a summary must never fail a finished training
        LOGGER.warning(f"yolo_attn: engagement not measured ({error})")
        return
    for line in summary_lines(report, "the new blocks"):
        (LOGGER.warning if line.startswith("WARNING") else LOGGER.info)(f"yolo_attn: {line.removeprefix('WARNING: ')}")


def layer_label(path: str) -> str:
    """How reports name a block by its module path: ``model.21`` -> ``layer 21``; another path is kept."""
    head, _, index = path.partition(".")
    return f"layer {index}" if head == "model" and index.isdigit() else path


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{value:.2%}"
