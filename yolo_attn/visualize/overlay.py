"""Attention maps over images: what each yolo_attn block in a YOLO model looks at.

Forward hooks on every attention block record one spatial map per block from the block's own API, and a PNG grid per
image shows the letterboxed input followed by each map overlaid on it. Each block draws its own map: its method
``attention_map(x, output) -> (map (B, H, W), source)`` (a spatial gate, attention received, context scores...); a
channel gate, which has no spatial map, and a registered block without the method show the channel mean of
``|output|``. Blocks that extend an Ultralytics block are searched for the blocks inside them.
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from ultralytics.utils import LOGGER

from yolo_attn import registry
from yolo_attn.utils.images import letterbox_image
from yolo_attn.utils.models import load_model


def attention_block_classes() -> tuple[type[nn.Module], ...]:
    """Blocks that get one panel each: the registered channel-preserving blocks.

    Blocks that extend an Ultralytics block (C2f-like) are not among them: the walk descends into them to the blocks
    inside (their CoordAtts).
    """
    return tuple(registry.channel_blocks().values())


PANEL_COLUMNS = 4  # panels per row of the grid
TITLE_WIDTH = 40  # characters per line of a panel title
OVERLAY_ALPHA = 0.5  # opacity of the map over the image
FLAT_TOLERANCE = 1e-6  # a map whose range is below this fraction of its magnitude is drawn as flat, without colour bar


@dataclass
class AttentionBlock:
    """An attention block found in a model, with where it sits.

    Attributes:
        module (nn.Module): The block (hooked).
        layer (int | None): Index ``i`` of the model layer holding the block (Ultralytics' attribute), None if unknown.
        name (str): Display name, e.g. ``"CBAM"`` or ``"C2f_CoordAtt > CoordAtt (m.0.attn)"``.
    """

    module: nn.Module
    layer: int | None
    name: str


@dataclass
class AttentionMap:
    """The spatial map of one block for a batch of images.

    Attributes:
        layer (int | None): Index of the model layer holding the block.
        name (str): Display name of the block.
        source (str): What the map is, e.g. ``"spatial gate"`` or ``"activation after SE"``.
        map (torch.Tensor): Map of shape (B, H, W) at the block's feature-map resolution, float32 on the CPU.
        mix (float | None): The block's ``identity_mix`` (``out = x + mix * (block(x) - x)``), None without one.
    """

    layer: int | None
    name: str
    source: str
    map: torch.Tensor
    mix: float | None = None

    @property
    def title(self) -> str:
        """Panel title: layer index, block, map source and the block's identity mix."""
        where = "layer ?" if self.layer is None else f"layer {self.layer}"
        mix = "no identity mix" if self.mix is None else f"identity_mix {self.mix:+.4f}"
        return f"{where}: {self.name}\n{self.source}\n{mix}"


def block_attention_map(block: nn.Module, x: torch.Tensor, output: torch.Tensor) -> tuple[torch.Tensor, str]:
    """Derive one spatial map per image from an attention block's input and output.

    Args:
        block (nn.Module): A registered channel-preserving block; its ``attention_map(x, output)`` method gives the
            map, else (channel gates) the channel mean of ``|output|``.
        x (torch.Tensor): The block's input of shape (B, C, H, W).
        output (torch.Tensor): The block's output of shape (B, C, H, W), used by the channel-only gates.

    Returns:
        map (torch.Tensor): Map of shape (B, H, W).
        source (str): What the map is, for the panel title.

    Raises:
        TypeError: If ``block`` is not an attention block of yolo_attn.
    """
    classes = attention_block_classes()
    if not isinstance(block, classes):
        raise TypeError(
            f"{type(block).__name__} is not a yolo_attn attention block; expected a registered block, one of "
            f"{', '.join(c.__name__ for c in classes)}"
        )
    with torch.no_grad():
        own = getattr(block, "attention_map", None)
        if callable(own):
            return own(x, output)
        return output.abs().mean(1), f"activation after {type(block).__name__} (channel mean |output|)"


def find_attention_blocks(model: nn.Module) -> list[AttentionBlock]:
    """Find every attention block in a model, in module order, each with the index of the layer holding it.

    A block inside another block (CBAM's gates) is not listed on its own; C2f-like blocks (`CA_C2f`, `CA_C3k2`) are
    searched and each CoordAtt inside them is listed with the index of the C2f-like layer.

    Args:
        model (nn.Module): A model, e.g. an Ultralytics ``DetectionModel`` whose layers carry the index ``i``.

    Returns:
        (list[AttentionBlock]): The blocks found, possibly empty.
    """
    found: list[AttentionBlock] = []
    attention_classes = attention_block_classes()

    def visit(module: nn.Module, layer: int | None, owner: str, path: str) -> None:
        for child_name, child in module.named_children():
            child_layer, child_owner, child_path = layer, owner, f"{path}.{child_name}" if path else child_name
            if isinstance(getattr(child, "i", None), int):  # an Ultralytics layer: positions restart from it
                child_layer, child_path = child.i, ""
                first = child[0] if isinstance(child, nn.Sequential) and len(child) else child  # n > 1 repeats
                child_owner = type(first).__name__
            if isinstance(child, attention_classes):
                kind = type(child).__name__
                if child_owner in {"", kind}:  # the block is the layer (or one of its repeats)
                    name = f"{kind} ({child_path})" if child_path else kind
                else:
                    name = f"{child_owner} > {kind} ({child_path})" if child_path else f"{child_owner} > {kind}"
                found.append(AttentionBlock(child, child_layer, name))
            else:
                visit(child, child_layer, child_owner, child_path)

    visit(model, None, "", "")
    return found


def capture_attention_maps(model: nn.Module, images: torch.Tensor) -> list[AttentionMap]:
    """Run the model once and record the map of every attention block.

    Args:
        model (nn.Module): The model, in the mode it should run in (usually ``eval()``).
        images (torch.Tensor): Preprocessed images of shape (B, 3, H, W), on the model's device and dtype.

    Returns:
        (list[AttentionMap]): One map per block in `find_attention_blocks` order (a block run twice keeps its last).
    """
    blocks = find_attention_blocks(model)
    captured: dict[int, tuple[torch.Tensor, str]] = {}

    def record(index: int):
        def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            captured[index] = block_attention_map(module, inputs[0], output)

        return hook

    handles = [block.module.register_forward_hook(record(k)) for k, block in enumerate(blocks)]
    try:
        with torch.no_grad():
            model(images)
    finally:
        for handle in handles:
            handle.remove()
    return [
        AttentionMap(block.layer, block.name, captured[k][1], captured[k][0].detach().float().cpu(), _mix(block.module))
        for k, block in enumerate(blocks)
        if k in captured
    ]


def _mix(block: nn.Module) -> float | None:
    """Return a block's identity mix as a number, or None when it has none (built from scratch, or residual)."""
    mix = getattr(block, "identity_mix", None)
    return None if mix is None else float(mix.detach())


def image_files(source: str | Path) -> list[Path]:
    """List the image files of a source, an image file or a folder of images (not searched recursively).

    Args:
        source (str | Path): An image file, or a folder whose files with an Ultralytics image suffix are taken, sorted.

    Returns:
        (list[Path]): Image paths.

    Raises:
        FileNotFoundError: If ``source`` does not exist or a folder holds no image.
    """
    from ultralytics.data.utils import IMG_FORMATS

    source = Path(source)
    if source.is_file():
        return [source]
    if source.is_dir():
        files = sorted(p for p in source.iterdir() if p.is_file() and p.suffix[1:].lower() in IMG_FORMATS)
        if files:
            return files
        raise FileNotFoundError(f"no image files ({', '.join(sorted(IMG_FORMATS))}) in folder {source}")
    raise FileNotFoundError(f"image source {source} does not exist; expected an image file or a folder of images")


def draw_overlay(ax: Any, fig: Any, image: np.ndarray, values: torch.Tensor, title: str, fontsize: int = 8) -> None:
    """Draw a map upsampled over an image with its colour bar; a flat map gets a uniform tint and its value instead.

    Args:
        ax (Any): Matplotlib axes to draw in.
        fig (Any): Its figure (for the colour bar).
        image (np.ndarray): RGB image of shape (H, W, 3).
        values (torch.Tensor): Map of shape (h, w), bilinearly upsampled to (H, W).
        title (str): Panel title; its first line gets " (flat at v)" for a flat map. Lines are wrapped.
        fontsize (int): Title font size.
    """
    upsampled = F.interpolate(values[None, None].float(), size=image.shape[:2], mode="bilinear", align_corners=False)
    grid = upsampled[0, 0].numpy()
    low, high = float(grid.min()), float(grid.max())
    flat = high - low <= FLAT_TOLERANCE * max(abs(low), abs(high))
    ax.imshow(image)
    lines = title.splitlines() or [""]
    if flat:  # e.g. a fresh, zero-initialised gate: a uniform mid-scale tint, the value in the title
        ax.imshow(grid, cmap="jet", alpha=OVERLAY_ALPHA, vmin=low - 1, vmax=low + 1)
        lines[0] += f" (flat at {low:.3g})"
    else:
        overlay = ax.imshow(grid, cmap="jet", alpha=OVERLAY_ALPHA, vmin=low, vmax=high)
        fig.colorbar(overlay, ax=ax, fraction=0.046, pad=0.02)
    ax.set_title("\n".join(textwrap.fill(line, TITLE_WIDTH) for line in lines), fontsize=fontsize)


def plot_attention_grid(image: np.ndarray, maps: list[AttentionMap], path: Path, title: str = "") -> Path:
    """Save a grid of the image followed by each map overlaid on it, upsampled to the image size.

    Each map keeps its own value range, shown by its colour bar. A flat map (e.g. a fresh zero-initialised gate, 0.5
    everywhere, or any map of an untrained model in eval mode, whose deep activations are tiny) gets a uniform tint and
    its value in the title instead.

    Args:
        image (np.ndarray): RGB image of shape (H, W, 3), the network input the maps were computed on.
        maps (list[AttentionMap]): Maps of one image each, i.e. with map shape (1, h, w).
        path (Path): PNG file to write.
        title (str): Figure title, e.g. the image name.

    Returns:
        (Path): ``path``.
    """
    from matplotlib.figure import Figure  # a bare Figure renders with Agg, whatever pyplot's backend is

    columns = min(PANEL_COLUMNS, len(maps) + 1)
    rows = math.ceil((len(maps) + 1) / columns)
    fig = Figure(figsize=(4 * columns, 4 * rows), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for ax in axes:
        ax.axis("off")
    axes[0].imshow(image)
    axes[0].set_title(f"input {image.shape[1]}x{image.shape[0]} (letterboxed)", fontsize=8)
    for ax, attention in zip(axes[1 : len(maps) + 1], maps, strict=True):
        h, w = attention.map.shape[-2:]
        draw_overlay(ax, fig, image, attention.map[0], f"{attention.title}\nmap {w}x{h}")
    if title:
        fig.suptitle(title, fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


def attention_maps(
    weights: str | Path | nn.Module,
    source: str | Path,
    imgsz: int = 640,
    out: Path | None = None,
    device: str = "cpu",
) -> list[Path]:
    """Write one PNG grid per image: the letterboxed image, then the map of every attention block overlaid on it.

    Images are letterboxed to a square ``imgsz`` with Ultralytics' ``LetterBox`` (grey padding, aspect kept), so the
    maps of all strides line up with the picture. The model runs in eval mode on ``device`` (a module passed in is
    moved there and put back in its previous train/eval mode afterwards).

    Args:
        weights (str | Path | nn.Module): ``.pt`` checkpoint, model YAML (untrained), ``YOLO`` object or model.
        source (str | Path): An image file or a folder of images.
        imgsz (int): Letterbox side; rounded up to a multiple of the model's largest stride.
        out (Path | None): Output folder; None for a new ``runs/visualize/exp*`` under the working directory.
        device (str): Torch device, e.g. ``"cpu"``, ``"0"`` or ``"cuda:0"``.

    Returns:
        (list[Path]): The PNG files, one per image, named ``<image stem>_attention.png``.

    Raises:
        ValueError: If the model holds no yolo_attn attention block.
        FileNotFoundError: If ``source`` holds no readable image.

    Examples:
        >>> from yolo_attn.visualize import attention_maps
        >>> pngs = attention_maps("yolov8n-cbam.yaml", "images/", imgsz=320)
    """
    from ultralytics.utils.checks import check_imgsz
    from ultralytics.utils.files import increment_path
    from ultralytics.utils.torch_utils import select_device

    model = load_model(weights)
    blocks = find_attention_blocks(model)
    if not blocks:
        raise ValueError(
            f"{type(model).__name__} has no yolo_attn attention block to visualise; "
            f"expected one of {', '.join(b.__name__ for b in attention_block_classes())} (or a block that holds them)"
        )
    files = image_files(source)
    stride = int(getattr(model, "stride", torch.tensor([32])).max())
    imgsz = check_imgsz(imgsz, stride=stride)
    out = Path(out) if out is not None else increment_path(Path("runs") / "visualize" / "exp", mkdir=True)
    torch_device = select_device(device, verbose=False)
    dtype = next(model.parameters()).dtype
    was_training = model.training
    model.to(torch_device).eval()
    pngs = []
    try:
        for file in files:
            image, tensor = letterbox_image(file, imgsz, stride)
            maps = capture_attention_maps(model, tensor.to(torch_device, dtype))
            pngs.append(plot_attention_grid(image, maps, out / f"{file.stem}_attention.png", title=file.name))
    finally:
        model.train(was_training)
    LOGGER.info(f"Attention maps of {len(blocks)} blocks for {len(pngs)} image(s) at imgsz={imgsz} saved to {out}")
    return pngs
