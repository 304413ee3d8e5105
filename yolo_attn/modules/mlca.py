"""MLCA: Mixed Local Channel Attention (Wan et al., Engineering Applications of Artificial Intelligence, 2023)."""

from __future__ import annotations

import math
import numbers

import torch
from torch import nn

from yolo_attn.modules.arg_checks import BlockArgumentError, check_channels, check_positive_int
from yolo_attn.modules.identity_start import AttentionBlock
from yolo_attn.registry import register_block


def mlca_kernel_size(channels: int, gamma: float = 2, b: float = 1) -> int:
    """Return MLCA's 1-D kernel size, computed exactly as the reference code does (ECA's rule).

    ``t = int(abs(log(C, 2) + b) / gamma)``, then the next odd number if ``t`` is even.

    Args:
        channels (int): Channel count C.
        gamma (float): Slope of the channel-to-kernel mapping.
        b (float): Offset of the channel-to-kernel mapping.

    Returns:
        (int): Odd kernel size, e.g. 5 for C=256.
    """
    t = int(abs(math.log(channels, 2) + b) / gamma)
    return t if t % 2 else t + 1


def adaptive_pool_matrix(
    rows: torch.Tensor, cols: torch.Tensor, size: int | torch.Tensor, out: int | torch.Tensor
) -> torch.Tensor:
    """Return the (out, size) matrix ``P`` with ``P @ v`` = ``adaptive_avg_pool1d(v, out)`` along one axis.

    Adaptive average pooling gives output cell ``i`` the mean of input cells ``floor(i*L/n) <= j < ceil((i+1)*L/n)``
    (``L`` = ``size``, ``n`` = ``out``). The bounds are written as the integer comparisons ``n*(j+1) > i*L`` and
    ``n*j < (i+1)*L``, exact in floating point, so the matrix is built from tensors at run time: one graph serves every
    input size (traced ONNX included), where ``F.adaptive_avg_pool2d`` to a size other than 1 is exported with the
    kernel of the tracing size.

    Args:
        rows (torch.Tensor): Output indices ``arange(out)`` as a float column, shape (out, 1).
        cols (torch.Tensor): Input indices ``arange(size)`` as a float row, shape (1, size).
        size (int | torch.Tensor): Input length L (an int or a (1,) tensor).
        out (int | torch.Tensor): Output length n (an int or a (1,) tensor).

    Returns:
        (torch.Tensor): The pooling matrix of shape (out, size), rows summing to 1.
    """
    inside = (out * (cols + 1) > rows * size) & (out * cols < (rows + 1) * size)
    weights = inside.to(rows.dtype)
    return weights / weights.sum(1, keepdim=True)


@register_block
class MLCA(AttentionBlock):
    """Mixed Local Channel Attention: ECA-style 1-D convs on a local (s x s) and a global pooled descriptor, mixed.

    Paper: Wan, Yuan, Lu, Ma, Tian, Li, "Mixed local channel attention for object detection", Engineering Applications
    of Artificial Intelligence 123 (2023). Reference code: wandahangFY/MLCA, class ``MLCA`` in ``MLCA.py``, which this
    block follows. Steps, for ``x`` of shape (B, C, H, W) and ``s = local_size``:

    1. ``L = adaptive_avg_pool(x, s x s)`` (B, C, s, s); ``G = mean_{s x s}(L)`` (B, C) (the mean of the local cells,
       as the reference pools ``L``, not ``x``);
    2. local: ``L`` laid out position by position, channels innermost, as one sequence of length s*s*C; a 1-D conv
       ``conv_local`` (1 -> 1 channel, kernel k, no bias) along it; back to (B, C, s, s); ``a_l = sigmoid(.)``;
    3. global: ``conv`` (the same kind of 1-D conv) across the C channels of ``G``; ``a_g = sigmoid(.)`` (B, C, 1, 1);
    4. ``a = adaptive_avg_pool(a_g * (1 - local_weight) + a_l * local_weight, H x W)``: the s x s map taken back to
       the input size ("un-pooling" by adaptive average pooling, as the reference);
    5. ``out = x * a``.

    ``k`` follows ECA: ``t = int(|log2(C) + b| / gamma)``, the next odd number if ``t`` is even (`mlca_kernel_size`).

    Export: the reference pools with ``AdaptiveAvgPool2d(local_size)`` and un-pools with ``adaptive_avg_pool2d`` to
    (H, W). Traced for ONNX, both become fixed-kernel pools of the tracing size, wrong or failing at other sizes
    (the CoordAttention ONNX bug, houqb/CoordAttention#6). Here both are matrix products with pooling matrices built at
    run time from the input's H and W (`adaptive_pool_matrix`): the same numbers as adaptive pooling at every size (H,
    W smaller than, equal to, or not a multiple of ``s`` included), one ONNX graph with dynamic batch, H and W.

    YAML: ``[-1, 1, MLCA, [local_size, gamma, b, local_weight]]``, all optional, the reference's arguments after
    ``in_size`` with its defaults:

    - ``local_size`` (5): s, the side of the local pooled grid, a positive integer;
    - ``gamma`` (2) and ``b`` (1): the kernel-size rule above (``gamma > 0``);
    - ``local_weight`` (0.5): the weight of the local attention in the mix, a number in [0, 1].

    State dict: the reference module's keys and shapes (``conv.weight`` and ``conv_local.weight``, each (1, 1, k); the
    reference's pooling modules hold no tensors), so ``block.load_state_dict(reference.state_dict())`` works without
    remapping (plus ``identity_mix`` after `start_as_identity`).

    Departures from the reference: the pooling operators (above), computing the same numbers. The reference's unused
    attributes and its debug prints (in older versions of the file) are dropped. Initialisation: both 1-D convs start
    at zero, so both attentions are exactly 0.5 and a fresh block scales ``x`` uniformly by 0.5, as ECA does (both
    convs get a gradient at the first step). There is no ``forward_plain``: the export-friendly pooling products cost
    more operations than the reference's two adaptive pools, which export only at the tracing size.

    Cost, one row after yolov8n's SPPF (C=256, 20 x 20 at 640 px), defaults: 10 parameters (two 5-tap convs), +0.007
    GFLOPs by Ultralytics ``get_flops``; the pooling products add about 2.6 MFLOPs.

    Attributes:
        local_size (int): s.
        local_weight (float): Weight of the local attention.
        conv (nn.Conv1d): Global 1-D conv across channels, kernel k, no bias.
        conv_local (nn.Conv1d): Local 1-D conv along the position-major sequence, kernel k, no bias.

    Examples:
        >>> mlca = MLCA(64)
        >>> mlca(torch.randn(2, 64, 20, 13)).shape
        torch.Size([2, 64, 20, 13])
    """

    def __init__(self, c1: int, local_size: int = 5, gamma: float = 2, b: float = 1, local_weight: float = 0.5) -> None:
        """Initialize MLCA.

        Args:
            c1 (int): Input (and output) channels C.
            local_size (int): Side s of the local pooled grid.
            gamma (float): Slope of the ECA kernel-size rule, > 0.
            b (float): Offset of the ECA kernel-size rule.
            local_weight (float): Weight of the local attention in [0, 1]; the global one gets ``1 - local_weight``.
        """
        super().__init__()
        check_channels("MLCA", c1)
        check_positive_int("MLCA", "local_size", local_size, "side of the local pooled grid")
        for name, value in (("gamma", gamma), ("b", b), ("local_weight", local_weight)):
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise BlockArgumentError(f"MLCA: {name} must be a number, got {value!r} ({type(value).__name__})")
        if gamma <= 0:
            raise BlockArgumentError(f"MLCA: gamma (slope of the kernel-size rule) must be > 0, got {gamma!r}")
        if not 0 <= local_weight <= 1:
            raise BlockArgumentError(
                f"MLCA: local_weight (weight of the local attention) must be in [0, 1], got {local_weight!r}"
            )
        self.local_size = local_size
        self.local_weight = float(local_weight)
        k = mlca_kernel_size(c1, gamma, b)
        self.conv = nn.Conv1d(1, 1, k, padding=(k - 1) // 2, bias=False)
        self.conv_local = nn.Conv1d(1, 1, k, padding=(k - 1) // 2, bias=False)
        nn.init.zeros_(self.conv.weight)  # both attentions start at 0.5: a fresh block scales x by exactly 0.5
        nn.init.zeros_(self.conv_local.weight)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """Compute the attention map.

        Args:
            x (torch.Tensor): Input of shape (B, C, H, W).

        Returns:
            (torch.Tensor): Attention in (0, 1) of shape (B, C, H, W).
        """
        s = self.local_size
        b, c = x.shape[0], x.shape[1]
        h_pos, w_pos = x[0, 0, :, 0], x[0, 0, 0, :]
        # arange(H) and arange(W) derived from x, so a traced graph keeps H and W dynamic; float32 whatever x's dtype,
        # so the index comparisons stay exact (float16 holds integers exactly only up to 2048)
        rows_h = torch.ones_like(h_pos, dtype=torch.float32).cumsum(0) - 1
        cols_w = torch.ones_like(w_pos, dtype=torch.float32).cumsum(0) - 1
        grid = torch.arange(s, dtype=torch.float32, device=x.device)
        height, width = rows_h[-1:] + 1, cols_w[-1:] + 1  # H and W as (1,) tensors
        pool_h = adaptive_pool_matrix(grid[:, None], rows_h[None], height, s).to(x.dtype)  # (s, H)
        pool_w = adaptive_pool_matrix(grid[:, None], cols_w[None], width, s).to(x.dtype)  # (s, W)
        local = pool_h @ x @ pool_w.T  # (B, C, s, s)
        pooled = local.mean((2, 3))  # (B, C)
        sequence = local.flatten(2).transpose(1, 2).reshape(b, 1, -1)  # (B, 1, s*s*C), channels innermost
        y_local = self.conv_local(sequence).reshape(b, s * s, c).transpose(1, 2).reshape(b, c, s, s)
        y_global = self.conv(pooled[:, None]).reshape(b, c, 1, 1)
        mixed = y_global.sigmoid() * (1 - self.local_weight) + y_local.sigmoid() * self.local_weight  # (B, C, s, s)
        unpool_h = adaptive_pool_matrix(rows_h[:, None], grid[None], s, height).to(x.dtype)  # (H, s)
        unpool_w = adaptive_pool_matrix(cols_w[:, None], grid[None], s, width).to(x.dtype)  # (W, s)
        return unpool_h @ mixed @ unpool_w.T

    def attention_map(self, x: torch.Tensor, output: torch.Tensor) -> tuple[torch.Tensor, str]:
        """Return the attention map averaged over channels (B, H, W), and what it is."""
        return self.gate(x).mean(1), "mixed local/global channel attention, mean over channels"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reweight ``x`` by its mixed local channel attention.

        Args:
            x (torch.Tensor): Input of shape (B, C, H, W).

        Returns:
            (torch.Tensor): Output of shape (B, C, H, W).
        """
        return self.gated(x, self.gate(x))
