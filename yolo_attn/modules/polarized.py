"""Polarized self-attention, parallel and sequential (Liu et al., arXiv 2107.00782)."""

from __future__ import annotations

import torch
from torch import nn

from yolo_attn.modules.arg_checks import BlockArgumentError, check_channels
from yolo_attn.modules.identity_start import AttentionBlock
from yolo_attn.registry import register_block


def _kaiming_fan_in_(conv: nn.Conv2d) -> None:
    """The reference's ``kaiming_init(conv, mode='fan_in')``: He-normal weights for ReLU, zero bias."""
    nn.init.kaiming_normal_(conv.weight, a=0, mode="fan_in", nonlinearity="relu")
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


class _PolarizedBase(AttentionBlock):
    """The convolutions and the two branches both polarized self-attention layouts share (the reference's names)."""

    block_name = "PolarizedSelfAttention"
    min_channels = 2

    def __init__(self, c1: int) -> None:
        """Build the query and value projections of both branches (``conv_up`` is the subclass's).

        Args:
            c1 (int): Input (and output) channels C, the reference's ``inplanes`` and ``planes``.
        """
        super().__init__()
        check_channels(self.block_name, c1)
        if c1 < self.min_channels:
            raise BlockArgumentError(
                f"{self.block_name}: needs at least {self.min_channels} input channels (its inner width is C // 2"
                f"{' and its channel bottleneck C // 2 // 4' if self.min_channels > 2 else ''}), got {c1}"
            )
        self.inplanes = self.planes = c1
        self.inter_planes = c1 // 2
        self.conv_q_right = nn.Conv2d(c1, 1, kernel_size=1, bias=False)
        self.conv_v_right = nn.Conv2d(c1, self.inter_planes, kernel_size=1, bias=False)
        self.conv_q_left = nn.Conv2d(c1, self.inter_planes, kernel_size=1, bias=False)
        self.conv_v_left = nn.Conv2d(c1, self.inter_planes, kernel_size=1, bias=False)
        for conv in (self.conv_q_right, self.conv_v_right, self.conv_q_left, self.conv_v_left):
            _kaiming_fan_in_(conv)

    def channel_gate(self, x: torch.Tensor) -> torch.Tensor:
        """The channel-only branch (the reference's ``spatial_pool``): a gate of shape (B, C, 1, 1).

        Args:
            x (torch.Tensor): Input of shape (B, C, H, W).

        Returns:
            (torch.Tensor): ``sigmoid(conv_up(V_r . softmax_HW(q_r)))`` of shape (B, C, 1, 1).
        """
        v = self.conv_v_right(x).flatten(2)  # (B, C/2, HW)
        mask = self.conv_q_right(x).flatten(2).float().softmax(-1)  # (B, 1, HW), softmax in float32
        context = torch.matmul(v.float(), mask.transpose(1, 2)).to(v.dtype).unsqueeze(-1)  # (B, C/2, 1, 1)
        return self.conv_up(context).sigmoid()

    def spatial_gate(self, x: torch.Tensor) -> torch.Tensor:
        """The spatial-only branch (the reference's ``channel_pool``): a gate of shape (B, 1, H, W).

        Args:
            x (torch.Tensor): Input of shape (B, C, H, W).

        Returns:
            (torch.Tensor): The spatial gate of shape (B, 1, H, W) (softmax placement: see the subclasses).
        """
        raise NotImplementedError


@register_block(aliases=("PSA_p",))
class ParallelPolarizedSelfAttention(_PolarizedBase):
    """Polarized self-attention, parallel layout: a channel-only and a spatial-only gate of ``x``, summed.

    Paper: Liu, Shao, Wang, Han, Ji, Wang, "Polarized Self-Attention: Towards High-quality Pixel-wise Regression",
    arXiv 2107.00782 (Neurocomputing 2022). Reference code: DeLightCMU/PSA, ``semantic-segmentation/network/PSA.py``,
    class ``PSA_p`` (commit 588b370), which this block follows layer for layer with ``inplanes = planes = C``.

    With ``C' = C // 2``, all convolutions 1x1 without bias::

        channel-only   q_r = softmax_HW(conv_q_right(x))        (B, 1, HW)
                       v_r = conv_v_right(x)                     (B, C', HW)
                       a_c = sigmoid(conv_up(v_r . q_r^T))       (B, C, 1, 1)
        spatial-only   q_l = mean_HW(conv_q_left(x))             (B, 1, C')
                       v_l = conv_v_left(x)                      (B, C', HW)
                       a_s = sigmoid(softmax_HW(q_l . v_l))      (B, 1, H, W)
        out            = x * a_c + x * a_s = x * (a_c + a_s)

    Shapes: (B, C, H, W) -> (B, C, H, W), any H x W from 1 x 1 (the softmaxes run over the H*W positions).
    Parameters: ``C + 4 C C'``, 131,328 at C = 256.

    YAML: ``[-1, 1, ParallelPolarizedSelfAttention, []]`` (alias ``PSA_p``), no args; input channels are inferred.
    Ultralytics' own ``PSA`` (YOLOv10/YOLO11's position-sensitive attention) is another block and keeps its name.

    State dict: the reference's keys and shapes (``conv_q_right``, ``conv_v_right``, ``conv_up``, ``conv_q_left``,
    ``conv_v_left``), so the authors' ``PSA_p(C, C)`` state dict loads strictly both ways.

    Departures from the reference:
        - No ``planes``/``kernel_size``/``stride`` arguments: channel-preserving (``planes = inplanes = C``); the
          reference ignores ``kernel_size`` and ``stride`` != 1 would change the output size.
        - The softmaxes and the attention-pooling product run in float32 (AMP-safe); the result is cast back.
        - The adaptive average pool is a mean over H and W (same numbers, exports at any size).
        - The two products ``x * a_c + x * a_s`` are one ``x * (a_c + a_s)`` (same up to float rounding).
        - Not the forks' ``ParallelPolarizedSelfAttention`` (External-Attention-pytorch), which follows the paper:
          other names (``ch_wv``, ``ch_wq``, ``ch_wz``, ``sp_wv``, ``sp_wq``), conv biases, a LayerNorm(C) before the
          channel sigmoid, and the spatial softmax over the pooled query's C' channels instead of over the H*W
          positions after the product; its state dict does not load here.

    Identity start: the identity mix of `AttentionBlock`, blended on the summed gate.

    Attributes:
        inter_planes (int): Inner width C' = C // 2.
        conv_q_right (nn.Conv2d): Channel branch query, C -> 1.
        conv_v_right (nn.Conv2d): Channel branch value, C -> C'.
        conv_up (nn.Conv2d): Channel branch output, C' -> C.
        conv_q_left (nn.Conv2d): Spatial branch query, C -> C'.
        conv_v_left (nn.Conv2d): Spatial branch value, C -> C'.

    Examples:
        >>> psa = ParallelPolarizedSelfAttention(64)
        >>> psa(torch.randn(2, 64, 15, 20)).shape
        torch.Size([2, 64, 15, 20])
    """

    block_name = "ParallelPolarizedSelfAttention"

    def __init__(self, c1: int) -> None:
        """Initialize the parallel polarized self-attention.

        Args:
            c1 (int): Input (and output) channels C, at least 2.
        """
        super().__init__(c1)
        self.conv_up = nn.Conv2d(self.inter_planes, c1, kernel_size=1, bias=False)

    def spatial_gate(self, x: torch.Tensor) -> torch.Tensor:
        """The spatial-only gate ``sigmoid(softmax_HW(mean_HW(conv_q_left(x)) . conv_v_left(x)))`` (B, 1, H, W)."""
        q = self.conv_q_left(x).mean((2, 3)).unsqueeze(1)  # (B, 1, C')
        v = self.conv_v_left(x).flatten(2)  # (B, C', HW)
        context = torch.matmul(q.float(), v.float()).softmax(-1)  # (B, 1, HW), softmax over positions in float32
        return context.to(x.dtype).reshape(x.shape[0], 1, x.shape[2], x.shape[3]).sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reweight ``x`` by the sum of its channel-only and spatial-only gates.

        Args:
            x (torch.Tensor): Input of shape (B, C, H, W).

        Returns:
            (torch.Tensor): Output of shape (B, C, H, W).
        """
        return self.gated(x, self.channel_gate(x) + self.spatial_gate(x))

    def attention_map(self, x: torch.Tensor, output: torch.Tensor) -> tuple[torch.Tensor, str]:
        """Return the spatial-only gate (B, H, W), and what it is."""
        return self.spatial_gate(x)[:, 0], "spatial-only gate (parallel polarized self-attention)"


@register_block(aliases=("PSA_s",))
class SequentialPolarizedSelfAttention(_PolarizedBase):
    """Polarized self-attention, sequential layout: the channel-only gate, then the spatial-only gate of its output.

    Paper: Liu, Shao, Wang, Han, Ji, Wang, "Polarized Self-Attention: Towards High-quality Pixel-wise Regression",
    arXiv 2107.00782 (Neurocomputing 2022). Reference code: DeLightCMU/PSA, ``semantic-segmentation/network/PSA.py``,
    class ``PSA_s`` (commit 588b370), which this block follows layer for layer with ``inplanes = planes = C``.

    With ``C' = C // 2`` and ``C'' = C' // 4`` (the reference's ``ratio = 4``)::

        channel-only   q_r = softmax_HW(conv_q_right(x))                          (B, 1, HW)
                       v_r = conv_v_right(x)                                       (B, C', HW)
                       a_c = sigmoid(conv_up(v_r . q_r^T))                         (B, C, 1, 1)
                       conv_up = 1x1 conv C' -> C'' (bias), LayerNorm([C'', 1, 1]), ReLU, 1x1 conv C'' -> C (bias)
                       y   = x * a_c
        spatial-only   q_l = mean_HW(conv_q_left(y))                              (B, 1, C')
                       v_l = softmax_HW(conv_v_left(y))   (per channel)            (B, C', HW)
                       a_s = sigmoid(q_l . v_l)                                    (B, 1, H, W)
        out            = y * a_s = x * a_c * a_s

    In the sequential layout the reference applies the spatial softmax to each value channel before the product (the
    parallel layout applies it after). Shapes: (B, C, H, W) -> (B, C, H, W), any H x W from 1 x 1. Parameters at
    C = 256: 111,200.

    YAML: ``[-1, 1, SequentialPolarizedSelfAttention, []]`` (alias ``PSA_s``), no args; input channels are inferred;
    at least 8 (the bottleneck C'' must keep a channel). Ultralytics' own ``PSA`` is another block and keeps its name.

    State dict: the reference's keys and shapes (``conv_q_right``, ``conv_v_right``, ``conv_up.0``, ``conv_up.1``
    (LayerNorm), ``conv_up.3``, ``conv_q_left``, ``conv_v_left``), so the authors' ``PSA_s(C, C)`` state dict loads
    strictly both ways.

    Departures from the reference:
        - No ``planes``/``kernel_size``/``stride`` arguments: channel-preserving (``planes = inplanes = C``).
        - The softmaxes and the attention-pooling products run in float32 (AMP-safe); the results are cast back.
        - The adaptive average pool is a mean over H and W (same numbers, exports at any size).
        - The ReLU in ``conv_up`` is not in place (same numbers).
        - Not the forks' ``SequentialPolarizedSelfAttention`` (External-Attention-pytorch), which follows the paper:
          other names (``ch_wv``, ``ch_wq``, ``ch_wz``, ``sp_wv``, ``sp_wq``), conv biases, one C' -> C convolution
          and a LayerNorm(C) instead of the C' -> C'' -> C bottleneck, and the spatial softmax over the pooled
          query's C' channels instead of over each value channel's H*W positions; its state dict does not load here.

    Identity start: the identity mix of `AttentionBlock`, blended on the product of the two gates.

    Attributes:
        inter_planes (int): Inner width C' = C // 2.
        conv_q_right (nn.Conv2d): Channel branch query, C -> 1.
        conv_v_right (nn.Conv2d): Channel branch value, C -> C'.
        conv_up (nn.Sequential): Channel branch bottleneck C' -> C'' -> C with LayerNorm and ReLU.
        conv_q_left (nn.Conv2d): Spatial branch query, C -> C'.
        conv_v_left (nn.Conv2d): Spatial branch value, C -> C'.

    Examples:
        >>> psa = SequentialPolarizedSelfAttention(64)
        >>> psa(torch.randn(2, 64, 15, 20)).shape
        torch.Size([2, 64, 15, 20])
    """

    block_name = "SequentialPolarizedSelfAttention"
    min_channels = 8
    ratio = 4

    def __init__(self, c1: int) -> None:
        """Initialize the sequential polarized self-attention.

        Args:
            c1 (int): Input (and output) channels C, at least 8.
        """
        super().__init__(c1)
        hidden = self.inter_planes // self.ratio
        self.conv_up = nn.Sequential(
            nn.Conv2d(self.inter_planes, hidden, kernel_size=1),
            nn.LayerNorm([hidden, 1, 1]),
            nn.ReLU(),
            nn.Conv2d(hidden, c1, kernel_size=1),
        )

    def spatial_gate(self, x: torch.Tensor) -> torch.Tensor:
        """The spatial-only gate ``sigmoid(mean_HW(conv_q_left(x)) . softmax_HW(conv_v_left(x)))`` (B, 1, H, W)."""
        q = self.conv_q_left(x).mean((2, 3)).unsqueeze(1)  # (B, 1, C')
        v = self.conv_v_left(x).flatten(2).float().softmax(-1)  # (B, C', HW), per-channel softmax in float32
        context = torch.matmul(q.float(), v).to(x.dtype)  # (B, 1, HW)
        return context.reshape(x.shape[0], 1, x.shape[2], x.shape[3]).sigmoid()

    def gates(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the channel gate of ``x`` (B, C, 1, 1) and the spatial gate of ``x`` times it (B, 1, H, W)."""
        a_c = self.channel_gate(x)
        return a_c, self.spatial_gate(x * a_c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reweight ``x`` by its channel-only gate, then by the spatial-only gate of the result.

        Args:
            x (torch.Tensor): Input of shape (B, C, H, W).

        Returns:
            (torch.Tensor): Output of shape (B, C, H, W).
        """
        return self.gated(x, *self.gates(x))

    def attention_map(self, x: torch.Tensor, output: torch.Tensor) -> tuple[torch.Tensor, str]:
        """Return the spatial-only gate (B, H, W), and what it is."""
        return self.gates(x)[1][:, 0], "spatial-only gate (sequential polarized self-attention)"
