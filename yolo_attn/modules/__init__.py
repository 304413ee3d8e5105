"""Attention blocks for YOLO model YAMLs, one file per family.

Every file here declares its blocks with `yolo_attn.registry.register_block`; importing this package imports each file,
and the registered classes are exported from here by their class names, so no list of blocks is kept by hand.
Channel-preserving blocks are built as ``Block(c1, *yaml_args)`` with the inferred input channels ``c1`` first; their
output has the input's shape. Any channel block also goes inside Ultralytics' CSP blocks by name (``C3k2_EMA``,
`composed`); `CA_C2f` and `CA_C3k2` are two of those compositions. A wrong argument raises `BlockArgumentError`
naming the block, the argument and what it expected.
"""

import importlib
import pkgutil

from yolo_attn import registry as _registry
from yolo_attn.modules.arg_checks import BlockArgumentError
from yolo_attn.modules.composed import AttnBottleneck, composed_class
from yolo_attn.modules.csp_coord_att import CA_C2f, CA_C3k2, CoordAttBottleneck
from yolo_attn.modules.eca import eca_kernel_size
from yolo_attn.modules.identity_start import AttentionBlock

for _info in pkgutil.iter_modules(__path__, f"{__name__}."):
    importlib.import_module(_info.name)

#: The shipped blocks, class name -> class, as declared in the files of this package.
SHIPPED = {s.cls.__name__: s.cls for s in _registry.specs() if s.cls.__module__.startswith(f"{__name__}.")}
globals().update(SHIPPED)

__all__ = (
    "AttentionBlock",
    "AttnBottleneck",
    "BlockArgumentError",
    "CA_C2f",
    "CA_C3k2",
    "CoordAttBottleneck",
    "composed_class",
    "eca_kernel_size",
    *sorted(SHIPPED),
)
