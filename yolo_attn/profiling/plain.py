"""Plain formulations of the blocks: the forward passes as first written, before the speed work (fused gates).

Each block that has one declares it as its method ``forward_plain(x)`` (the block's output before its identity mix):
it computes what the block's ``forward`` computes, reading the block's own weights, in the straightforward
form (one operation per step of the formula, the shared MLP run once per descriptor, explicit attention products, the
BatchNorm applied after its convolution). The block micro-benchmark times the blocks against these functions in the
same run, and the tests check that the blocks still compute the same numbers. They run in eval mode (running
BatchNorm statistics) and on unfused blocks; a fused block has no BatchNorm left and is compared through a copy made
before fusing.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

from yolo_attn import registry


def plain_function(block: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """Return the plain formulation of ``block`` as a function of the input alone.

    A block with a ``blend(x, out)`` method (a block that can start as the identity) has its plain output passed
    through it, as its own forward does.

    Args:
        block (nn.Module): One of the channel-preserving blocks (or a subclass of one).

    Returns:
        (Callable[[torch.Tensor], torch.Tensor]): ``x (B, C, H, W) -> out (B, C, H, W)``.
    """
    plain = getattr(block, "forward_plain", None)
    if not callable(plain):
        known = [s.name for s in registry.specs() if has_plain(s.cls)]
        raise TypeError(f"no plain formulation (forward_plain) for {type(block).__name__}; blocks with one: {known}")
    blend = getattr(block, "blend", None)
    if callable(blend):
        return lambda x: blend(x, plain(x))
    return plain


def has_plain(cls: type) -> bool:
    """Whether a block class declares a plain formulation (a ``forward_plain`` method)."""
    return callable(getattr(cls, "forward_plain", None))


def plain_forward(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Run the plain formulation of ``block`` on ``x`` (see `plain_function`).

    Args:
        block (nn.Module): One of the channel-preserving blocks (or a subclass of one).
        x (torch.Tensor): Input of shape (B, C, H, W).

    Returns:
        (torch.Tensor): What the block computes, of shape (B, C, H, W).
    """
    return plain_function(block)(x)


class Plain(nn.Module):
    """Wrap a block so that its forward is the plain formulation (for benchmarks and exports of the old graph).

    Attributes:
        block (nn.Module): The wrapped block, whose weights are used.
    """

    def __init__(self, block: nn.Module) -> None:
        """Wrap ``block``.

        Args:
            block (nn.Module): A channel-preserving block with a plain formulation.
        """
        super().__init__()
        self.block = block
        self._plain = plain_function(block)  # resolved once: a benchmark should time the formulation, not the lookup

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``plain_forward(self.block, x)`` for ``x`` of shape (B, C, H, W)."""
        return self._plain(x)


class _HiddenPlain(nn.Module):
    """Run a block's plain formulation while hiding the block from module walks (``fuse()`` finds nothing to fold).

    Keeps Ultralytics' layer attributes (``i``, ``f``, ``type``, ``np``) so the wrapper can stand in a model's layer
    list. Meant for timing and exporting the pre-issue-9 graph of a whole model in eval mode on CPU only.
    """

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        object.__setattr__(self, "hidden", block.requires_grad_(False))  # not a registered submodule: an ONNX trace
        # embeds its weights as constants, which needs them to be free of autograd
        for key in ("i", "f", "type", "np"):
            if hasattr(block, key):
                setattr(self, key, getattr(block, key))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``plain_forward(block, x)`` for ``x`` of shape (B, C, H, W)."""
        return plain_forward(self.hidden, x)


def plain_model(model: nn.Module) -> nn.Module:
    """Return an eval-mode copy of ``model`` whose yolo_attn blocks run their plain, unfusable formulation.

    This is the model as it ran before that speed work: every block's forward as first written, and its BatchNorms left
    in place by ``model.fuse()`` (which folds only Ultralytics' own layers in the copy). For benchmarks only.

    Args:
        model (nn.Module): A model (e.g. an Ultralytics ``DetectionModel``) holding yolo_attn blocks.

    Returns:
        (nn.Module): The copy; ``model`` is left untouched.
    """
    model = copy.deepcopy(model).eval()
    _hide_blocks(model)
    return model


def _hide_blocks(module: nn.Module) -> None:
    """Replace, in place and at any depth, each outermost block with a plain formulation by a `_HiddenPlain`."""
    for name, child in module.named_children():
        if has_plain(type(child)):
            setattr(module, name, _HiddenPlain(child))
        else:
            _hide_blocks(child)
