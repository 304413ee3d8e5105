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
"""

from __future__ import annotations

import torch
from torch import nn


class AttentionBlock(nn.Module):
    """Base class of the channel-preserving attention blocks: ``blend`` applies an optional identity mix.

    Subclasses end their ``forward`` with ``return self.blend(x, out)``. Residual blocks whose output projection is
    zero-initialised (``x + proj(...)``, such as `MHSA`) name that layer in ``zero_output`` instead: they start as the
    identity by zeroing it, as a fresh block has it, and need no mix.

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
        if getattr(self, "identity_mix", None) is not None:
            return self
        like = next(self.parameters(), torch.zeros(()))
        self.identity_mix = nn.Parameter(torch.zeros((), device=like.device, dtype=like.dtype))
        return self

    def blend(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Return the block output ``y``, or ``x + identity_mix * (y - x)`` when the block has an identity mix.

        Args:
            x (torch.Tensor): Block input of shape (B, C, H, W).
            y (torch.Tensor): Block output by the paper's formula, same shape.

        Returns:
            (torch.Tensor): Output of shape (B, C, H, W).
        """
        mix = getattr(self, "identity_mix", None)  # getattr: blocks unpickled from checkpoints older than the mix
        return y if mix is None else x + mix * (y - x)
