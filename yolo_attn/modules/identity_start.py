"""Attention that can start as the identity: a zero-initialised residual scale for blocks new to a pretrained network.

A fresh gate scales its input by 0.5 (0.25 for CBAM and CoordAtt), so inserting it into a pretrained detector changes
what the detector predicts before any training. For that case a block can be switched to
``out = x + identity_mix * (block(x) - x)`` with a scalar ``identity_mix = 0``: at step 0 the block returns ``x``
exactly, and training moves ``identity_mix`` (and through it the gate) away from zero. This is the zero-initialised
residual scale of ReZero (Bachlechner et al., 2021) and LayerScale (Touvron et al., 2021), the recipe the non-local
block (Wang et al., CVPR 2018) and ControlNet (Zhang et al., ICCV 2023) use to add layers to a trained network.

Built from scratch, a block has no ``identity_mix`` (it is registered as ``None``) and computes exactly its paper's
formula. The mix costs one scalar per block and is an ordinary parameter: it is saved in checkpoints and state dicts,
trained, averaged by EMA, and exported to ONNX like any weight.

Where the mix is computed: the blend is never a set of extra passes over the full map.

- A multiplicative gate (``y = x * g``, the factors of ``g`` possibly several: SE, ECA, CBAM, SAM, CoordAtt, SimAM,
  ...) ends its ``forward`` with ``self.gated(x, *factors)``, which blends on the gate:
  ``x + mix * (x * g - x) = x * ((1 - mix) + mix * g)`` (`yolo_attn.modules.gating`). A channel gate blends C values
  per image instead of C x H x W, and the block costs one product over the map, as it does without a mix. In training
  the gate keeps only its input, its factors and the mix for backward (`gating.LeanGate`), not the product.
- Any other block ends with ``self.blend(x, y)``: one fused ``torch.lerp(x, y, mix)``.
- Without a mix both are exactly the plain ops (``x * g``, ``y``); the generic `add_identity_mix` hook of a user's
  block uses ``torch.lerp`` too. The numbers equal ``x + mix * (y - x)`` within float rounding, fused or not, compiled,
  and in ONNX (``lerp`` and ``addcmul`` export as Mul/Add/Sub/Where at every opset the package uses).
"""

from __future__ import annotations

import torch
from torch import nn

from yolo_attn.modules import gating


class AttentionBlock(nn.Module):
    """Base class of the channel-preserving attention blocks: ``gated`` and ``blend`` apply an optional identity mix.

    A multiplicative gate ends its ``forward`` with ``return self.gated(x, *factors)`` (``x`` times its gate factors,
    the mix blended on the gate); any other block with ``return self.blend(x, out)``. Residual blocks whose output
    projection is zero-initialised (``x + proj(...)``, such as `MHSA`) name that layer in ``zero_output`` instead: they
    start as the identity by zeroing it, as a fresh block has it, and need no mix.

    Attributes:
        identity_mix (nn.Parameter | None): 0-d residual scale, or None (the paper's formula, the default).
        zero_output (str | None): Class attribute: name of the output layer whose zeroing makes the block the identity.

    Examples:
        >>> from yolo_attn import SE
        >>> se = SE(64).start_as_identity()
        >>> x = torch.randn(2, 64, 8, 8)
        >>> torch.equal(se(x), x)
        True
    """

    zero_output: str | None = None

    def __init__(self) -> None:
        """Initialize the module without an identity mix."""
        super().__init__()
        self.register_parameter("identity_mix", None)

    def __setstate__(self, state: dict) -> None:
        """Unpickle; a block saved before the identity mix existed gets ``identity_mix = None`` (the paper's form).

        The one place that keeps checkpoints of earlier releases loading: every method may then read
        ``self.identity_mix`` directly. Plain and weights-only (``ULTRALYTICS_SAFE_LOAD=1``) unpickling both call it.

        Args:
            state (dict): The pickled ``__dict__``.
        """
        super().__setstate__(state)
        self._parameters.setdefault("identity_mix", None)

    def start_as_identity(self) -> AttentionBlock:
        """Make this block return its input until training teaches it otherwise.

        Adds ``identity_mix``, a 0-d parameter set to 0, on the block's device and dtype. A block with a
        ``zero_output`` layer gets that layer's weight and bias zeroed instead (what a fresh block has): a zero mix in
        front of a zero projection would leave both without a gradient, so the block could never learn. Idempotent.

        Returns:
            (AttentionBlock): ``self``.
        """
        if self.zero_output is not None:
            with torch.no_grad():
                for p in getattr(self, self.zero_output).parameters():
                    p.zero_()
            return self
        if self.identity_mix is not None:
            return self
        like = next(self.parameters(), torch.zeros(()))
        self.identity_mix = nn.Parameter(torch.zeros((), device=like.device, dtype=like.dtype))
        return self

    def gated(self, x: torch.Tensor, *factors: torch.Tensor | float) -> torch.Tensor:
        """Return ``x * f_1 * ... * f_n``, or with an identity mix ``x + identity_mix * (x * f_1 * ... * f_n - x)``.

        The mix is blended on the gate, ``x * ((1 - mix) + mix * f_1 * ... * f_n)``, and in training the product is
        recomputed in backward instead of kept (`yolo_attn.modules.gating.gate`). Without a mix the output is the plain
        product, left to right.

        Args:
            x (torch.Tensor): Block input of shape (B, C, H, W).
            *factors (torch.Tensor | float): Gate factors broadcastable to ``x``, e.g. (B, C, 1, 1) and (B, 1, H, W).

        Returns:
            (torch.Tensor): Output of shape (B, C, H, W).
        """
        mix = self.identity_mix
        return gating.gate(x, *factors, mix=mix)

    def blend(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Return the block output ``y``, or ``x + identity_mix * (y - x)`` (one ``torch.lerp``) with an identity mix.

        Args:
            x (torch.Tensor): Block input of shape (B, C, H, W).
            y (torch.Tensor): Block output by the paper's formula, same shape.

        Returns:
            (torch.Tensor): Output of shape (B, C, H, W).
        """
        mix = self.identity_mix
        return y if mix is None else lerp(x, y, mix)

    def attention_map(self, x: torch.Tensor, output: torch.Tensor) -> tuple[torch.Tensor, str]:
        """Return the visualizer's map of this block: by default (channel gates) the channel mean of ``|output|``.

        Blocks with a spatial map (a spatial gate, attention weights) override this.

        Args:
            x (torch.Tensor): The block's input of shape (B, C, H, W).
            output (torch.Tensor): The block's output of shape (B, C, H, W).

        Returns:
            map (torch.Tensor): Map of shape (B, H, W).
            source (str): What the map is, for the panel title.
        """
        return output.abs().mean(1), f"activation after {type(self).__name__} (channel mean |output|)"


def lerp(x: torch.Tensor, y: torch.Tensor, mix: torch.Tensor) -> torch.Tensor:
    """Return ``x + mix * (y - x)`` as one ``torch.lerp``, in the dtype that formula has (``x`` and ``y`` promoted).

    Args:
        x (torch.Tensor): Block input.
        y (torch.Tensor): Block output, same shape.
        mix (torch.Tensor): 0-d identity mix.

    Returns:
        (torch.Tensor): The blend, of ``x``'s shape.
    """
    dtype = torch.promote_types(x.dtype, y.dtype)
    return torch.lerp(x.to(dtype), y.to(dtype), mix.to(dtype))


def _identity_mix_hook(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
    """Forward hook of the generic identity mix: ``x + identity_mix * (output - x)`` (module-level: it pickles)."""
    mix = getattr(module, "identity_mix", None)
    if mix is None:
        return output
    return lerp(args[0], output, mix)


def add_identity_mix(module: nn.Module) -> nn.Module:
    """Give a channel-preserving block that is not an `AttentionBlock` the generic zero-initialised residual mix.

    The block gets a 0-d parameter ``identity_mix = 0`` (state-dict key ``<block>.identity_mix``, as an
    `AttentionBlock` has it) and a forward hook that returns ``x + identity_mix * (block(x) - x)``: at step 0 the block
    returns its input exactly. The hook is a module-level function, so the block still pickles (checkpoints,
    ``deepcopy``, EMA, DDP), traces to ONNX and compiles. Idempotent.

    Args:
        module (nn.Module): A block whose output has its input's shape.

    Returns:
        (nn.Module): ``module``.
    """
    if getattr(module, "identity_mix", None) is not None:
        return module
    like = next(module.parameters(), None)
    if like is None:
        like = next(module.buffers(), torch.zeros(()))
    module.identity_mix = nn.Parameter(torch.zeros((), device=like.device, dtype=like.dtype))
    if _identity_mix_hook not in module._forward_hooks.values():
        module.register_forward_hook(_identity_mix_hook)
    return module


def start_as_identity(module: nn.Module) -> nn.Module:
    """Make a block return its input: its own ``start_as_identity`` when it has one, else `add_identity_mix`.

    Args:
        module (nn.Module): A channel-preserving block.

    Returns:
        (nn.Module): ``module``.
    """
    own = getattr(module, "start_as_identity", None)
    return own() if callable(own) else add_identity_mix(module)


IDENTITY_MIX_HOOK = _identity_mix_hook  # allow-listed for weights-only (safe) checkpoint loading
