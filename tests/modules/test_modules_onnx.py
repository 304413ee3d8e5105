"""Every block exports to ONNX the way Ultralytics exports (TorchScript-based exporter) and runs at other input sizes.

The model is traced at one size and run by onnxruntime at another batch, height and width: pooling, the CoordAtt
split and the attention reshapes must follow the input, not the size seen at export. Fused blocks (what
``model.fuse()`` leaves, and what Ultralytics exports) run their merged products, so they are exported too. A block
whose operator ONNX has only from a later opset declares it (``onnx_min_opset``, DeformableLKA's DeformConv: 19); below
it, its export must stop with an error naming that opset (check_block and its own tests run it at that opset).
"""

from __future__ import annotations

import io
import warnings

import pytest
import torch
from support.blocks import default_block, shipped

from yolo_attn.modules import (
    CBAM,
    SE,
    CA_C2f,
    CA_C3k2,
    SpatialAttention,
)
from yolo_attn.modules.random_weights import randomize_
from yolo_attn.profiling.blocks import deployed_block
from yolo_attn.testing import export_onnx

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

#: Every shipped block with its default arguments (48 output channels for those extending C2f / C3k2), then variants.
BLOCKS = {s.name: (lambda s=s: default_block(s, 32, 48)) for s in shipped()} | {
    "SE-r4": lambda: SE(32, 4),
    "SpatialAttention-seed-bn": lambda: SpatialAttention(32, (3, 1), "mean", True),
    "CBAM-r4-k3": lambda: CBAM(32, 4, 3),
    "CA_C2f-n2": lambda: CA_C2f(32, 48, 2, True),
    "CA_C3k2-c3k": lambda: CA_C3k2(32, 48, 1, True),
}


@pytest.mark.parametrize("fused", [False, True], ids=["unfused", "fused"])
@pytest.mark.parametrize("opset", [12, 17])
@pytest.mark.parametrize("name", list(BLOCKS))
def test_onnx_export_follows_the_input_size(name, opset, fused):
    block = randomize_(BLOCKS[name]()).eval()
    if fused:
        block = deployed_block(block)
    buffer = io.BytesIO()
    needs = getattr(block, "onnx_min_opset", opset)  # an operator ONNX has only from a later opset (DeformConv: 19)
    if opset < needs:  # the export must stop with an error that names the opset it needs (ours, or torch's)
        with warnings.catch_warnings(), pytest.raises(Exception, match=rf"(needs opset|added in version) {needs}\b"):
            warnings.simplefilter("ignore")
            torch.onnx.export(block, torch.randn(1, 32, 8, 10), buffer, opset_version=opset, dynamo=False)
        return
    buffer.write(export_onnx(block, torch.randn(1, 32, 8, 10), opset))
    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    x = torch.randn(2, 32, 12, 7)
    (y,) = session.run(None, {"x": x.numpy()})
    with torch.no_grad():
        expected = block(x)
    # float32 rounding grows with the output's size (random weights drive CPCA's outputs to ~1e3): scale the tolerance
    # by it, as check_block does
    scale = max(1.0, float(expected.abs().max()))
    torch.testing.assert_close(torch.from_numpy(y), expected, atol=1e-4 * scale, rtol=1e-4)
