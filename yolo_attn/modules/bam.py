"""BAM: Bottleneck Attention Module (Park, Woo, Lee, Kweon, BMVC 2018)."""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn

from yolo_attn.modules.arg_checks import check_channels, check_positive_int, check_reduction
from yolo_attn.modules.fusion import fold_batchnorm
from yolo_attn.modules.identity_start import AttentionBlock
from yolo_attn.registry import register_block

DILATION_CONV_NUM = 2  # the reference SpatialGate's dilation_conv_num (not a YAML arg: the reference BAM fixes it)


class BAMChannelGate(nn.Module):
    """BAM channel branch: global average pool, then ``Linear(C, C/r) -> BatchNorm1d -> ReLU -> Linear(C/r, C)``.

    The layers sit in ``gate_c`` under the reference's names (``gate_c_fc_0``, ``gate_c_bn_1``, ``gate_c_relu_1``,
    ``gate_c_fc_final``), so the state dict matches the reference ``ChannelGate``.

    Attributes:
        gate_c (nn.Sequential): The MLP, after a ``flatten`` (kept for the reference's layout).
    """

    def __init__(self, c1: int, reduction: int = 16) -> None:
        """Initialize the channel branch for ``c1`` channels and hidden width ``c1 // reduction``."""
        super().__init__()
        hidden = c1 // reduction
        self.gate_c = nn.Sequential()
        self.gate_c.add_module("flatten", nn.Flatten())
        first = nn.Linear(c1, hidden)
        # its bias feeds BatchNorm1d, which cancels it in training (batch statistics) and absorbs it in its running
        # mean, so it never gets a gradient: kept as a buffer under the same key, so the reference state dict loads
        bias = first.bias.detach().clone()
        del first.bias
        first.register_buffer("bias", bias)
        self.gate_c.add_module("gate_c_fc_0", first)
        self.gate_c.add_module("gate_c_bn_1", nn.BatchNorm1d(hidden))
        self.gate_c.add_module("gate_c_relu_1", nn.ReLU())
        self.gate_c.add_module("gate_c_fc_final", nn.Linear(hidden, c1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the channel attention logits (B, C, 1, 1) for ``x`` (B, C, H, W)."""
        fc, bn, relu, final = (self.gate_c[i] for i in range(1, 5))
        h = fc(x.mean((2, 3)))
        if isinstance(bn, nn.BatchNorm1d):
            if self.training and h.shape[0] == 1:  # one value per channel: normalise by the running statistics
                h = F.batch_norm(h, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
            else:
                h = bn(h)
        return final(relu(h))[:, :, None, None]

    def fuse(self) -> BAMChannelGate:
        """Fold ``gate_c_bn_1`` (running statistics) into ``gate_c_fc_0``, for inference. Idempotent."""
        bn = self.gate_c.gate_c_bn_1
        if isinstance(bn, nn.BatchNorm1d):
            fc = self.gate_c.gate_c_fc_0
            fused = nn.Linear(fc.in_features, fc.out_features, device=fc.weight.device, dtype=fc.weight.dtype)
            with torch.no_grad():
                scale = (bn.running_var + bn.eps).rsqrt() * bn.weight
                fused.weight.copy_(fc.weight * scale[:, None])
                fused.bias.copy_((fc.bias - bn.running_mean) * scale + bn.bias)
            self.gate_c.gate_c_fc_0, self.gate_c.gate_c_bn_1 = fused, nn.Identity()
        return self


class BAMSpatialGate(nn.Module):
    """BAM spatial branch: 1x1 reduce, two dilated 3x3 convs, 1x1 to one map; BatchNorm + ReLU after each but the last.

    The layers sit in ``gate_s`` under the reference's names (``gate_s_conv_reduce0``, ``gate_s_bn_reduce0``,
    ``gate_s_relu_reduce0``, ``gate_s_conv_di_{i}``, ``gate_s_bn_di_{i}``, ``gate_s_relu_di_{i}``,
    ``gate_s_conv_final``), so the state dict matches the reference ``SpatialGate``.

    Attributes:
        gate_s (nn.Sequential): The convolutions.
    """

    def __init__(self, c1: int, reduction: int = 16, dia_val: int = 4) -> None:
        """Initialize the spatial branch for ``c1`` channels, hidden width ``c1 // reduction``, dilation ``dia_val``."""
        super().__init__()
        hidden = c1 // reduction
        self.gate_s = nn.Sequential()
        self.gate_s.add_module("gate_s_conv_reduce0", nn.Conv2d(c1, hidden, 1))
        self.gate_s.add_module("gate_s_bn_reduce0", nn.BatchNorm2d(hidden))
        self.gate_s.add_module("gate_s_relu_reduce0", nn.ReLU())
        for i in range(DILATION_CONV_NUM):
            conv = nn.Conv2d(hidden, hidden, 3, padding=dia_val, dilation=dia_val)
            self.gate_s.add_module(f"gate_s_conv_di_{i}", conv)
            self.gate_s.add_module(f"gate_s_bn_di_{i}", nn.BatchNorm2d(hidden))
            self.gate_s.add_module(f"gate_s_relu_di_{i}", nn.ReLU())
        self.gate_s.add_module("gate_s_conv_final", nn.Conv2d(hidden, 1, 1))
        nn.init.zeros_(self.gate_s.gate_s_conv_final.weight)  # M_s = 0: a fresh BAM scales x by exactly 1.5
        nn.init.zeros_(self.gate_s.gate_s_conv_final.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the spatial attention logits (B, 1, H, W) for ``x`` (B, C, H, W)."""
        return self.gate_s(x)

    def fuse(self) -> BAMSpatialGate:
        """Fold each BatchNorm (running statistics) into the conv before it, for inference. Idempotent."""
        names = list(self.gate_s._modules)
        for conv_name, bn_name in itertools.pairwise(names):
            bn = self.gate_s._modules[bn_name]
            if isinstance(bn, nn.BatchNorm2d):
                self.gate_s._modules[conv_name] = fold_batchnorm(self.gate_s._modules[conv_name], bn)
                self.gate_s._modules[bn_name] = nn.Identity()
        return self


@register_block(aliases=("BAMBlock",))
class BAM(AttentionBlock):
    """Bottleneck Attention Module: a channel branch and a dilated spatial branch, combined into a residual gate.

    Paper: Park, Woo, Lee, Kweon, "BAM: Bottleneck Attention Module", BMVC 2018. Reference code: Jongchan/attention-
    module, ``MODELS/bam.py`` (classes ``ChannelGate``, ``SpatialGate``, ``BAM``), which this block follows.

    ``out = x * (1 + sigmoid(M_c(x) * M_s(x)))``, with (for ``x`` of shape (B, C, H, W), hidden width C/r):

    - ``M_c``: global average pool -> Linear C -> C/r -> BatchNorm1d -> ReLU -> Linear C/r -> C, (B, C, 1, 1);
    - ``M_s``: 1x1 conv C -> C/r -> BN -> ReLU, two times [3x3 conv C/r -> C/r, dilation d, padding d -> BN -> ReLU],
      1x1 conv C/r -> 1, (B, 1, H, W);

    the product broadcasts to (B, C, H, W). All convs and Linears have bias, as in the reference. Every conv keeps
    H x W, so the block runs at any feature-map size.

    YAML: ``[-1, 1, BAM, [reduction, dia_val]]`` (alias ``BAMBlock``, the zoo class name), all optional:

    - ``reduction`` (default 16): the reduction ratio r of both branches, ``1 <= r <= C`` (the reference's
      ``reduction_ratio=16`` of ``ChannelGate`` and ``SpatialGate``);
    - ``dia_val`` (default 4): the dilation d of the two 3x3 convs, the reference ``SpatialGate``'s
      ``dilation_val=4`` and the paper's value. The zoo copy (``BAMBlock`` of xmu-xiaoma666/External-Attention-pytorch)
      defaults to 2; write ``[16, 2]`` for it.

    The reference's other settings are fixed as in its ``BAM``: one hidden Linear layer (``num_layers=1``) and two
    dilated convs (``dilation_conv_num=2``).

    State dict: the reference module's keys and shapes (``channel_att.gate_c.gate_c_fc_0.weight``, ...,
    ``spatial_att.gate_s.gate_s_conv_final.bias``), so ``block.load_state_dict(reference.state_dict())`` works
    without remapping (plus ``identity_mix`` after `start_as_identity`). After `fuse` the BatchNorms are folded.

    Departures from the reference, with reasons:

    - Global pooling is the mean over H and W. The reference pools with ``avg_pool2d(x, H, stride=H)``, which is the
      global mean only for square maps: with H < W < 2H it averages the first H columns only, with W < H it raises,
      and with W >= 2H its Linear gets more than C inputs and raises. The paper says global average pooling, and YOLO
      feature maps are often not square (rectangular inference, 640 x 384 video frames).
    - The reference ``ChannelGate`` sets ``self.gate_activation = gate_activation``, an undefined name (it raises
      ``NameError``); the attribute is unused and dropped.
    - ``channel_att.gate_c.gate_c_fc_0.bias`` is a buffer, not a parameter: it feeds ``BatchNorm1d``, which cancels
      it in training and absorbs it into its running mean, so its gradient is always zero (the contract requires every
      parameter to learn). Its key and shape are the reference's, so state dicts load both ways; the block has
      C/r fewer trainable parameters than the reference.
    - In training with a batch of one, ``BatchNorm1d`` has one value per channel and PyTorch refuses it; the channel
      branch then normalises by the running statistics (leaving them unchanged) instead of failing.

    Initialisation: ``gate_s_conv_final`` starts at zero (weight and bias), so ``M_s = 0`` and a fresh block scales
    ``x`` uniformly by exactly ``1 + sigmoid(0) = 1.5`` (the formula's gate lies in (1, 2), so no init gives the
    package's usual 0.5; a uniform scale keeps every feature's relative size). Every parameter gets a gradient from
    the second step. The other layers keep PyTorch's defaults, as the reference module.

    Cost, one row after yolov8n's SPPF (C=256, 20 x 20 at 640 px), defaults: 17,345 parameters (plus the C/r
    bias buffer and BatchNorm statistics), +0.007 GFLOPs.

    Inference: `fuse` folds every BatchNorm into the layer before it (Ultralytics' ``model.fuse()`` calls it).

    Attributes:
        channel_att (BAMChannelGate): The channel branch ``M_c``.
        spatial_att (BAMSpatialGate): The spatial branch ``M_s``.

    Examples:
        >>> bam = BAM(64)
        >>> bam(torch.randn(2, 64, 20, 24)).shape
        torch.Size([2, 64, 20, 24])
    """

    def __init__(self, c1: int, reduction: int = 16, dia_val: int = 4) -> None:
        """Initialize BAM.

        Args:
            c1 (int): Input (and output) channels C.
            reduction (int): Reduction ratio of both branches, ``1 <= reduction <= C``.
            dia_val (int): Dilation (and padding) of the spatial branch's two 3x3 convs, a positive integer.
        """
        super().__init__()
        check_channels("BAM", c1)
        check_reduction("BAM", c1, reduction)
        check_positive_int("BAM", "dia_val", dia_val, "dilation of the spatial branch's 3x3 convs")
        self.channel_att = BAMChannelGate(c1, reduction)
        self.spatial_att = BAMSpatialGate(c1, reduction, dia_val)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """Return the attention ``1 + sigmoid(M_c(x) * M_s(x))`` in (1, 2), (B, C, H, W), for ``x`` (B, C, H, W)."""
        return 1 + (self.channel_att(x) * self.spatial_att(x)).sigmoid()

    def attention_map(self, x: torch.Tensor, output: torch.Tensor) -> tuple[torch.Tensor, str]:
        """Return the attention multiplying ``x``, averaged over channels (B, H, W), and what it is."""
        return self.attention(x).mean(1), "1 + sigmoid(M_c * M_s), mean over channels"

    def fuse(self) -> BAM:
        """Fold the BatchNorms of both branches, for inference. Idempotent.

        Returns:
            (BAM): This block.
        """
        self.channel_att.fuse()
        self.spatial_att.fuse()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reweight ``x`` by BAM's residual attention.

        Args:
            x (torch.Tensor): Input of shape (B, C, H, W).

        Returns:
            (torch.Tensor): Output of shape (B, C, H, W).
        """
        return self.gated(x, self.attention(x))
