"""iRMB: the inverted residual mobile block of EMO (Zhang et al., ICCV 2023): windowed attention, depthwise conv."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from yolo_attn.modules.arg_checks import (
    BlockArgumentError,
    check_bool,
    check_channels,
    check_choice,
    check_positive_int,
)
from yolo_attn.modules.identity_start import AttentionBlock
from yolo_attn.registry import register_block

EPS = 1e-6  # the eps of every norm of EMO's ``get_norm``
NORMS = ("bn_2d", "ln_2d", "none")
ACTS = ("none", "relu", "relu6", "silu", "swish", "gelu", "mish", "hmish", "sigmoid", "tanh", "hsigmoid", "hswish")
ACTS += ("prelu",)


class LayerNorm2d(nn.Module):
    """EMO's ``LayerNorm2d``: a LayerNorm over the channels of each position of a (B, C, H, W) map.

    Attributes:
        norm (nn.LayerNorm): LayerNorm over C, eps 1e-6 (state-dict keys ``norm.weight``, ``norm.bias``).
    """

    def __init__(self, normalized_shape: int, eps: float = EPS) -> None:
        """Initialize the norm over ``normalized_shape`` channels."""
        super().__init__()
        self.norm = nn.LayerNorm(normalized_shape, eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise ``x`` (B, C, H, W) over C."""
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class HardMish(nn.Module):
    """Hard mish as timm's ``HardMish``: ``0.5 x clamp(x + 2, 0, 2)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply hard mish."""
        return 0.5 * x * (x + 2).clamp(0, 2)


def get_norm(norm_layer: str, dim: int) -> nn.Module:
    """The norm of EMO's ``get_norm(norm_layer)(dim)`` for the 2-D maps it can take (``bn_2d``, ``ln_2d``, ``none``)."""
    if norm_layer == "bn_2d":
        return nn.BatchNorm2d(dim, eps=EPS)
    return LayerNorm2d(dim) if norm_layer == "ln_2d" else nn.Identity()


def get_act(act_layer: str) -> nn.Module:
    """The activation of EMO's ``get_act(act_layer)`` (timm's activations as their torch equivalents)."""
    acts = {
        "relu": nn.ReLU,
        "relu6": nn.ReLU6,
        "silu": nn.SiLU,
        "swish": nn.SiLU,
        "gelu": nn.GELU,
        "mish": nn.Mish,
        "hmish": HardMish,
        "sigmoid": nn.Sigmoid,
        "tanh": nn.Tanh,
        "hsigmoid": nn.Hardsigmoid,
        "hswish": nn.Hardswish,
        "prelu": nn.PReLU,
    }
    return acts[act_layer]() if act_layer in acts else nn.Identity()


class ConvNormAct(nn.Module):
    """EMO's ``ConvNormAct`` (without its unused skip): convolution, norm, activation; padding ``ceil((k - 1) / 2)``.

    Attributes:
        conv (nn.Conv2d): The convolution, stride 1.
        norm (nn.Module): ``bn_2d``, ``ln_2d`` or none.
        act (nn.Module): The activation (identity for ``none``).
    """

    def __init__(
        self,
        dim_in: int,
        dim_out: int,
        kernel_size: int,
        groups: int = 1,
        bias: bool = False,
        norm_layer: str = "bn_2d",
        act_layer: str = "relu",
    ) -> None:
        """Initialize the convolution, its norm and its activation."""
        super().__init__()
        padding = math.ceil((kernel_size - 1) / 2)
        self.conv = nn.Conv2d(dim_in, dim_out, kernel_size, 1, padding, 1, groups, bias)
        self.norm = get_norm(norm_layer, dim_out)
        self.act = get_act(act_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``act(norm(conv(x)))``."""
        return self.act(self.norm(self.conv(x)))


class SqueezeExcite(nn.Module):
    """The EfficientNet ``SqueezeExcite`` (EMO's ``SE``): ``x * sigmoid(expand(act(reduce(mean_hw(x)))))``.

    Attributes:
        conv_reduce (nn.Conv2d): 1x1 C -> round(C * rd_ratio), with bias.
        act1 (nn.Module): The block's activation.
        conv_expand (nn.Conv2d): 1x1 back to C, with bias.
    """

    def __init__(self, in_chs: int, rd_ratio: float, act_layer: str) -> None:
        """Initialize the squeeze-excite gate of ``in_chs`` channels."""
        super().__init__()
        rd_channels = round(in_chs * rd_ratio)
        self.conv_reduce = nn.Conv2d(in_chs, rd_channels, 1, bias=True)
        self.act1 = get_act(act_layer)
        self.conv_expand = nn.Conv2d(rd_channels, in_chs, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Gate the channels of ``x``."""
        return x * self.conv_expand(self.act1(self.conv_reduce(x.mean((2, 3), keepdim=True)))).sigmoid()


def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Stochastic depth as timm's ``drop_path``: zero whole samples with probability ``p`` in training, rescale."""
    if p == 0.0 or not training:
        return x
    keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1 - p)
    return x * keep / (1 - p)


def _check_rate(name: str, value: Any) -> float:
    """Check a dropout-like rate in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise BlockArgumentError(f"iRMB: {name} must be a number in [0, 1), got {value!r} ({type(value).__name__})")
    return float(value)


@register_block
class iRMB(AttentionBlock):
    """Inverted Residual Mobile Block: windowed multi-head self-attention on the input, a depthwise conv, a projection.

    Paper: Zhang, Li, Wang, Wang, Wu, Tai, Wang, Wang, "Rethinking Mobile Block for Efficient Attention-based Models"
    (EMO), ICCV 2023. Reference code: zhangzjn/EMO, ``model/emo.py`` class ``iRMB`` with ``model/basic_modules.py``
    (``ConvNormAct``, ``LayerNorm2d``, ``get_norm``, ``get_act``), commit 703e0b7.

    With the defaults (``attn_s``, ``has_skip``, ``attn_pre=False``) and M = ``int(C * exp_ratio)``::

        n      = norm(x)                                           BN (bn_2d), LayerNorm over C (ln_2d) or none
        n      = n zero-padded to multiples of w (w = window_size), cut into (Hp/w) x (Wp/w) windows of w x w
                 positions each; window (i, j) takes rows i, i + Hp/w, ... and columns j, j + Wp/w, ...: a strided
                 grid across the whole map, not a contiguous tile (the reference's einops pattern)
        q, k   = qk(n) split into C/dim_head heads                  1x1 conv C -> 2C
        v      = v(n)                                               1x1 conv C -> M, then act
        a      = v @ softmax(q^T k / sqrt(dim_head))  per window and head, windows put back, padding cropped
        out    = x + proj(a + se(conv_local(a)))                    conv_local: k x k depthwise conv, BN, SiLU

    ``window_size <= 0`` makes the whole map one window. ``attn_pre`` applies ``v`` after the attention (to the
    attended input); ``attn_s=False`` drops the attention (then ``v`` is the 1x1 conv, or none with ``v_proj=False``).

    Shapes: (B, C, H, W) -> (B, C, H, W), any H, W >= 1. Parameters with the defaults at C=256: 265 472.

    YAML: ``[-1, 1, iRMB, [norm_in, has_skip, exp_ratio, norm_layer, act_layer, v_proj, dw_ks, stride, dilation,
    se_ratio, dim_head, window_size, attn_s, qkv_bias, attn_drop, drop, drop_path, v_group, attn_pre]]``, all optional
    (the reference's keywords and defaults, except ``dim_head=16``; a trailing mapping takes any by name, e.g.
    ``[{exp_ratio: 2.0, act_layer: silu}]``). Input channels are inferred, and the output has them (``dim_in =
    dim_out``), so the reference's ``dim_in, dim_out`` are not YAML args. ``dim_head`` (channels per head) must divide
    C; ``exp_ratio`` sets M; ``norm_layer`` is ``bn_2d``, ``ln_2d`` or ``none``; ``act_layer`` one of EMO's
    (``relu``, ``silu``, ``gelu``, ...); ``dw_ks`` is the odd depthwise kernel; ``se_ratio > 0`` adds a
    squeeze-excite gate after it; ``v_group`` groups ``v`` by head.

    The YOLO forks ship another module under the name ``iRMB``; this block is the authors' module, so a fork's row
    (which starts with a channel count) is refused with a message saying that channels are inferred.

    State dict: the reference's keys and shapes (``norm``, ``qk.conv``, ``v.conv``, ``conv_local.conv``,
    ``conv_local.norm``, ``se.conv_reduce``, ``se.conv_expand``, ``proj.conv``), so the reference module's
    state dict loads strictly, and ours into it.

    Departures from the reference:
        - ``dim_head`` defaults to 16 (the reference's 64 does not divide C = 16, 32, 48 or 80; the forks use 16).
        - Channel-preserving only: ``dim_out`` is C and ``stride`` must be 1; ``dilation`` must be 1 (unless
          ``dw_ks = 1``) and ``dw_ks`` odd, since the reference's padding keeps the size only then.
        - Arguments the reference would fail on later are refused at build time (`BlockArgumentError`):
          ``dim_head`` not dividing C, M not divisible by the heads, the norms ``gn``/``in_*``/``bn_1d``/``ln_1d``
          (not for 4-D maps, or ``gn`` unbuildable), unknown activations, a zero-width squeeze-excite.
        - The windows' padding and cropping are computed from the tensor's shape without branching (the crop is
          unconditional), so an ONNX export with dynamic H, W pads correctly at every size.
        - The attention softmax runs in float32 under autocast.
        - timm's activations are their torch equivalents (same functions); inplace activations are not inplace.

    Identity start: ``proj`` (no bias) is zeroed, so ``out = x`` (the reference's own residual); with
    ``has_skip=False`` the block has no residual and takes the identity mix of `AttentionBlock` instead.

    Attributes:
        norm (nn.Module): Input norm (``norm_in``) or identity.
        qk (ConvNormAct): 1x1 conv C -> 2C for queries and keys (with ``attn_s``).
        v (nn.Module): 1x1 conv C -> M and activation (or identity without ``attn_s`` and ``v_proj``).
        conv_local (ConvNormAct): Depthwise ``dw_ks`` conv, BatchNorm, SiLU on M channels.
        se (nn.Module): Squeeze-excite gate on M channels, or identity.
        proj (ConvNormAct): 1x1 conv M -> C, no bias, no norm, no activation.
        zero_output (str | None): ``"proj"`` with ``has_skip``, else None (identity mix).

    Examples:
        >>> block = iRMB(64)
        >>> block(torch.randn(2, 64, 15, 20)).shape
        torch.Size([2, 64, 15, 20])
    """

    zero_output: str | None = "proj"

    def __init__(
        self,
        c1: int,
        norm_in: bool = True,
        has_skip: bool = True,
        exp_ratio: float = 1.0,
        norm_layer: str = "bn_2d",
        act_layer: str = "relu",
        v_proj: bool = True,
        dw_ks: int = 3,
        stride: int = 1,
        dilation: int = 1,
        se_ratio: float = 0.0,
        dim_head: int = 16,
        window_size: int = 7,
        attn_s: bool = True,
        qkv_bias: bool = False,
        attn_drop: float = 0.0,
        drop: float = 0.0,
        drop_path: float = 0.0,
        v_group: bool = False,
        attn_pre: bool = False,
    ) -> None:
        """Initialize iRMB.

        Args:
            c1 (int): Input (and output) channels C.
            norm_in (bool): Normalise the input (else identity).
            has_skip (bool): Residual connections (around the depthwise conv and around the block).
            exp_ratio (float): Expansion M / C.
            norm_layer (str): Input norm: ``bn_2d``, ``ln_2d`` or ``none``.
            act_layer (str): Activation of ``v`` and of the squeeze-excite gate.
            v_proj (bool): Without ``attn_s``: a 1x1 conv ``v`` (else identity, needs M = C).
            dw_ks (int): Odd kernel size of the depthwise conv.
            stride (int): Must be 1 (channel- and size-preserving).
            dilation (int): Must be 1 (or ``dw_ks = 1``).
            se_ratio (float): Squeeze-excite reduction ratio; 0 for none.
            dim_head (int): Channels per attention head; must divide C.
            window_size (int): Window side w; 0 or less: the whole map is one window.
            attn_s (bool): Use the windowed self-attention.
            qkv_bias (bool): Bias in ``qk`` and ``v``.
            attn_drop (float): Dropout on the attention weights.
            drop (float): Dropout before ``proj``.
            drop_path (float): Stochastic depth of the residual branch.
            v_group (bool): Group ``v`` by head.
            attn_pre (bool): Apply the attention to the input before ``v``.
        """
        super().__init__()
        check_channels("iRMB", c1)
        for name, value in (
            ("norm_in", norm_in),
            ("has_skip", has_skip),
            ("v_proj", v_proj),
            ("attn_s", attn_s),
            ("qkv_bias", qkv_bias),
            ("v_group", v_group),
            ("attn_pre", attn_pre),
        ):
            if isinstance(value, int) and not isinstance(value, bool) and name == "norm_in":
                raise BlockArgumentError(
                    f"iRMB: norm_in must be true or false, got {value!r} (int). Input and output channels are "
                    "inferred (dim_in = dim_out = C), so a channel count is not a YAML arg: start with norm_in"
                )
            check_bool("iRMB", name, value)
        check_choice("iRMB", "norm_layer", norm_layer, NORMS)
        check_choice("iRMB", "act_layer", act_layer, ACTS)
        if isinstance(exp_ratio, bool) or not isinstance(exp_ratio, (int, float)) or exp_ratio <= 0:
            raise BlockArgumentError(f"iRMB: exp_ratio must be a positive number, got {exp_ratio!r}")
        dim_mid = int(c1 * exp_ratio)
        if dim_mid < 1:
            raise BlockArgumentError(f"iRMB: exp_ratio={exp_ratio} leaves no channel: int({c1} * {exp_ratio}) = 0")
        check_positive_int("iRMB", "dw_ks", dw_ks, "depthwise kernel size")
        if dw_ks % 2 == 0:
            raise BlockArgumentError(f"iRMB: dw_ks={dw_ks} is even; the reference's padding keeps H x W for odd sizes")
        if stride != 1 or isinstance(stride, bool):
            raise BlockArgumentError(
                f"iRMB: stride must be 1 in a channel- and size-preserving block, got {stride!r}; downsample with a "
                "Conv row instead"
            )
        if (dilation != 1 or isinstance(dilation, bool)) and dw_ks != 1:
            raise BlockArgumentError(
                f"iRMB: dilation must be 1, got {dilation!r}: the reference pads (dw_ks - 1) / 2, so a dilated "
                f"{dw_ks}x{dw_ks} depthwise conv would shrink the map"
            )
        if isinstance(se_ratio, bool) or not isinstance(se_ratio, (int, float)) or se_ratio < 0:
            raise BlockArgumentError(f"iRMB: se_ratio must be a number >= 0 (0: no gate), got {se_ratio!r}")
        if se_ratio > 0 and round(dim_mid * se_ratio) < 1:
            raise BlockArgumentError(
                f"iRMB: se_ratio={se_ratio} leaves the squeeze-excite gate no channel: "
                f"round({dim_mid} * {se_ratio}) = 0"
            )
        check_positive_int("iRMB", "dim_head", dim_head, "channels per attention head")
        if isinstance(window_size, bool) or not isinstance(window_size, int):
            raise BlockArgumentError(
                f"iRMB: window_size must be an integer (<= 0: one window over the whole map), got {window_size!r}"
            )
        rates = {k: _check_rate(k, v) for k, v in (("attn_drop", attn_drop), ("drop", drop), ("drop_path", drop_path))}
        if attn_s:
            if c1 % dim_head:
                raise BlockArgumentError(
                    f"iRMB: dim_head={dim_head} must divide the input channels, but {c1} % {dim_head} = "
                    f"{c1 % dim_head}; choose a dim_head that divides {c1}, e.g. "
                    f"{max(d for d in range(1, min(dim_head, c1) + 1) if c1 % d == 0)}"
                )
            heads = c1 // dim_head
            if (v_group or not attn_pre) and dim_mid % heads:
                raise BlockArgumentError(
                    f"iRMB: exp_ratio={exp_ratio} gives {dim_mid} value channels, which the {heads} heads "
                    f"({c1} / dim_head {dim_head}) do not divide"
                )
        elif not v_proj and dim_mid != c1:
            raise BlockArgumentError(
                f"iRMB: without attn_s and v_proj there is no layer to expand {c1} to {dim_mid} channels; "
                "use exp_ratio 1.0 or v_proj true"
            )

        self.norm = get_norm(norm_layer, c1) if norm_in else nn.Identity()
        self.has_skip = has_skip
        self.attn_s = attn_s
        self.drop_path = rates["drop_path"]
        if not has_skip:
            self.zero_output = None
        if attn_s:
            self.dim_head = dim_head
            self.window_size = window_size
            self.num_head = c1 // dim_head
            self.scale = dim_head**-0.5
            self.attn_pre = attn_pre
            self.qk = ConvNormAct(c1, 2 * c1, 1, bias=qkv_bias, norm_layer="none", act_layer="none")
            v_groups = self.num_head if v_group else 1
            self.v = ConvNormAct(c1, dim_mid, 1, v_groups, bias=qkv_bias, norm_layer="none", act_layer=act_layer)
            self.attn_drop = nn.Dropout(rates["attn_drop"])
        elif v_proj:
            self.v = ConvNormAct(c1, dim_mid, 1, bias=qkv_bias, norm_layer="none", act_layer=act_layer)
        else:
            self.v = nn.Identity()
        self.conv_local = ConvNormAct(dim_mid, dim_mid, dw_ks, dim_mid, norm_layer="bn_2d", act_layer="silu")
        self.se = SqueezeExcite(dim_mid, se_ratio, act_layer) if se_ratio > 0 else nn.Identity()
        self.proj_drop = nn.Dropout(rates["drop"])
        self.proj = ConvNormAct(dim_mid, c1, 1, norm_layer="none", act_layer="none")

    def attend(self, x: torch.Tensor) -> torch.Tensor:
        """Windowed multi-head self-attention of the normalised input.

        Args:
            x (torch.Tensor): Normalised input of shape (B, C, H, W).

        Returns:
            (torch.Tensor): Attended values of shape (B, M, H, W) (``attn_pre``: ``v`` applied after).
        """
        b, c, h, w = x.shape
        wh, ww = (h, w) if self.window_size <= 0 else (self.window_size, self.window_size)
        pad_b, pad_r = (wh - h % wh) % wh, (ww - w % ww) % ww
        x = F.pad(x, (0, pad_r, 0, pad_b))
        n1, n2 = (h + pad_b) // wh, (w + pad_r) // ww
        # 'b c (h1 n1) (w1 n2) -> (b n1 n2) c h1 w1': window (i, j) is the strided grid of rows i + n1 * t
        x = x.reshape(b, c, wh, n1, ww, n2).permute(0, 3, 5, 1, 2, 4).reshape(b * n1 * n2, c, wh, ww)
        heads, tokens = self.num_head, wh * ww
        q, k = self.qk(x).reshape(-1, 2, heads, self.dim_head, tokens).transpose(-1, -2).unbind(1)
        attn = ((q @ k.transpose(-2, -1)).float() * self.scale).softmax(dim=-1)
        attn = self.attn_drop(attn)
        if self.attn_pre:
            x_spa = attn.to(x.dtype) @ x.reshape(-1, heads, c // heads, tokens).transpose(-1, -2)
            x_spa = self.v(x_spa.transpose(-1, -2).reshape(-1, c, wh, ww))
        else:
            v = self.v(x)
            m = v.shape[1]
            v = v.reshape(-1, heads, m // heads, tokens).transpose(-1, -2)
            x_spa = (attn.to(v.dtype) @ v).transpose(-1, -2).reshape(-1, m, wh, ww)
        m = x_spa.shape[1]
        # '(b n1 n2) c h1 w1 -> b c (h1 n1) (w1 n2)', then the padding cropped
        x_spa = x_spa.reshape(b, n1, n2, m, wh, ww).permute(0, 3, 4, 1, 5, 2).reshape(b, m, wh * n1, ww * n2)
        return x_spa[:, :, :h, :w]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block.

        Args:
            x (torch.Tensor): Input of shape (B, C, H, W).

        Returns:
            (torch.Tensor): Output of shape (B, C, H, W).
        """
        shortcut = x
        y = self.norm(x)
        y = self.attend(y) if self.attn_s else self.v(y)
        y = y + self.se(self.conv_local(y)) if self.has_skip else self.se(self.conv_local(y))
        y = self.proj(self.proj_drop(y))
        if self.has_skip:
            y = shortcut + drop_path(y, self.drop_path, self.training)
        return self.blend(shortcut, y)
