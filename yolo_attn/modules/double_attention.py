"""A2: the double attention block (Chen, Kalantidis, Li, Yan, Feng, NeurIPS 2018, A^2-Nets)."""

from __future__ import annotations

import torch
from torch import nn

from yolo_attn.modules.arg_checks import BlockArgumentError, check_bool, check_channels, check_positive_int
from yolo_attn.modules.identity_start import AttentionBlock
from yolo_attn.registry import register_block


@register_block(aliases=("A2Attention",))
class DoubleAttention(AttentionBlock):
    """Double attention: gather global descriptors by attention pooling, then distribute them to every position.

    Paper: Chen, Kalantidis, Li, Yan, Feng, "A^2-Nets: Double Attention Networks", NeurIPS 2018 (no official code).
    Code followed for the module, its arguments and its state dict: ``DoubleAttention`` of
    xmu-xiaoma666/External-Attention-pytorch (``model/attention/A2Atttention.py``), which the YOLO forks copy
    (z1069614715/objectdetection_script ``cv-attention/A2Attention.py``, with the defaults c_m = c_n = 128)::

        A = convA(x)  (B, c_m, HW),   Bm = convB(x)  (B, c_n, HW),   V = convV(x)  (B, c_n, HW)    1x1 convs, bias
        G = A @ softmax_HW(Bm)^T              (B, c_m, c_n)  gather: each of c_n descriptors attention-pools A
        Z = G @ softmax_cn(V)                 (B, c_m, HW)   distribute: each position mixes the c_n descriptors
        out = conv_reconstruct(Z)   (reconstruct=True, C channels)   or   Z (reconstruct=False, needs c_m == C)

    Shapes: (B, C, H, W) -> (B, C, H, W). Parameters: ``(C + 1)(c_m + 2 c_n) + (c_m + 1) C`` with reconstruct.

    YAML: ``[-1, 1, DoubleAttention, [c_m, c_n, reconstruct]]`` (alias ``A2Attention``), all args optional; input
    channels are inferred. ``c_m``: channels of the gathered features A; ``c_n``: number of attention maps and of
    global descriptors; ``reconstruct``: a 1x1 convolution c_m -> C back to the input width (without it, c_m must
    equal C, checked at build time).

    State dict: the reference's keys and shapes (``convA``, ``convB``, ``convV``, ``conv_reconstruct``), so
    ``block.load_state_dict(reference.state_dict())`` works; initialisation as the reference (Kaiming normal, fan-out,
    zero biases).

    Departures from the code followed, with the reason:
        - The gathering softmax runs over the H x W positions of each attention map, as the paper defines it (each
          ``g_i`` is an attention-weighted pool of A). External-Attention's current file normalises it over the c_n
          maps instead (``dim=1``), and the fork copy calls ``F.softmax`` without ``dim``, which on a 3-D tensor
          normalises over the batch: with batch 1 every weight is 1, and outputs depend on the other images.
        - The distribution softmax runs over the c_n descriptors at each position (the paper's and External-
          Attention's ``dim=1``), not over the batch (the fork copy).
        - Softmaxes and both products run in float32 and the result is cast back: under AMP, fp16 exponentials and the
          sum over H x W positions overflow (the NaNs reported for the fork copy, ligang002/ultralytics).
        - No residual: the paper adds the block's output to its input inside a ResNet unit; like the code followed,
          the block returns the reconstruction alone (and starts as the identity through its identity mix instead).

    Identity start: the identity mix of `AttentionBlock`.

    Attributes:
        c_m (int): Channels of the gathered features.
        c_n (int): Number of attention maps / global descriptors.
        reconstruct (bool): Whether ``conv_reconstruct`` maps back to C channels.

    Examples:
        >>> a2 = DoubleAttention(256)
        >>> a2(torch.randn(2, 256, 20, 20)).shape
        torch.Size([2, 256, 20, 20])
    """

    def __init__(self, c1: int, c_m: int = 128, c_n: int = 128, reconstruct: bool = True) -> None:
        """Initialize the double attention block.

        Args:
            c1 (int): Input (and output) channels C.
            c_m (int): Channels of the gathered features (equal to C when ``reconstruct`` is False).
            c_n (int): Number of attention maps and global descriptors.
            reconstruct (bool): Map the distributed features back to C channels with a 1x1 convolution.
        """
        super().__init__()
        check_channels("DoubleAttention", c1)
        self.c_m = check_positive_int("DoubleAttention", "c_m", c_m, "channels of the gathered features")
        self.c_n = check_positive_int("DoubleAttention", "c_n", c_n, "number of attention maps")
        self.reconstruct = check_bool("DoubleAttention", "reconstruct", reconstruct)
        if not reconstruct and c_m != c1:
            raise BlockArgumentError(
                f"DoubleAttention: reconstruct=false returns c_m={c_m} channels, but the block must keep its "
                f"{c1} input channels; set reconstruct=true, or c_m={c1}"
            )
        self.in_channels = c1
        self.convA = nn.Conv2d(c1, c_m, 1)
        self.convB = nn.Conv2d(c1, c_n, 1)
        self.convV = nn.Conv2d(c1, c_n, 1)
        if reconstruct:
            self.conv_reconstruct = nn.Conv2d(c_m, c1, kernel_size=1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                nn.init.zeros_(m.bias)

    def attention(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Compute the attention maps and vectors in float32.

        Args:
            x (torch.Tensor): Input of shape (B, C, H, W).

        Returns:
            maps (torch.Tensor): Gathering weights, softmax over positions, of shape (B, c_n, H*W).
            vectors (torch.Tensor): Distribution weights, softmax over the c_n descriptors, of shape (B, c_n, H*W).
        """
        maps = self.convB(x).flatten(2).float().softmax(-1)
        vectors = self.convV(x).flatten(2).float().softmax(1)
        return maps, vectors

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Gather global descriptors and distribute them to every position.

        Args:
            x (torch.Tensor): Input of shape (B, C, H, W).

        Returns:
            (torch.Tensor): Output of shape (B, C, H, W).
        """
        a = self.convA(x)
        maps, vectors = self.attention(x)
        with torch.autocast(x.device.type, enabled=False):  # AMP would cast the products back to float16
            descriptors = torch.bmm(a.flatten(2).float(), maps.transpose(1, 2))  # (B, c_m, c_n)
            z = torch.bmm(descriptors, vectors).to(a.dtype).reshape(a.shape)  # (B, c_m, H, W)
        if self.reconstruct:
            z = self.conv_reconstruct(z)
        return self.blend(x, z)

    def attention_map(self, x: torch.Tensor, output: torch.Tensor) -> tuple[torch.Tensor, str]:
        """Return the gathering attention maps summed over the c_n maps (B, H, W), and what it is."""
        maps, _ = self.attention(x)
        return maps.sum(1).reshape(x.shape[0], x.shape[2], x.shape[3]), "gathering attention (sum of the c_n maps)"
