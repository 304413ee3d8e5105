"""Feature maps beside attention maps, and Grad-CAM for classifiers: what the layers of a YOLO model respond to.

For the chosen layers (Ultralytics layer indices, as in the layer table ``model.info()`` prints), one PNG per image
shows a row per layer with its strongest channels (largest mean ``|activation|`` over the image), then a last row
with the letterboxed input, the map of every yolo_attn attention block (see `yolo_attn.visualize.overlay`) and, for a
classification model, a Grad-CAM heat map of the predicted class.

Grad-CAM (Selvaraju et al., ICCV 2017) is taken at the input of the ``Classify`` head, i.e. the output of the last
backbone stage (with the attention YAMLs, the last stage's attention block): channel weights are the spatial means of
the gradient of the predicted class's logit, and the map is ``ReLU(sum_c weight_c * activation_c)``. It shows where
the evidence for the class sits; the attention maps show where the blocks gate. Both are drawn over the same input.

Images are letterboxed to a square, as in `yolo_attn.visualize.overlay` (for classifiers Ultralytics itself resizes
and centre-crops; the letterbox keeps the whole image in view).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import nn
from ultralytics.utils import LOGGER

from yolo_attn.utils.models import load_model
from yolo_attn.visualize.overlay import (
    AttentionMap,
    capture_attention_maps,
    draw_overlay,
    image_files,
    letterbox_image,
)

TOP_CHANNELS = 8  # channels shown per layer


def _layers(model: nn.Module) -> nn.Sequential:
    """Return the Ultralytics layer list of a model (``model.model``)."""
    layers = getattr(model, "model", None)
    if not isinstance(layers, nn.Sequential):
        raise TypeError(f"{type(model).__name__} is not an Ultralytics model with a `model` layer list")
    return layers


def is_classifier(model: nn.Module) -> bool:
    """Return True when the model's last layer is Ultralytics' ``Classify`` head."""
    from ultralytics.nn.modules import Classify

    return isinstance(_layers(model)[-1], Classify)


def head_input_layer(model: nn.Module) -> int:
    """Return the index of the layer that feeds the head (the last layer's ``from``, made absolute)."""
    seq = _layers(model)
    f = seq[-1].f
    f = f if isinstance(f, int) else f[-1]
    return len(seq) - 1 + f if f < 0 else f


def parse_layers(text: str | list[int], n_layers: int) -> list[int]:
    """Parse ``"2,4,6"`` (or a list) into layer indices, checking each against the model.

    Args:
        text (str | list[int]): Comma-separated indices or a list of ints; negative indices count from the end.
        n_layers (int): Number of layers of the model, the head included.

    Returns:
        (list[int]): Non-negative indices, in the order given, without duplicates.

    Raises:
        ValueError: If an entry is not an integer or is out of range; the head (last layer) is not a feature map.
    """
    items = text if isinstance(text, list) else [t.strip() for t in str(text).split(",") if t.strip()]
    layers: list[int] = []
    for item in items:
        try:
            index = int(item)
        except (TypeError, ValueError):
            raise ValueError(f"--features: {item!r} is not a layer index; expected e.g. 2,4,6") from None
        index = index + n_layers if index < 0 else index
        if not 0 <= index < n_layers - 1:
            raise ValueError(
                f"--features: layer {item} is out of range; expected 0..{n_layers - 2} "
                f"(the model has {n_layers} layers and the last, the head, outputs no feature map)"
            )
        if index not in layers:
            layers.append(index)
    if not layers:
        raise ValueError("--features: expected at least one layer index, e.g. 2,4,6")
    return layers


def capture_layer_outputs(model: nn.Module, images: torch.Tensor, layers: list[int]) -> dict[int, torch.Tensor]:
    """Run the model once and return the output of each chosen layer.

    Args:
        model (nn.Module): An Ultralytics model, in the mode it should run in.
        images (torch.Tensor): Input of shape (B, 3, H, W) on the model's device and dtype.
        layers (list[int]): Layer indices.

    Returns:
        (dict[int, torch.Tensor]): Layer -> output of shape (B, C, h, w), float32 on the CPU.

    Raises:
        ValueError: If a chosen layer's output is not a 4-D feature map.
    """
    seq = _layers(model)
    captured: dict[int, torch.Tensor] = {}

    def record(index: int):
        def hook(module: nn.Module, inputs: tuple, output: object) -> None:
            if not isinstance(output, torch.Tensor) or output.ndim != 4:
                raise ValueError(f"layer {index} ({type(module).__name__}) does not output a (B, C, H, W) feature map")
            captured[index] = output.detach().float().cpu()

        return hook

    handles = [seq[i].register_forward_hook(record(i)) for i in layers]
    try:
        with torch.no_grad():
            model(images)
    finally:
        for handle in handles:
            handle.remove()
    return captured


def strongest_channels(feature_map: torch.Tensor, k: int = TOP_CHANNELS) -> list[int]:
    """Return the indices of the ``k`` channels with the largest mean ``|activation|``, strongest first.

    Args:
        feature_map (torch.Tensor): Shape (C, H, W).
        k (int): How many channels.

    Returns:
        (list[int]): Channel indices.
    """
    energy = feature_map.abs().mean((1, 2))
    return energy.topk(min(k, len(energy))).indices.tolist()


def grad_cam(model: nn.Module, images: torch.Tensor, layer: int | None = None) -> tuple[torch.Tensor, int, float]:
    """Grad-CAM of a classifier's predicted class for one image.

    Args:
        model (nn.Module): An Ultralytics ``ClassificationModel`` in eval mode (its head returns (probs, logits)).
        images (torch.Tensor): Input of shape (1, 3, H, W).
        layer (int | None): Layer whose output is explained; None takes the input of the ``Classify`` head (the
            layer its ``from`` points at).

    Returns:
        cam (torch.Tensor): Map of shape (h, w), >= 0, float32 on the CPU (all zeros when no position supports the
            class).
        class_index (int): The predicted class.
        probability (float): Its softmax probability.
    """
    seq = _layers(model)
    layer = head_input_layer(model) if layer is None else layer
    saved: dict[str, torch.Tensor] = {}

    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        saved["activation"] = output
        output.register_hook(lambda grad: saved.__setitem__("gradient", grad))

    handle = seq[layer].register_forward_hook(hook)
    try:
        with torch.enable_grad():
            x = images.detach().clone().requires_grad_(True)  # a graph even when the weights are frozen
            output = model(x)
            probs, logits = output if isinstance(output, (tuple, list)) else (output.softmax(1), output)
            class_index = int(logits[0].argmax())
            logits[0, class_index].backward()
    finally:
        handle.remove()
    activation, gradient = saved["activation"][0].detach(), saved["gradient"][0]
    weights = gradient.mean((1, 2), keepdim=True)
    cam = torch.relu((weights * activation).sum(0))
    return cam.float().cpu(), class_index, float(probs[0, class_index].detach())


def plot_feature_grid(
    image: np.ndarray,
    features: dict[int, torch.Tensor],
    layer_names: dict[int, str],
    maps: list[AttentionMap],
    cam: tuple[torch.Tensor, str] | None,
    path: Path,
    title: str = "",
    top_k: int = TOP_CHANNELS,
) -> Path:
    """Save one figure: a row of strongest channels per layer, then the input, attention maps and Grad-CAM.

    Args:
        image (np.ndarray): RGB input of shape (H, W, 3).
        features (dict[int, torch.Tensor]): Layer -> its output for this image, shape (1, C, h, w).
        layer_names (dict[int, str]): Layer -> module name for the row label.
        maps (list[AttentionMap]): Attention maps of this image (map shape (1, h, w)); may be empty.
        cam (tuple[torch.Tensor, str] | None): Grad-CAM map (h, w) and its panel title, or None.
        path (Path): PNG file to write.
        title (str): Figure title.
        top_k (int): Channels per layer row.

    Returns:
        (Path): ``path``.
    """
    from matplotlib.figure import Figure

    last_row = 1 + len(maps) + (cam is not None)
    columns = max(top_k, min(last_row, top_k))
    rows = len(features) + math.ceil(last_row / columns)
    fig = Figure(figsize=(2.2 * columns, 2.4 * rows), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for r, (layer, fmap) in enumerate(features.items()):
        fmap = fmap[0]
        for c, channel in enumerate(strongest_channels(fmap, top_k)):
            ax = axes[r, c]
            ax.imshow(fmap[channel].numpy(), cmap="viridis")
            label = f"layer {layer} {layer_names[layer]}\n" if c == 0 else ""
            ax.set_title(f"{label}ch {channel} (mean |a| {fmap[channel].abs().mean():.3g})", fontsize=7)
        axes[r, 0].text(
            0, -0.02, f"{tuple(fmap.shape)}", transform=axes[r, 0].transAxes, fontsize=6, va="top", color="grey"
        )
    panels = list(axes[len(features) :].ravel())
    panels[0].imshow(image)
    panels[0].set_title(f"input {image.shape[1]}x{image.shape[0]} (letterboxed)", fontsize=7)
    for ax, attention in zip(panels[1:], maps, strict=False):
        draw_overlay(ax, fig, image, attention.map[0], attention.title, fontsize=7)
    if cam is not None:
        draw_overlay(panels[1 + len(maps)], fig, image, cam[0], cam[1], fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    return path


def feature_maps(
    weights: str | Path | nn.Module,
    source: str | Path,
    layers: str | list[int],
    imgsz: int | None = None,
    out: Path | None = None,
    device: str = "cpu",
    top_k: int = TOP_CHANNELS,
) -> list[Path]:
    """Write one PNG per image: the strongest channels of each chosen layer, the attention maps, and Grad-CAM.

    Works for detection and classification models, with or without attention blocks (a baseline gets no attention
    panels, so a plain CNN and its attention twin can be set side by side). The model runs in eval mode on
    ``device`` and is put back in its previous mode afterwards.

    Args:
        weights (str | Path | nn.Module): ``.pt`` checkpoint, model YAML (untrained), ``YOLO`` object or model.
        source (str | Path): An image file or a folder of images.
        layers (str | list[int]): Layer indices, e.g. ``"2,4,6"``.
        imgsz (int | None): Letterbox side (rounded up to a multiple of 32); None: 224 for classifiers, else 640.
        out (Path | None): Output folder; None for a new ``runs/visualize/exp*``.
        device (str): Torch device.
        top_k (int): Channels shown per layer.

    Returns:
        (list[Path]): The PNG files, ``<image stem>_features.png``.

    Examples:
        >>> pngs = feature_maps("runs/classify/train/weights/best.pt", "images/", "2,4,6")
    """
    from ultralytics.utils.checks import check_imgsz
    from ultralytics.utils.files import increment_path
    from ultralytics.utils.torch_utils import select_device

    model = load_model(weights)
    seq = _layers(model)
    chosen = parse_layers(layers, len(seq))
    classifier = is_classifier(model)
    files = image_files(source)
    stride = max(int(getattr(model, "stride", torch.tensor([32])).max()), 32)
    imgsz = check_imgsz(imgsz or (224 if classifier else 640), stride=stride)
    out = Path(out) if out is not None else increment_path(Path("runs") / "visualize" / "exp", mkdir=True)
    torch_device = select_device(device, verbose=False)
    dtype = next(model.parameters()).dtype
    names = {i: type(seq[i]).__name__ for i in chosen}
    class_names = getattr(model, "names", None) or {}
    was_training = model.training
    model.to(torch_device).eval()
    pngs = []
    try:
        for file in files:
            image, tensor = letterbox_image(file, imgsz, stride)
            tensor = tensor.to(torch_device, dtype)
            features = capture_layer_outputs(model, tensor, chosen)
            maps = capture_attention_maps(model, tensor)
            cam = None
            if classifier:
                heat, index, probability = grad_cam(model, tensor)
                source_layer = head_input_layer(model)
                label = class_names.get(index, str(index)) if isinstance(class_names, dict) else str(index)
                cam = (heat, f"Grad-CAM, layer {source_layer} (input of Classify)\nclass {label} (p={probability:.2f})")
            path = out / f"{file.stem}_features.png"
            pngs.append(plot_feature_grid(image, features, names, maps, cam, path, title=file.name, top_k=top_k))
    finally:
        model.train(was_training)
    LOGGER.info(f"Feature maps of layers {chosen} for {len(pngs)} image(s) at imgsz={imgsz} saved to {out}")
    return pngs
