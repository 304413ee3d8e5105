"""GAM: Global Attention Mechanism (Liu, Shao, Hoffmann, arXiv 2112.05561, 2021)."""

from __future__ import annotations

import torch
from torch import nn

from yolo_attn.modules import gating
from yolo_attn.modules.arg_checks import BlockArgumentError, check_channels
from yolo_attn.modules.fusion import fold_batchnorm
from yolo_attn.modules.identity_start import AttentionBlock
from yolo_attn.registry import register_block


@register_block(aliases=("GAM_Attention", "GAMAttention"))
class GAM(AttentionBlock):
    """Global Attention Mechanism: a per-position channel MLP gate, then a 7x7-convolution spatial gate.

    Paper: Liu, Shao, Hoffmann, "Global Attention Mechanism: Retain Information to Enhance Channel-Spatial
    Interactions", arXiv 2112.05561 (2021). The authors published no code. Reference followed: the ``GAM_Attention``
    module of z1069614715/objectdetection_script (``cv-attention/GAM.py``), the copy the YOLO forks use, which matches
    the paper's Fig. 2-4 (no channel shuffle, no grouped convolutions)::

        Mc  = sigmoid(MLP(x))   with MLP = Linear(C, C/rate) -> ReLU -> Linear(C/rate, C) at every position (B, H, W)
        x1  = x * Mc
        Ms  = sigmoid(BN(conv7x7(ReLU(BN(conv7x7(x1))))))    C -> C/rate -> C
        out = x1 * Ms

    Shapes: (B, C, H, W) -> (B, C, H, W); both gates are full (B, C, H, W) tensors.

    Cost: the two dense 7x7 convolutions dominate, ``2 * 49 * C^2 / rate`` weights. At yolov8n's P5 (C=256, rate=4,
    one row after SPPF) the block adds 1.64 M parameters (yolov8n has 3.16 M) and 1.31 GFLOPs at 640 px (20 x 20;
    yolov8n is 8.9 GFLOPs, unfused, as Ultralytics counts); at P3 (C=64, 80 x 80) 0.10 M parameters and 1.31 GFLOPs
    as well. The reference's 7x7 convolutions are not grouped, and neither are these.

    YAML: ``[-1, 1, GAM, [rate]]`` (aliases ``GAM_Attention``, ``GAMAttention``), all args optional; input channels
    are inferred. ``rate`` is the reduction ratio of both the channel MLP and the spatial convolutions' hidden width
    ``int(C / rate)``.

    State dict: the reference's keys and shapes (``channel_attention.{0,2}`` Linear, ``spatial_attention.{0,3}``
    convolutions with bias and ``spatial_attention.{1,4}`` BatchNorms), so
    ``block.load_state_dict(reference.state_dict())`` works. After `fuse` the BatchNorms are folded into the
    convolutions (``spatial_attention.{1,4}`` become Identity).

    Departures from the reference: none in the computation. The reference's output-channel argument (``out_channels``
    in some copies) is not taken: the block is channel-preserving and its channels are inferred. The channel MLP runs on
    a permuted view, without the reference's ``view(b, -1, c)`` reshape (same numbers, no shape constants in ONNX).

    Identity start: the identity mix of `AttentionBlock`.

    Attributes:
        channel_attention (nn.Sequential): Linear C -> C/rate, ReLU, Linear C/rate -> C, applied per position.
        spatial_attention (nn.Sequential): conv7x7 C -> C/rate, BN, ReLU, conv7x7 C/rate -> C, BN.

    Examples:
        >>> gam = GAM(64)
        >>> gam(torch.randn(2, 64, 20, 20)).shape
        torch.Size([2, 64, 20, 20])
    """

    def __init__(self, c1: int, rate: int = 4) -> None:
        """Initialize GAM.

        Args:
            c1 (int): Input (and output) channels C.
            rate (int): Reduction ratio; the hidden width is ``int(C / rate)``, which must be at least 1.
        """
        super().__init__()
        check_channels("GAM", c1)
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not rate > 0:
            raise BlockArgumentError(f"GAM: rate (reduction ratio) must be a positive number, got {rate!r}")
        hidden = int(c1 / rate)
        if hidden < 1:
            raise BlockArgumentError(
                f"GAM: rate={rate} leaves no hidden channel for {c1} input channels (int({c1} / {rate}) = 0); expected "
                f"rate <= {c1}. Input channels are inferred, so pass a ratio such as 4, not a channel count"
            )
        self.channel_attention = nn.Sequential(nn.Linear(c1, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, c1))
        self.spatial_attention = nn.Sequential(
            nn.Conv2d(c1, hidden, kernel_size=7, padding=3),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, c1, kernel_size=7, padding=3),
            nn.BatchNorm2d(c1),
        )

    def channel_gate(self, x: torch.Tensor) -> torch.Tensor:
        """Compute the channel gate ``Mc`` (B, C, H, W) of input ``x`` (B, C, H, W)."""
        return self.channel_attention(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2).sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the channel gate, then the spatial gate.

        Args:
            x (torch.Tensor): Input of shape (B, C, H, W).

        Returns:
            (torch.Tensor): Output of shape (B, C, H, W).
        """
        mc = self.channel_gate(x)
        x1 = x * mc  # kept by the spatial gate's first convolution in training, as its input
        ms = self.spatial_attention(x1).sigmoid()
        mix = self.identity_mix
        if mix is None:
            return self.gated(x1, ms)
        if gating.lean_applies([x, mc, ms, mix]):
            return self.gated(x, mc, ms)  # training: the mix on the gate Mc * Ms of x, keeping x and the two gates
        return self.blend(x, x1 * ms)  # inference: x1 exists, so the mix is one lerp

    def attention_map(self, x: torch.Tensor, output: torch.Tensor) -> tuple[torch.Tensor, str]:
        """Return the spatial gate ``Ms`` averaged over channels (B, H, W), and what it is."""
        x1 = x * self.channel_gate(x)
        return self.spatial_attention(x1).sigmoid().mean(1), "spatial gate (channel mean)"

    def fuse(self) -> GAM:
        """Fold the spatial gate's BatchNorms (running statistics) into its convolutions, for inference. Idempotent.

        Returns:
            (GAM): This block.
        """
        sa = self.spatial_attention
        for conv, bn in ((0, 1), (3, 4)):
            if isinstance(sa[bn], nn.BatchNorm2d):
                sa[conv], sa[bn] = fold_batchnorm(sa[conv], sa[bn]), nn.Identity()
        return self
