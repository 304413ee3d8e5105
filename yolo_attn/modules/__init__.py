"""Attention blocks for YOLO model YAMLs, one file per family.

Channel-preserving blocks are built as ``Block(c1, *yaml_args)`` with the inferred input channels ``c1`` first; their
output has the input's shape. `CA_C2f` and `CA_C3k2` take the arguments of Ultralytics' C2f and C3k2. A wrong argument
raises `BlockArgumentError` naming the block, the argument and what it expected.
"""

from yolo_attn.modules.arg_checks import BlockArgumentError
from yolo_attn.modules.cbam import CBAM, ChannelAttention, SpatialAttention
from yolo_attn.modules.coord_att import CoordAtt
from yolo_attn.modules.csp_coord_att import CA_C2f, CA_C3k2, CoordAttBottleneck
from yolo_attn.modules.eca import ECA, eca_kernel_size
from yolo_attn.modules.identity_start import AttentionBlock
from yolo_attn.modules.sam import SAM
from yolo_attn.modules.self_attention import MHSA, SeparableSelfAttention
from yolo_attn.modules.squeeze_excite import SE

__all__ = (
    "CBAM",
    "ECA",
    "MHSA",
    "SAM",
    "SE",
    "AttentionBlock",
    "BlockArgumentError",
    "CA_C2f",
    "CA_C3k2",
    "ChannelAttention",
    "CoordAtt",
    "CoordAttBottleneck",
    "SeparableSelfAttention",
    "SpatialAttention",
    "eca_kernel_size",
)
