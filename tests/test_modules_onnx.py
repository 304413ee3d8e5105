"""Every block exports to ONNX the way Ultralytics exports (TorchScript-based exporter) and runs at other input sizes.

The model is traced at one size and run by onnxruntime at another batch, height and width: pooling, the CoordAtt
split and the attention reshapes must follow the input, not the size seen at export. Fused blocks (what
``model.fuse()`` leaves, and what Ultralytics exports) run their merged products, so they are exported too.
"""

from __future__ import annotations

import io
import warnings

import pytest
import torch

from yolo_attn.modules import (
    CBAM,
    ECA,
    MHSA,
    SAM,
    SE,
    CA_C2f,
    CA_C3k2,
    ChannelAttention,
    CoordAtt,
    SeparableSelfAttention,
    SpatialAttention,
)
from yolo_attn.modules.random_weights import randomize_
from yolo_attn.profiling.blocks import deployed_block

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

BLOCKS = {
    "SE": lambda: SE(32, 4),
    "ChannelAttention": lambda: ChannelAttention(32, 4),
    "SpatialAttention": lambda: SpatialAttention(32, (3, 1), "mean", True),
    "CBAM": lambda: CBAM(32, 4, 3),
    "ECA": lambda: ECA(32),
    "SAM": lambda: SAM(32),
    "CoordAtt": lambda: CoordAtt(32),
    "MHSA": lambda: MHSA(32, 4),
    "SeparableSelfAttention": lambda: SeparableSelfAttention(32),
    "CA_C2f": lambda: CA_C2f(32, 48, 2, True),
    "CA_C3k2": lambda: CA_C3k2(32, 48, 1, True),
}


@pytest.mark.parametrize("fused", [False, True], ids=["unfused", "fused"])
@pytest.mark.parametrize("opset", [12, 17])
@pytest.mark.parametrize("name", list(BLOCKS))
def test_onnx_export_follows_the_input_size(name, opset, fused):
    block = randomize_(BLOCKS[name]()).eval()
    if fused:
        block = deployed_block(block)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python values; the comparison below is the check
        torch.onnx.export(
            block,
            torch.randn(1, 32, 8, 10),
            buffer,
            opset_version=opset,
            dynamo=False,  # what Ultralytics uses
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {0: "b", 2: "h", 3: "w"}, "y": {0: "b", 2: "h", 3: "w"}},
        )
    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    x = torch.randn(2, 32, 12, 7)
    (y,) = session.run(None, {"x": x.numpy()})
    with torch.no_grad():
        expected = block(x)
    torch.testing.assert_close(torch.from_numpy(y), expected, atol=1e-4, rtol=1e-4)
