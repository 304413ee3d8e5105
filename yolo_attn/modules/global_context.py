"""GCNet's global context block (Cao et al., ICCVW 2019): attention pooling, a bottleneck transform, fusion."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from yolo_attn.modules import gating
from yolo_attn.modules.arg_checks import BlockArgumentError, check_bool, check_channels
from yolo_attn.modules.fusion import pointwise
from yolo_attn.modules.identity_start import AttentionBlock
from yolo_attn.registry import register_block


def _transform(c1: int, planes: int) -> nn.Sequential:
    """GCNet's bottleneck transform C -> C*ratio -> C: 1x1 conv, LayerNorm over [planes, 1, 1], ReLU, 1x1 conv."""
    return nn.Sequential(nn.Conv2d(c1, planes, 1), nn.LayerNorm([planes, 1, 1]), nn.ReLU(), nn.Conv2d(planes, c1, 1))


def _apply(transform: nn.Sequential, context: torch.Tensor) -> torch.Tensor:
    """Run a transform on context vectors (B, C) as matrix products: the convolutions at a single position."""
    first, norm, act, last = transform
    hidden = pointwise(first.weight, first.bias, context)
    hidden = F.layer_norm(hidden, norm.normalized_shape[:1], norm.weight.flatten(), norm.bias.flatten(), norm.eps)
    return pointwise(last.weight, last.bias, act(hidden))


@register_block(aliases=("GC", "GlobalContextBlock"))
class GlobalContext(AttentionBlock):
    """Global context block: one query-independent context vector per image, transformed and fused into every position.

    Paper: Cao, Xu, Lin, Wei, Hu, "GCNet: Non-local Networks Meet Squeeze-Excitation Networks and Beyond", ICCV
    Workshops 2019. Reference code: xvjiarui/GCNet, ``mmdet/ops/gcb/context_block.py`` ``ContextBlock`` (read, not
    copied); timm's ``GlobalContext`` is the same computation with other names and defaults.

    Formula (``W_k``: 1x1 conv C -> 1; ``T(z) = W2 ReLU(LN(W1 z))`` with ``W1: C -> C*ratio``, ``W2: C*ratio -> C``)::

        a     = softmax_{HW}(W_k x)                  (B, 1, H*W) attention pooling weights (use_attn)
        z     = sum_j a_j x_j                        (B, C, 1, 1) context; mean over H, W without use_attn
        out   = x * sigmoid(T_mul(z))                with fuse_scale (GCNet's "channel_mul")
        out   = out + T_add(z)                       with fuse_add   (GCNet's "channel_add", the paper's default)

    Shapes: (B, C, H, W) -> (B, C, H, W). Cost at yolov8n's P5 (C=256, defaults): 8,753 parameters.

    YAML: ``[-1, 1, GlobalContext, [ratio, use_attn, fuse_add, fuse_scale]]`` (aliases ``GC``, ``GlobalContextBlock``),
    all optional; input channels are inferred.

    - ``ratio`` (1/16): bottleneck ratio of the transforms, hidden width ``int(C * ratio)`` (GCNet's ``ratio``;
      its configs use 1/16 and 1/4). A fraction in (0, 1], checked to leave at least one hidden channel.
    - ``use_attn`` (true): attention pooling (GCNet's ``pooling_type='att'``); false: average pooling (``'avg'``).
    - ``fuse_add`` (true), ``fuse_scale`` (false): GCNet's ``fusion_types`` ``channel_add`` / ``channel_mul``, named as
      timm names them; at least one must be on. Both on gives GCNet's multiply-then-add.

    Initialisation: GCNet's. ``conv_mask`` Kaiming-normal (fan-in, bias 0); the last conv of each transform zero, so a
    fresh block is ``x + 0`` with add fusion, ``0.5 x`` with scale fusion only.

    Identity start: with add fusion only, `start_as_identity` zeroes ``channel_add_conv``'s last conv (what a fresh
    block has; a zero mix in front of it would leave both without a gradient); with scale fusion the block gets the
    usual ``identity_mix``.

    Departures from the reference:
        - Args: GCNet's ``ratio`` has no default (1/16 is its configs' and the paper's choice); ``pooling_type`` and
          ``fusion_types`` become the booleans ``use_attn``, ``fuse_add``, ``fuse_scale`` of timm (YAML-friendly), in
          GCNet's order (ratio, pooling, fusion).
        - Average pooling is ``mean`` over H and W (the reference: ``AdaptiveAvgPool2d(1)``), exported as ReduceMean.
        - The transforms run on the (B, C) context as matrix products (`pointwise`, ``F.layer_norm`` over the hidden
          width), the same numbers as the reference's 1x1 convs and ``LayerNorm([planes, 1, 1])`` on a 1x1 map.
        - timm differs from GCNet in defaults (``fuse_scale`` only, ratio 1/8), in rounding the hidden width
          (``make_divisible``, round-to-nearest vs ``int``), LayerNorm eps (1e-6 vs 1e-5) and init (only ``fc2.weight``
          zero); this block follows GCNet in all four.

    State dict: the reference's keys and shapes (``conv_mask``, ``channel_add_conv.{0,1,3}``,
    ``channel_mul_conv.{0,1,3}``; LayerNorm weights of shape (planes, 1, 1)), so
    ``block.load_state_dict(ContextBlock(C, ratio, ...).state_dict())`` works as is. timm's keys (``conv_attn``,
    ``mlp_add.fc1/norm/fc2``, LayerNorm weights of shape (planes,)) need a renaming and a reshape.

    Attributes:
        planes (int): Hidden width ``int(C * ratio)``.
        conv_mask (nn.Conv2d | None): C -> 1 attention logits (None without ``use_attn``).
        channel_add_conv (nn.Sequential | None): Additive transform (None without ``fuse_add``).
        channel_mul_conv (nn.Sequential | None): Multiplicative transform (None without ``fuse_scale``).
        zero_output (str | None): ``"channel_add_conv.3"`` with add fusion only (the identity start zeroes it).

    Examples:
        >>> gc = GlobalContext(64)
        >>> gc(torch.randn(2, 64, 20, 20)).shape
        torch.Size([2, 64, 20, 20])
    """

    def __init__(
        self, c1: int, ratio: float = 1 / 16, use_attn: bool = True, fuse_add: bool = True, fuse_scale: bool = False
    ) -> None:
        """Initialize the global context block.

        Args:
            c1 (int): Input (and output) channels C.
            ratio (float): Bottleneck ratio in (0, 1]; the hidden width is ``int(C * ratio)``, at least 1.
            use_attn (bool): Attention pooling (True) or average pooling (False).
            fuse_add (bool): Add the transformed context (GCNet's ``channel_add``).
            fuse_scale (bool): Scale by the sigmoid of the transformed context (GCNet's ``channel_mul``).
        """
        super().__init__()
        name = "GlobalContext"
        check_channels(name, c1)
        for arg, value in (("use_attn", use_attn), ("fuse_add", fuse_add), ("fuse_scale", fuse_scale)):
            check_bool(name, arg, value)
        if not (fuse_add or fuse_scale):
            raise BlockArgumentError(f"{name}: fuse_add and fuse_scale are both false; at least one fusion is needed")
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 < ratio <= 1:
            raise BlockArgumentError(
                f"{name}: ratio (bottleneck ratio) must be a number in (0, 1] such as 0.0625 (1/16), got "
                f"{ratio!r} ({type(ratio).__name__}). Input channels are inferred, so pass a ratio, not a channel count"
            )
        self.planes = int(c1 * ratio)
        if self.planes < 1:
            raise BlockArgumentError(
                f"{name}: ratio={ratio} leaves no hidden channel for {c1} input channels (int({c1} * {ratio}) = 0); "
                f"expected ratio >= 1/{c1}"
            )
        self.conv_mask = nn.Conv2d(c1, 1, 1) if use_attn else None
        self.channel_add_conv = _transform(c1, self.planes) if fuse_add else None
        self.channel_mul_conv = _transform(c1, self.planes) if fuse_scale else None
        self.zero_output = "channel_add_conv.3" if not fuse_scale else None
        if self.conv_mask is not None:
            nn.init.kaiming_normal_(self.conv_mask.weight, mode="fan_in", nonlinearity="relu")
            nn.init.zeros_(self.conv_mask.bias)
        for transform in (self.channel_add_conv, self.channel_mul_conv):
            if transform is not None:
                nn.init.zeros_(transform[-1].weight)
                nn.init.zeros_(transform[-1].bias)

    def pooling_weights(self, x: torch.Tensor) -> torch.Tensor:
        """Return the attention pooling weights, softmax over positions, of shape (B, 1, H*W) (needs ``use_attn``)."""
        return self.conv_mask(x).flatten(2).softmax(-1)

    def context(self, x: torch.Tensor) -> torch.Tensor:
        """Return the context vector (B, C): attention-pooled (``use_attn``) or average-pooled ``x`` (B, C, H, W)."""
        if self.conv_mask is None:
            return x.mean((2, 3))
        return (x.flatten(2) @ self.pooling_weights(x).transpose(1, 2)).squeeze(-1)

    def start_as_identity(self) -> GlobalContext:
        """Make this block return its input: zero the additive transform's last conv, or (scale fusion) add a mix.

        Returns:
            (GlobalContext): ``self``.
        """
        if self.channel_mul_conv is not None:
            return super().start_as_identity()
        with torch.no_grad():
            last = self.channel_add_conv[-1]
            last.weight.zero_()
            last.bias.zero_()
        return self

    def attention_map(self, x: torch.Tensor, output: torch.Tensor) -> tuple[torch.Tensor, str]:
        """Return the attention pooling weights (B, H, W), or without ``use_attn`` the channel mean of ``|output|``."""
        if self.conv_mask is None:
            return super().attention_map(x, output)
        b, _, h, w = x.shape
        return self.pooling_weights(x).reshape(b, h, w), "context pooling weights (softmax over positions)"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Fuse the global context into every position of ``x``.

        Args:
            x (torch.Tensor): Input of shape (B, C, H, W).

        Returns:
            (torch.Tensor): Output of shape (B, C, H, W).
        """
        context = self.context(x)
        scale = shift = None
        if self.channel_mul_conv is not None:
            scale = _apply(self.channel_mul_conv, context).sigmoid()[:, :, None, None]
        if self.channel_add_conv is not None:
            shift = _apply(self.channel_add_conv, context)[:, :, None, None]
        mix = self.identity_mix
        if mix is None:
            out = x if scale is None else x * scale
            return out if shift is None else out + shift
        # x + mix * (x * scale + shift - x) = x * ((1 - mix) + mix * scale) + mix * shift: the mix on (B, C) vectors
        if shift is None:
            return self.gated(x, scale)
        if scale is None:
            return x + mix * shift
        return torch.addcmul(mix * shift, x, gating.mixed_gate((scale,), mix))
