"""D-LKA: deformable large kernel attention (Azad et al., WACV 2024), on torchvision's deformable convolution."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torchvision.ops import DeformConv2d, deform_conv2d

from yolo_attn.modules.arg_checks import check_channels
from yolo_attn.modules.identity_start import AttentionBlock
from yolo_attn.registry import register_block

#: The ONNX opset that has ``DeformConv`` (the first one): the block exports at it or later.
DEFORM_CONV_OPSET = 19


class TorchvisionDeformConv2d(DeformConv2d):
    """``torchvision.ops.DeformConv2d`` itself, declared in this module so that weights-only loading allow-lists it.

    ``ULTRALYTICS_SAFE_LOAD=1`` checkpoints may reference only allow-listed classes; yolo_attn allow-lists the classes
    defined in each block's module, which torchvision's own class is not. Same parameters, keys and initialisation.
    """


class DeformConv(nn.Module):
    """The reference's deformable convolution wrapper: offsets from a plain convolution, then a depthwise DCN (v1).

    Reference: xmindflow/deformableLKA, ``2D/deformable_LKA/deformable_LKA.py``, class ``DeformConv``. ``offset_net``
    is a ``Conv2d`` C -> 2 kh kw with the deformable convolution's kernel, padding, stride and dilation (and bias);
    ``deform_conv`` is ``torchvision.ops.DeformConv2d`` C -> C with ``groups`` and no bias, no modulation mask.

    The offset predictor and the deformable convolution run in float32 whatever the autocast dtype or the weights'
    dtype: the offsets are sampling positions, pixel coordinates with fractions (float16 keeps 3 fractional bits at
    100 px, bfloat16 none at 256), and a random-init offset net's offsets of tens of pixels in bfloat16 change the
    output by its own scale. The reference's unused ``bias`` argument is not taken.

    NaN offsets (from a NaN or inf in ``x``: a diverging run, or an uninitialised FLOP-count input) are set to 0 before
    sampling: torchvision's CPU kernel turns a NaN position into an index far outside the map and the process dies of
    a segmentation fault. With the guard the NaN still reaches the output (the sample at offset 0 is the NaN input),
    so a diverging run ends as Ultralytics' NaN checks expect. Finite offsets are untouched.

    Attributes:
        offset_net (nn.Conv2d): Offset predictor C -> 2 kh kw.
        deform_conv (TorchvisionDeformConv2d): The deformable convolution C -> C, without bias (torchvision's class).
    """

    def __init__(
        self,
        in_channels: int,
        groups: int,
        kernel_size: tuple[int, int] = (3, 3),
        padding: int = 1,
        stride: int = 1,
        dilation: int = 1,
    ) -> None:
        """Initialize the wrapper with the reference's arguments (``bias`` aside, unused there).

        Args:
            in_channels (int): Input (and output) channels.
            groups (int): Groups of the deformable convolution (``in_channels``: depthwise).
            kernel_size (tuple[int, int]): Kernel (kh, kw).
            padding (int): Padding of both convolutions.
            stride (int): Stride of both convolutions.
            dilation (int): Dilation of both convolutions.
        """
        super().__init__()
        self.offset_net = nn.Conv2d(
            in_channels,
            2 * kernel_size[0] * kernel_size[1],
            kernel_size=kernel_size,
            padding=padding,
            stride=stride,
            dilation=dilation,
            bias=True,
        )
        self.deform_conv = TorchvisionDeformConv2d(
            in_channels,
            in_channels,
            kernel_size=kernel_size,
            padding=padding,
            groups=groups,
            stride=stride,
            dilation=dilation,
            bias=False,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Sample ``x`` at the learned offsets and convolve: (B, C, H, W) -> (B, C, H', W')."""
        o, d = self.offset_net, self.deform_conv
        with torch.autocast(x.device.type, enabled=False):  # the offsets are sampling positions: float32
            x32 = x.float()
            bias = None if o.bias is None else o.bias.float()
            offsets = F.conv2d(x32, o.weight.float(), bias, o.stride, o.padding, o.dilation, o.groups)
            offsets = torch.where(offsets.isnan(), 0.0, offsets)  # a NaN position crashes torchvision's kernel
            out = deform_conv2d(
                x32,
                offsets,
                d.weight.float(),
                None,
                stride=d.stride,
                padding=d.padding,
                dilation=d.dilation,
            )
        return out.to(x.dtype)


@register_block(aliases=("deformable_LKA",))
class DeformableLKA(AttentionBlock):
    """Deformable large kernel attention: VAN's large-kernel attention with both depthwise convolutions deformable.

    Paper: Azad, Niggemeier, Huttemann, Kazerouni, Khodapanah Aghdam, Velichko, Bagci, Merhof, "Beyond Self-Attention:
    Deformable Large Kernel Attention for Medical Image Segmentation", WACV 2024. Reference code: xmindflow/
    deformableLKA, ``2D/deformable_LKA/deformable_LKA.py``, class ``deformable_LKA`` and the ``DeformConv`` wrapper it
    uses (commit d2d2992), which this block follows layer for layer (`DeformConv` here restates the wrapper).

    ::

        attn = conv1(conv_spatial(conv0(x)))
        out  = x * attn

    ``conv0``: deformable depthwise 5 x 5 (padding 2); ``conv_spatial``: deformable depthwise 7 x 7, dilation 3
    (padding 9, a 19 x 19 receptive field); each predicts its 2 k^2 offsets per position with a plain ``Conv2d``
    C -> 2 k^2 of the same kernel, padding and dilation. ``conv1``: 1x1 conv C -> C with bias. ``attn`` is an
    unbounded multiplier (no sigmoid), as in the reference. Shapes: (B, C, H, W) -> (B, C, H, W), any H x W from
    1 x 1 (every convolution keeps the size). Parameters: ``C^2 + 6,127 C + 148``, 1,634,196 at C = 256, most of
    them in the offset predictors (1,229,410 in conv_spatial's, a 7 x 7 conv C -> 98).

    YAML: ``[-1, 1, DeformableLKA, []]`` (alias ``deformable_LKA``), no args; input channels are inferred.

    State dict: the reference's keys and shapes (``conv0.offset_net``, ``conv0.deform_conv.weight``,
    ``conv_spatial.offset_net``, ``conv_spatial.deform_conv.weight``, ``conv1``), so the authors' ``deformable_LKA(C)``
    state dict loads strictly both ways.

    ONNX: torchvision has no ONNX export of ``deform_conv2d``; this module registers one (`deform_conv2d_symbolic`)
    that maps it to ONNX ``DeformConv``, which exists from opset 19 (``onnx_min_opset``); onnxruntime runs it. At an
    older opset the export stops with an error that names opset 19. Ultralytics' default ONNX opset is 18 (its
    ``best_onnx_opset`` for torch >= 2.4), so export a model with this block with ``opset=19``:
    ``model.export(format="onnx", opset=19)``.

    Departures from the reference:
        - The offset predictors and the deformable convolutions run in float32 under autocast and in a half-precision
          model (AMP-safe sampling positions); the result is cast back to the input's dtype.
        - The reference's ``u = x.clone()`` is dropped (nothing is in place: same numbers).
        - ``deform_conv`` is `TorchvisionDeformConv2d`, torchvision's class subclassed unchanged in this module, so
          that ``ULTRALYTICS_SAFE_LOAD`` (weights-only) checkpoint loading allow-lists it; same keys and init.
        - Initialisation as the reference (PyTorch's defaults, random offsets); a new block starts as the identity
          through the identity mix instead.

    Identity start: the identity mix of `AttentionBlock`, blended on the multiplier ``attn``.

    Attributes:
        conv0 (DeformConv): Deformable depthwise 5 x 5.
        conv_spatial (DeformConv): Deformable depthwise 7 x 7, dilation 3.
        conv1 (nn.Conv2d): 1x1 conv C -> C.
        onnx_min_opset (int): Class attribute: the lowest ONNX opset the block exports at (19).

    Examples:
        >>> lka = DeformableLKA(32)
        >>> lka(torch.randn(2, 32, 15, 20)).shape
        torch.Size([2, 32, 15, 20])
    """

    onnx_min_opset = DEFORM_CONV_OPSET

    def __init__(self, c1: int) -> None:
        """Initialize the deformable large kernel attention.

        Args:
            c1 (int): Input (and output) channels C, the reference's ``dim``.
        """
        super().__init__()
        check_channels("DeformableLKA", c1)
        self.conv0 = DeformConv(c1, kernel_size=(5, 5), padding=2, groups=c1)
        self.conv_spatial = DeformConv(c1, kernel_size=(7, 7), stride=1, padding=9, groups=c1, dilation=3)
        self.conv1 = nn.Conv2d(c1, c1, 1)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """The unbounded multiplier ``conv1(conv_spatial(conv0(x)))`` of shape (B, C, H, W)."""
        return self.conv1(self.conv_spatial(self.conv0(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Multiply ``x`` by its deformable large-kernel attention.

        Args:
            x (torch.Tensor): Input of shape (B, C, H, W).

        Returns:
            (torch.Tensor): Output of shape (B, C, H, W).
        """
        return self.gated(x, self.attention(x))

    def attention_map(self, x: torch.Tensor, output: torch.Tensor) -> tuple[torch.Tensor, str]:
        """Return the attention multiplying ``x``, averaged over channels (B, H, W), and what it is."""
        return self.attention(x).mean(1), "D-LKA attention (conv1 output), mean over channels"


def deform_conv2d_symbolic(g: Any, input: Any, weight: Any, offset: Any, mask: Any, bias: Any, *args: Any) -> Any:
    """ONNX symbolic of ``torchvision::deform_conv2d`` (TorchScript-based exporter): ONNX ``DeformConv``, opset 19.

    torchvision's argument order after the tensors: stride (h, w), padding (h, w), dilation (h, w), weight groups,
    offset groups, use_mask. ONNX ``DeformConv`` takes X, W, offset, B, mask with the same offset layout (a (dy, dx)
    pair per kernel tap, taps row-major).

    Args:
        g (Any): The exporter's graph context.
        input (Any): X, (B, C, H, W).
        weight (Any): W, (C_out, C / groups, kh, kw).
        offset (Any): Offsets, (B, 2 offset_groups kh kw, H', W').
        mask (Any): Modulation mask (used only when ``use_mask``).
        bias (Any): Bias (C_out,), zeros when the convolution has none.
        *args (Any): stride, padding, dilation (h, w each), groups, offset groups, use_mask.

    Returns:
        (Any): The ``DeformConv`` node's output.
    """
    from torch.onnx import symbolic_helper

    stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups, offset_groups = (
        symbolic_helper._maybe_get_const(a, "i") for a in args[:8]
    )
    use_mask = bool(symbolic_helper._maybe_get_const(args[8], "b"))
    inputs = [input, weight, offset, bias, *([mask] if use_mask else [])]
    return g.op(
        "DeformConv",
        *inputs,
        dilations_i=[dil_h, dil_w],
        group_i=groups,
        offset_group_i=offset_groups,
        pads_i=[pad_h, pad_w, pad_h, pad_w],
        strides_i=[stride_h, stride_w],
    )


def deform_conv2d_needs_opset_19(g: Any, *args: Any) -> Any:
    """ONNX symbolic of ``torchvision::deform_conv2d`` below opset 19: stop with an error that says what to do."""
    from torch.onnx.errors import OnnxExporterError

    raise OnnxExporterError(
        f"deformable convolution (torchvision::deform_conv2d, used by DeformableLKA) exports to ONNX DeformConv, "
        f"which needs opset {DEFORM_CONV_OPSET} or later; export with opset={DEFORM_CONV_OPSET} or later"
    )


def register_onnx_symbolics() -> None:
    """Register the ``deform_conv2d`` symbolics: `deform_conv2d_symbolic` from opset 19, the opset error below it."""
    torch.onnx.register_custom_op_symbolic("torchvision::deform_conv2d", deform_conv2d_needs_opset_19, 9)
    torch.onnx.register_custom_op_symbolic("torchvision::deform_conv2d", deform_conv2d_symbolic, DEFORM_CONV_OPSET)


register_onnx_symbolics()
