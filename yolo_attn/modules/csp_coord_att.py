"""CA-C2f and CA-C3k2 of earlier releases: now the compositions ``C2f_CoordAtt`` and ``C3k2_CoordAtt``.

Every ``Bottleneck`` inside them (directly in ``m``, inside C3k, or in front of a PSABlock) applies a `CoordAtt`
(r=32) between its second convolution and the residual add, as `yolo_attn.modules.composed` builds any channel block
inside any host. The names ``CA_C2f``, ``CA-C2f`` and ``CA_C3k2`` stay YAML aliases of the compositions, and the names
below stay importable, so checkpoints whose pickles name ``yolo_attn.modules.csp_coord_att.CA_C2f`` and
``CoordAttBottleneck`` still load (the bottleneck's ``ca`` is renamed ``attn`` on unpickling, `AttnBottleneck`).
"""

from __future__ import annotations

import torch  # noqa: F401  (doctest)
from torch import nn
from ultralytics.nn.modules.block import Bottleneck

from yolo_attn.modules import coord_att as _coord_att  # noqa: F401  (CoordAtt registered before it is composed)
from yolo_attn.modules.composed import AttnBottleneck, composed_class
from yolo_attn.modules.coord_att import CoordAtt

#: C2f with CoordAtt in every bottleneck: ``C2f_CoordAtt`` (YAML aliases ``CA_C2f``, ``CA-C2f``).
CA_C2f = composed_class("C2f", "CoordAtt")
#: C3k2 with CoordAtt in every bottleneck: ``C3k2_CoordAtt`` (YAML alias ``CA_C3k2``).
CA_C3k2 = composed_class("C3k2", "CoordAtt")


class CoordAttBottleneck(AttnBottleneck):
    """An `AttnBottleneck` with a `CoordAtt`: ``x + CoordAtt(cv2(cv1(x)))`` (the bottleneck of earlier releases).

    Examples:
        >>> from ultralytics.nn.modules.block import Bottleneck
        >>> block = CoordAttBottleneck(Bottleneck(64, 64))
        >>> block(torch.randn(2, 64, 20, 20)).shape
        torch.Size([2, 64, 20, 20])
    """

    def __init__(self, bottleneck: nn.Module, r: int = 32) -> None:
        """Initialize from an existing bottleneck (its ``cv1``, ``cv2``, ``add``), with a CoordAtt of reduction r."""
        super().__init__(bottleneck, CoordAtt(bottleneck.cv2.conv.out_channels, r))


def add_coord_att(module: nn.Module, r: int = 32) -> int:
    """Replace every plain ``Bottleneck`` under ``module`` by a `CoordAttBottleneck` (CoordAtt of reduction r).

    Args:
        module (nn.Module): Module whose descendants are upgraded (``module`` itself is not replaced).
        r (int): Reduction ratio of each coordinate attention.

    Returns:
        (int): How many bottlenecks were upgraded.
    """
    upgraded = 0
    for name, child in module.named_children():
        if type(child) is Bottleneck:  # exact type: subclasses may compute something else
            setattr(module, name, CoordAttBottleneck(child, r))
            upgraded += 1
        else:
            upgraded += add_coord_att(child, r)
    return upgraded
