"""SimAM: a simple, parameter-free attention module (Yang, Zhang, Li, Xie, ICML 2021)."""

from __future__ import annotations

import torch

from yolo_attn.modules.arg_checks import BlockArgumentError, check_channels
from yolo_attn.modules.identity_start import AttentionBlock
from yolo_attn.registry import register_block


@register_block
class SimAM(AttentionBlock):
    """SimAM: weight every activation by the inverse of its minimal energy, without a single parameter.

    Paper: Yang, Zhang, Li, Xie, "SimAM: A Simple, Parameter-Free Attention Module for Convolutional Neural Networks",
    ICML 2021. Reference code: ZjjConan/SimAM, ``simam_module`` (``networks/attentions/simam_module.py``).

    Per channel, with ``mu`` and ``d = (x - mu)^2`` over the H x W positions and ``n = H * W - 1``::

        e_inv = d / (4 * (sum_hw(d) / n + e_lambda)) + 0.5
        out = x * sigmoid(e_inv)

    Shapes: (B, C, H, W) -> (B, C, H, W). Cost: no parameters, a few element-wise operations and two reductions.

    YAML: ``[-1, 1, SimAM, [e_lambda]]``, all args optional; no channel argument (the block has none: a channel count
    written first would land in ``e_lambda``, and is refused).

    Departures from the reference:
        - ``n`` is clamped to at least 1, computed from the tensor's size with tensor operations: the reference divides
          by ``H * W - 1 = 0`` on a 1 x 1 map (NaN; a P5 map at 32 px), while here ``d = 0`` there gives the limit
          ``e_inv = 0.5``. Any other size computes the reference's numbers, and the ONNX export keeps H and W dynamic.

    Identity start: the block has no parameter to zero, so it uses the identity mix of `AttentionBlock`.

    Attributes:
        e_lambda (float): Regulariser lambda of the energy function.

    Examples:
        >>> simam = SimAM(64)
        >>> simam(torch.randn(2, 64, 20, 20)).shape
        torch.Size([2, 64, 20, 20])
    """

    def __init__(self, c1: int, e_lambda: float = 1e-4) -> None:
        """Initialize SimAM.

        Args:
            c1 (int): Input (and output) channels; not used by the computation (the block has no parameters), taken
                so every channel-preserving block is built as ``Block(c1, *yaml_args)``.
            e_lambda (float): The energy function's regulariser lambda (1e-4 in the reference; 0.1 for its ImageNet
                ResNets). Must be a positive number.
        """
        super().__init__()
        check_channels("SimAM", c1)
        if isinstance(e_lambda, bool) or not isinstance(e_lambda, (int, float)) or not e_lambda > 0:
            raise BlockArgumentError(
                f"SimAM: e_lambda (energy regulariser lambda) must be a positive number such as 1e-4, got "
                f"{e_lambda!r} ({type(e_lambda).__name__}). SimAM has no channel argument: input channels are inferred"
            )
        if e_lambda >= 1:
            raise BlockArgumentError(
                f"SimAM: e_lambda={e_lambda!r} looks like a channel count; lambda is a small regulariser (1e-4 in the "
                "reference, at most 0.1 in the paper). SimAM has no channel argument: input channels are inferred"
            )
        self.e_lambda = float(e_lambda)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """Compute the gate ``sigmoid(e_inv)``.

        Args:
            x (torch.Tensor): Input of shape (B, C, H, W).

        Returns:
            (torch.Tensor): Gate in (0, 1) of shape (B, C, H, W).
        """
        d = (x - x.mean((2, 3), keepdim=True)).pow(2)
        n = (torch.ones_like(x[:1, :1]).sum() - 1).clamp(min=1)  # H * W - 1 as a tensor: dynamic in ONNX
        return (d / (4 * (d.sum((2, 3), keepdim=True) / n + self.e_lambda)) + 0.5).sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reweight every activation of ``x`` by its energy.

        Args:
            x (torch.Tensor): Input of shape (B, C, H, W).

        Returns:
            (torch.Tensor): Output of shape (B, C, H, W).
        """
        return self.gated(x, self.gate(x))

    def attention_map(self, x: torch.Tensor, output: torch.Tensor) -> tuple[torch.Tensor, str]:
        """Return the channel mean of the energy gate (B, H, W) for input ``x`` (B, C, H, W), and what it is."""
        return self.gate(x).mean(1), "energy gate sigmoid(1/e*) (channel mean)"

    def extra_repr(self) -> str:
        """Show lambda in the layer table, as the reference's repr does."""
        return f"e_lambda={self.e_lambda:g}"
