"""Gather-Excite (Hu, Shen, Albanie, Sun, Vedaldi, NeurIPS 2018), after timm's ``GatherExcite``."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from yolo_attn.modules.arg_checks import BlockArgumentError, check_bool, check_channels, check_positive_int
from yolo_attn.modules.fusion import fold_batchnorm
from yolo_attn.modules.identity_start import AttentionBlock
from yolo_attn.registry import register_block


def make_divisible(v: float, divisor: int) -> int:
    """Round ``v`` to the nearest multiple of ``divisor`` (at least ``divisor``), as timm's rounding with no limit."""
    return max(divisor, int(v + divisor / 2) // divisor * divisor)


class _ConvMlp(nn.Module):
    """The excite MLP: 1x1 conv C -> C_r, ReLU, 1x1 conv C_r -> C, both with bias (timm ``ConvMlp``'s keys)."""

    def __init__(self, c: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(c, hidden, 1)
        self.act = nn.ReLU()
        self.fc2 = nn.Conv2d(hidden, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) -> (B, C, h, w)."""
        return self.fc2(self.act(self.fc1(x)))


@register_block(aliases=("GE",))
class GatherExcite(AttentionBlock):
    """Gather-Excite: gather context over a spatial extent, excite (gate) every position with it.

    Paper: Hu, Shen, Albanie, Sun, Vedaldi, "Gather-Excite: Exploiting Feature Context in Convolutional Neural
    Networks", NeurIPS 2018. The official code (hujie-frank/GENet) is a partial Caffe release; this block follows timm's
    PyTorch ``timm.layers.gather_excite.GatherExcite``, which covers every extent with and without parameters.

    ``out = x * sigmoid(up(mlp(gather(x))))``:

    - ``gather``: parameter-free (GE-θ⁻, ``extra_params=False``): the global average (``extent=0``), or an average pool
      of kernel ``2e - 1``, stride ``e`` and padding ``e - 1`` that ignores the padding (``extent=e``); parametric
      (GE-θ, ``extra_params=True``): ``log2(e)`` depthwise 3x3 stride-2 convolutions, each followed by BatchNorm,
      with ReLU between them. ``add_maxpool`` (timm's experimental path) averages a max pool with the average pool.
    - ``mlp`` (``use_mlp=True``, GE-θ⁺): 1x1 conv C -> C_r, ReLU, 1x1 conv C_r -> C, both with bias,
      ``C_r = make_divisible(C * rd_ratio, rd_divisor)``; identity otherwise.
    - ``up``: nearest-neighbour resize of the gathered map back to H x W (none for the global extent).

    ``extent=0`` with ``extra_params=False`` and ``use_mlp=True`` is Squeeze-and-Excitation (the timm note).

    Shapes: (B, C, H, W) -> (B, C, H, W); the gate is (B, C, 1, 1) for the global extent, else (B, C, H, W).
    Every extent works at any H and W (the gathered map is ``ceil(H / e)`` x ``ceil(W / e)``, resized back), and the
    forward branches on the configuration only, never on a shape, so ONNX export keeps dynamic H and W.

    YAML: ``[-1, 1, GatherExcite, [extra_params, extent, use_mlp, rd_ratio, rd_divisor, add_maxpool]]`` (alias ``GE``),
    timm's order and defaults (``False, 0, True, 1/16, 1, False``), all optional; input channels are inferred. E.g.
    ``[-1, 1, GE, [True, 4]]`` is the parametric GE-θ with extent 4. Checked at build: ``extent`` is 0 or even
    (timm's assert), and with ``extra_params`` a power of two.

    State dict: timm's keys and shapes (``gather.conv{i}.weight`` (C, 1, 3, 3), ``gather.norm{i}.*``,
    ``mlp.fc1.*``, ``mlp.fc2.*``), so ``load_state_dict(timm_module.state_dict())`` works either way.
    Cost at yolov8n's P5 (C=256, C_r=16): 8,464 parameters (the SE MLP), plus 2,816 per stride-2 stage with
    ``extra_params``.

    Departures from timm:

    - ``extra_params=True`` with ``extent=0`` is refused at build time: timm's global parametric gather is a depthwise
      convolution as large as the feature map (its ``feat_size`` argument), which would fix the input size, and a
      detector's feature maps change with the image size and rectangular batches. Use ``extent`` 2, 4 or 8.
    - With ``extra_params``, ``extent`` must be a power of two; timm accepts any even extent and builds
      ``int(log2(e))`` stages, so its extent 6 silently acts as 4.
    - No ``feat_size``, ``rd_channels`` (a channel count), ``act_layer``, ``norm_layer`` or ``gate_layer`` argument:
      ReLU, BatchNorm and sigmoid, timm's defaults.
    - timm 1.0.31's constructor passes ``*dd`` (the strings ``"device"``, ``"dtype"``) positionally to ``ConvMlp`` and
      ``create_conv2d`` and fails unless ``use_mlp=False``; the layers here are what it builds without that bug.
    - Initialisation: the MLP's last layer starts at zero, so a fresh gate is exactly 0.5 (as `SE`); without an MLP
      the gate is ``sigmoid(gather(x))``, as in timm.

    Attributes:
        extent (int): Gather extent (0: global).
        add_maxpool (bool): Whether max pooling is averaged in (parameter-free gather only).
        gather (nn.Sequential | None): The parametric gather, or None.
        mlp (nn.Module): The excite MLP, or ``nn.Identity``.

    Examples:
        >>> ge = GatherExcite(64, True, 4)
        >>> ge(torch.randn(2, 64, 20, 18)).shape
        torch.Size([2, 64, 20, 18])
    """

    def __init__(
        self,
        c1: int,
        extra_params: bool = False,
        extent: int = 0,
        use_mlp: bool = True,
        rd_ratio: float = 1.0 / 16,
        rd_divisor: int = 1,
        add_maxpool: bool = False,
    ) -> None:
        """Initialize Gather-Excite.

        Args:
            c1 (int): Input (and output) channels C.
            extra_params (bool): Parametric gather (depthwise strided convolutions) instead of average pooling.
            extent (int): Gather extent: 0 for global, else an even number (a power of two with ``extra_params``).
            use_mlp (bool): Excite through the C -> C_r -> C MLP.
            rd_ratio (float): Hidden width of the MLP relative to C.
            rd_divisor (int): The hidden width is rounded to a multiple of this.
            add_maxpool (bool): Average a max pool with the average pool (parameter-free gather only).
        """
        super().__init__()
        name = "GatherExcite"
        check_channels(name, c1)
        check_bool(name, "extra_params", extra_params)
        check_bool(name, "use_mlp", use_mlp)
        self.add_maxpool = check_bool(name, "add_maxpool", add_maxpool)
        if not isinstance(extent, int) or isinstance(extent, bool) or extent < 0 or extent % 2:
            raise BlockArgumentError(f"{name}: extent must be 0 (global) or an even positive integer, got {extent!r}")
        self.extent = extent
        if extra_params:
            if extent == 0:
                raise BlockArgumentError(
                    f"{name}: extra_params=True with extent=0 needs a depthwise convolution as large as the feature "
                    f"map (timm's feat_size), which fixes the input size; a detector's feature maps change with the "
                    f"image size. Use extent 2, 4 or 8 for the parametric gather, or extra_params=False"
                )
            if extent & (extent - 1):
                raise BlockArgumentError(
                    f"{name}: with extra_params=True, extent must be a power of two (one stride-2 convolution per "
                    f"doubling), got {extent}"
                )
            self.gather = nn.Sequential()
            stages = int(math.log2(extent))
            for i in range(1, stages + 1):
                self.gather.add_module(f"conv{i}", nn.Conv2d(c1, c1, 3, 2, 1, groups=c1, bias=False))
                self.gather.add_module(f"norm{i}", nn.BatchNorm2d(c1))
                if i != stages:
                    self.gather.add_module(f"act{i}", nn.ReLU())
        else:
            self.gather = None
        if use_mlp:
            if not isinstance(rd_ratio, (int, float)) or isinstance(rd_ratio, bool) or rd_ratio <= 0:
                raise BlockArgumentError(f"{name}: rd_ratio (MLP width / C) must be positive, got {rd_ratio!r}")
            check_positive_int(name, "rd_divisor", rd_divisor, "rounding of the MLP width")
            self.mlp = _ConvMlp(c1, make_divisible(c1 * rd_ratio, rd_divisor))
            nn.init.zeros_(self.mlp.fc2.weight)
            nn.init.zeros_(self.mlp.fc2.bias)
        else:
            self.mlp = nn.Identity()

    def _gathered(self, x: torch.Tensor) -> torch.Tensor:
        if self.gather is not None:
            return self.gather(x)
        if self.extent == 0:
            g = x.mean((2, 3), keepdim=True)
            return 0.5 * g + 0.5 * x.amax((2, 3), keepdim=True) if self.add_maxpool else g
        k, s = 2 * self.extent - 1, self.extent
        g = F.avg_pool2d(x, k, s, k // 2, count_include_pad=False)
        return 0.5 * g + 0.5 * F.max_pool2d(x, k, s, k // 2) if self.add_maxpool else g

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """Compute the gate.

        Args:
            x (torch.Tensor): Input of shape (B, C, H, W).

        Returns:
            (torch.Tensor): Gate in (0, 1), (B, C, 1, 1) for the global extent, else (B, C, H, W).
        """
        g = self.mlp(self._gathered(x))
        if self.extent:
            g = F.interpolate(g, size=x.shape[-2:], mode="nearest")
        return g.sigmoid()

    def forward_plain(self, x: torch.Tensor) -> torch.Tensor:
        """Plain formulation (benchmarks): gather, MLP, resize, sigmoid, scale; (B, C, H, W) -> same."""
        return x * self.gate(x)

    def fuse(self) -> GatherExcite:
        """Fold the parametric gather's BatchNorms (running statistics) into its convolutions. Idempotent.

        Returns:
            (GatherExcite): This block.
        """
        if self.gather is not None:
            for name, module in list(self.gather.named_children()):
                if isinstance(module, nn.BatchNorm2d):
                    conv_name = "conv" + name.removeprefix("norm")
                    setattr(self.gather, conv_name, fold_batchnorm(getattr(self.gather, conv_name), module))
                    setattr(self.gather, name, nn.Identity())
        return self

    def attention_map(self, x: torch.Tensor, output: torch.Tensor) -> tuple[torch.Tensor, str]:
        """Return the gate's channel mean (B, H, W) for a local extent; the channel response for the global one."""
        if self.extent == 0:
            return super().attention_map(x, output)
        return self.gate(x).mean(1), f"gather-excite gate, extent {self.extent} (channel mean)"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Gate ``x`` by its gathered context.

        Args:
            x (torch.Tensor): Input of shape (B, C, H, W).

        Returns:
            (torch.Tensor): Output of shape (B, C, H, W).
        """
        return self.gated(x, self.gate(x))
