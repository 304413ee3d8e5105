"""DySample: a dynamic upsampler that learns where to sample (Liu, Lu, Fu, Cao, ICCV 2023)."""

from __future__ import annotations

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
from yolo_attn.modules.identity_start import AttentionBlock, lerp
from yolo_attn.registry import register_block


@register_block(replaces=nn.Upsample)
class DySample(AttentionBlock):
    """DySample: upsampling by bilinear sampling at learned, content-dependent offsets; replaces an ``nn.Upsample`` row.

    Paper: Liu, Lu, Fu, Cao, "Learning to Upsample by Learning to Sample", ICCV 2023. Reference code:
    tiny-smart/dysample ``dysample.py``, class ``DySample`` (newest version, commit efcf8ae: ``scope`` without bias).

    With s = ``scale`` and G = ``groups``, style ``"lp"`` (linear projection, then pixel shuffle)::

        o      = offset(x) * 0.25 + init_pos                          (B, 2*G*s^2, H, W)      (static scope)
        o      = offset(x) * sigmoid(scope(x)) * 0.5 + init_pos        (dynamic scope, ``dyscope``)
        p      = (pixel centre (w + 0.5, h + 0.5) + o) normalised by (W, H) to [-1, 1], pixel-shuffled by s
        out    = grid_sample(x in G groups, p, bilinear, border, align_corners=False)     (B, C, s*H, s*W)

    ``init_pos`` puts the s x s sub-pixels of each input pixel at their bilinear-upsampling positions, so with zero
    offsets DySample is bilinear upsampling. Style ``"pl"`` (pixel shuffle, then linear projection) computes the
    offsets at the output resolution from ``pixel_shuffle(x, s)`` (C/s^2 channels, 2*G outputs) and pixel-unshuffles
    them back.

    Shapes: (B, C, H, W) -> (B, C, s*H, s*W), any H, W >= 1. Parameters: ``(C + 1) * 2 G s^2`` (``lp``, 2 080 at
    C=64, G=4, s=2), twice that less the bias with ``dyscope``; ``pl``: ``(C/s^2 + 1) * 2 G``.

    YAML: ``[-1, 1, DySample, [scale, style, groups, dyscope]]`` in place of ``[-1, 1, nn.Upsample, [None, 2,
    "nearest"]]``, all args optional (defaults 2, "lp", 4, false, the reference's); input channels are inferred.
    ``scale`` is the upsampling factor (the replaced ``nn.Upsample``'s); ``style`` is ``"lp"`` or ``"pl"``; ``groups``
    is the number of channel groups sharing one offset field (must divide C; ``pl`` also needs s^2 to divide C);
    ``dyscope`` adds the dynamic scope factor.

    State dict: the reference's keys and shapes (``offset.weight``, ``offset.bias``, ``scope.weight`` with
    ``dyscope``, the ``init_pos`` buffer), so ``block.load_state_dict(reference.state_dict())`` works.

    Departures from the reference:
        - The grid normaliser (W, H) is computed from the offsets' tensors, not ``torch.tensor([W, H])``: the
          reference's is a constant in an ONNX trace, so an export with dynamic H and W samples the wrong places.
        - The sampling grid and ``grid_sample`` are computed in float32 (under autocast, or in a half model), the
          output cast back to the input's dtype; the reference computes the grid in the input's dtype.
        - Arguments are checked at build time (``BlockArgumentError``) instead of by ``assert``.
        - Identity start (below): with ``identity_mix`` the output is blended with nearest upsampling.

    ONNX: ``grid_sample`` exports as ``GridSample``, opset 16 or later (``onnx_min_opset``); H and W follow the input.

    Identity start: DySample takes the place of nearest-neighbour upsampling, not of the identity. Started as the
    identity (a fresh block in a pretrained network), it gets ``identity_mix = 0`` and returns
    ``nearest(x) + identity_mix * (dysample(x) - nearest(x))``: at step 0 exactly the ``nn.Upsample(None, s,
    "nearest")`` it replaces, so a fine-tune starts from the pretrained model's predictions, and training moves the
    mix (then the offsets) away. Built from scratch it has no mix and computes the reference's formula exactly (at
    zero offsets: bilinear upsampling).

    Attributes:
        scale (int): Upsampling factor s.
        style (str): ``"lp"`` or ``"pl"``.
        groups (int): Offset groups G.
        offset (nn.Conv2d): 1x1 convolution to 2*G*s^2 (``lp``) or 2*G (``pl``) offset channels, with bias.
        scope (nn.Conv2d | None): 1x1 convolution of the dynamic scope, no bias (``dyscope``), else None.
        init_pos (torch.Tensor): Buffer (1, 2*G*s^2, 1, 1): the sub-pixel positions of bilinear upsampling.

    Examples:
        >>> up = DySample(64)
        >>> up(torch.randn(2, 64, 20, 15)).shape
        torch.Size([2, 64, 40, 30])
    """

    onnx_min_opset: int = 16  # the lowest ONNX opset it exports at: grid_sample is ONNX GridSample (opset 16)

    def __init__(self, c1: int, scale: int = 2, style: str = "lp", groups: int = 4, dyscope: bool = False) -> None:
        """Initialize DySample.

        Args:
            c1 (int): Input (and output) channels C.
            scale (int): Upsampling factor s (an integer >= 1).
            style (str): ``"lp"`` (offsets from x) or ``"pl"`` (offsets from ``pixel_shuffle(x, s)``).
            groups (int): Offset groups G; must divide C.
            dyscope (bool): Dynamic scope (a second 1x1 convolution whose sigmoid scales the offsets).
        """
        super().__init__()
        check_channels("DySample", c1)
        check_positive_int("DySample", "scale", scale, "upsampling factor")
        check_choice("DySample", "style", style, ("lp", "pl"))
        check_positive_int("DySample", "groups", groups, "number of offset groups")
        check_bool("DySample", "dyscope", dyscope)
        if c1 % groups:
            raise BlockArgumentError(
                f"DySample: groups={groups} must divide the input channels, but {c1} channels do not split into "
                f"{groups} equal groups ({c1} % {groups} = {c1 % groups}). Input channels are inferred, so pass a "
                "group count, not a channel count"
            )
        if style == "pl" and c1 % scale**2:
            raise BlockArgumentError(
                f"DySample: style='pl' pixel-shuffles the input by scale={scale}, so scale^2 = {scale**2} must divide "
                f"the input channels, but {c1} % {scale**2} = {c1 % scale**2}; use style='lp' or another scale"
            )
        self.scale, self.style, self.groups = scale, style, groups
        in_channels = c1 // scale**2 if style == "pl" else c1
        out_channels = 2 * groups if style == "pl" else 2 * groups * scale**2
        self.offset = nn.Conv2d(in_channels, out_channels, 1)
        nn.init.normal_(self.offset.weight, 0.0, 0.001)
        nn.init.zeros_(self.offset.bias)
        if dyscope:
            self.scope = nn.Conv2d(in_channels, out_channels, 1, bias=False)
            nn.init.zeros_(self.scope.weight)
        else:
            self.register_module("scope", None)
        self.register_buffer("init_pos", self._init_pos())

    @classmethod
    def replaced_args(cls, scale: int = 2, style: str = "lp", groups: int = 4, dyscope: bool = False) -> list:
        """Return the args of the ``nn.Upsample`` row a DySample row stands in for: nearest upsampling by ``scale``."""
        return [None, scale, "nearest"]

    def _init_pos(self) -> torch.Tensor:
        """Return the sub-pixel offsets of bilinear upsampling, (1, 2*G*s^2, 1, 1): x offsets, then y offsets."""
        s = self.scale
        h = (torch.arange(s, dtype=torch.float32) - (s - 1) / 2) / s  # (2i + 1 - s) / (2s)
        x_off = h.view(1, s).expand(s, s)  # sub-pixel (i, j) moves by h[j] along x
        y_off = h.view(s, 1).expand(s, s)  # and by h[i] along y
        return torch.stack((x_off, y_off)).repeat(1, self.groups, 1).reshape(1, -1, 1, 1)

    def sample(self, x: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
        """Sample ``x`` bilinearly at each input pixel's centre plus its sub-pixel offsets.

        Args:
            x (torch.Tensor): Input of shape (B, C, H, W).
            offset (torch.Tensor): Offsets in input pixels, (B, 2*G*s^2, H, W): the x offsets, then the y offsets.

        Returns:
            (torch.Tensor): Output of shape (B, C, s*H, s*W), in ``x``'s dtype.
        """
        s = self.scale
        b, _, h, w = offset.shape
        offset = offset.float().view(b, 2, -1, h, w)
        coords_h = torch.arange(h, device=x.device, dtype=torch.float32) + 0.5
        coords_w = torch.arange(w, device=x.device, dtype=torch.float32) + 0.5
        coords = torch.stack(torch.meshgrid(coords_w, coords_h, indexing="ij")).transpose(1, 2)  # (2, H, W): x, y
        normalizer = (torch.stack((coords_w[-1], coords_h[-1])) + 0.5).view(1, 2, 1, 1, 1)  # (W, H), traced
        grid = 2 * (coords.view(1, 2, 1, h, w) + offset) / normalizer - 1
        grid = F.pixel_shuffle(grid.view(b, -1, h, w), s).view(b, 2, -1, s * h, s * w)
        grid = grid.permute(0, 2, 3, 4, 1).contiguous().flatten(0, 1)  # (B*G, sH, sW, 2)
        out = F.grid_sample(
            x.float().reshape(b * self.groups, -1, h, w),
            grid,
            mode="bilinear",
            align_corners=False,
            padding_mode="border",
        )
        return out.view(b, -1, s * h, s * w).to(x.dtype)

    def forward_lp(self, x: torch.Tensor) -> torch.Tensor:
        """Upsample with offsets projected from ``x`` (style ``"lp"``), by the reference's formula."""
        offset = self.offset(x).float()
        if self.scope is not None:
            offset = offset * self.scope(x).float().sigmoid() * 0.5 + self.init_pos.float()
        else:
            offset = offset * 0.25 + self.init_pos.float()
        return self.sample(x, offset)

    def forward_pl(self, x: torch.Tensor) -> torch.Tensor:
        """Upsample with offsets projected from ``pixel_shuffle(x, s)`` (style ``"pl"``), by the reference's formula."""
        x_ = F.pixel_shuffle(x, self.scale)
        offset = self.offset(x_).float()
        if self.scope is not None:
            offset = F.pixel_unshuffle(offset * self.scope(x_).float().sigmoid(), self.scale) * 0.5
        else:
            offset = F.pixel_unshuffle(offset, self.scale) * 0.25
        return self.sample(x, offset + self.init_pos.float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Upsample ``x`` by ``scale``.

        Args:
            x (torch.Tensor): Input of shape (B, C, H, W).

        Returns:
            (torch.Tensor): Output of shape (B, C, s*H, s*W); with an identity mix, blended with nearest upsampling.
        """
        y = self.forward_pl(x) if self.style == "pl" else self.forward_lp(x)
        mix = getattr(self, "identity_mix", None)  # getattr: blocks unpickled from checkpoints older than the mix
        if mix is None:
            return y
        return lerp(self.identity_output(x), y, mix)

    def identity_output(self, x: torch.Tensor) -> torch.Tensor:
        """Return what the block returns at its identity start: the nearest upsampling it replaces, (B, C, sH, sW)."""
        return F.interpolate(x, scale_factor=self.scale, mode="nearest")

    def attention_map(self, x: torch.Tensor, output: torch.Tensor) -> tuple[torch.Tensor, str]:
        """Return the mean length of the learned offsets at each input pixel (B, H, W), in input pixels."""
        offset = self.offset(F.pixel_shuffle(x, self.scale) if self.style == "pl" else x).float()
        if self.style == "pl":
            offset = F.pixel_unshuffle(offset, self.scale)
        b, _, h, w = offset.shape
        length = offset.view(b, 2, -1, h, w).norm(dim=1).mean(1) * 0.25
        return length, "learned offset length (before the dynamic scope), input pixels"
