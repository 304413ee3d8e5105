"""MLCA computes what wandahangFY/MLCA's ``MLCA`` computes (adaptive pooling included), at any size and in ONNX."""

from __future__ import annotations

import importlib.util
import io
import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from ultralytics.nn.tasks import DetectionModel, yaml_model_load

from yolo_attn.cfg.edit import insert_after
from yolo_attn.modules import MLCA, BlockArgumentError
from yolo_attn.modules.random_weights import randomize_
from yolo_attn.registry.rows import YAMLRowError

ATOL = 1e-5


class ReferenceMLCA(nn.Module):
    """MLCA.py ``MLCA(in_size, local_size=5, gamma=2, b=1, local_weight=0.5)``, re-stated (its prints dropped)."""

    def __init__(self, in_size: int, local_size: int = 5, gamma: float = 2, b: float = 1, local_weight: float = 0.5):
        super().__init__()
        self.local_size = local_size
        t = int(abs(math.log(in_size, 2) + b) / gamma)
        k = t if t % 2 else t + 1
        self.conv = nn.Conv1d(1, 1, kernel_size=k, padding=(k - 1) // 2, bias=False)
        self.conv_local = nn.Conv1d(1, 1, kernel_size=k, padding=(k - 1) // 2, bias=False)
        self.local_weight = local_weight
        self.local_arv_pool = nn.AdaptiveAvgPool2d(local_size)
        self.global_arv_pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        local_arv = self.local_arv_pool(x)
        global_arv = self.global_arv_pool(local_arv)
        b, c, m, n = x.shape
        _, c_local, _, _ = local_arv.shape
        temp_local = local_arv.view(b, c_local, -1).transpose(-1, -2).reshape(b, 1, -1)
        temp_global = global_arv.view(b, c, -1).transpose(-1, -2)
        y_local = self.conv_local(temp_local)
        y_global = self.conv(temp_global)
        s = self.local_size
        y_local_transpose = y_local.reshape(b, s * s, c).transpose(-1, -2).view(b, c, s, s)
        y_global_transpose = y_global.view(b, -1).unsqueeze(-1).unsqueeze(-1)
        att_local = y_local_transpose.sigmoid()
        att_global = F.adaptive_avg_pool2d(y_global_transpose.sigmoid(), [s, s])
        att_all = F.adaptive_avg_pool2d(att_global * (1 - self.local_weight) + (att_local * self.local_weight), [m, n])
        return x * att_all


@pytest.mark.parametrize("channels", [16, 64, 128, 256, 320, 512, 640, 768])
@pytest.mark.parametrize(("gamma", "b"), [(2, 1), (3, 0), (1, 2)])
def test_kernel_size_and_state_dict_follow_the_reference(channels, gamma, b):
    ours, reference = MLCA(channels, 5, gamma, b), ReferenceMLCA(channels, 5, gamma, b)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in reference.state_dict().items()}
    ours.load_state_dict(reference.state_dict(), strict=True)
    reference.load_state_dict(ours.state_dict(), strict=True)


SHAPES = [(2, 64, 20, 20), (2, 64, 13, 7), (1, 64, 3, 4), (2, 64, 5, 5), (1, 64, 1, 1), (1, 64, 40, 24), (2, 64, 6, 11)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(("local_size", "local_weight"), [(5, 0.5), (3, 0.2), (7, 1.0), (1, 0.0)])
def test_matches_the_reference_forward_at_any_size(shape, local_size, local_weight):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    ours = randomize_(MLCA(64, local_size, 2, 1, local_weight), 0).eval()
    reference = ReferenceMLCA(64, local_size, 2, 1, local_weight).eval()
    reference.load_state_dict(ours.state_dict(), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), atol=ATOL, rtol=0)


@pytest.mark.skipif(
    importlib.util.find_spec("onnx") is None or importlib.util.find_spec("onnxruntime") is None,
    reason="needs onnx and onnxruntime",
)
def test_one_onnx_graph_serves_sizes_that_are_not_multiples_of_the_local_size():
    import onnxruntime as ort

    block = randomize_(MLCA(32), 0).eval()
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            block,
            torch.randn(1, 32, 10, 10),  # traced at a multiple of local_size=5
            buffer,
            opset_version=17,
            dynamo=False,
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {0: "b", 2: "h", 3: "w"}, "y": {0: "b", 2: "h", 3: "w"}},
        )
    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    reference = ReferenceMLCA(32).eval()
    reference.load_state_dict(block.state_dict())
    for shape in [(2, 32, 13, 7), (1, 32, 3, 3), (1, 32, 20, 21), (3, 32, 10, 10)]:
        x = torch.randn(shape, generator=torch.Generator().manual_seed(2))
        (y,) = session.run(None, {"x": x.numpy()})
        with torch.no_grad():
            torch.testing.assert_close(torch.from_numpy(y), reference(x), atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"local_size": 0}, r"local_size .* must be a positive integer, got 0"),
        ({"local_size": 2.5}, r"local_size .* must be a positive integer"),
        ({"gamma": 0}, r"gamma .* must be > 0"),
        ({"gamma": "2"}, r"gamma must be a number"),
        ({"b": None}, r"b must be a number"),
        ({"local_weight": 1.5}, r"local_weight .* must be in \[0, 1\], got 1.5"),
        ({"local_weight": True}, r"local_weight must be a number"),
    ],
)
def test_bad_arguments_are_refused(kwargs, message):
    with pytest.raises(BlockArgumentError, match=message):
        MLCA(64, **kwargs)


@pytest.mark.seam
def test_a_yaml_row_with_a_bad_weight_names_the_argument_and_the_channels():
    d = insert_after(yaml_model_load("yolov8n.yaml"), 9, "MLCA", [5, 2, 1, 2])
    with pytest.raises(YAMLRowError, match=r"layer 10 .*MLCA: local_weight .*got 2.*input channels here: 256"):
        DetectionModel(d, verbose=False)


@pytest.mark.seam
@pytest.mark.parametrize("scale", ["n", pytest.param("x", marks=pytest.mark.slow)])
@pytest.mark.parametrize("family", ["yolov8", "yolo11", "yolo26"])
def test_builds_from_a_yaml_row(family, scale):
    model = DetectionModel(insert_after(yaml_model_load(f"{family}{scale}.yaml"), 9, "MLCA", []), verbose=False)
    block = model.model[10]
    assert isinstance(block, MLCA)
    c = model.model[9].cv2.conv.out_channels
    t = int(abs(math.log(c, 2) + 1) / 2)
    assert block.conv.kernel_size == (t if t % 2 else t + 1,)
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, 64, 64))  # P5 is 2 x 2 here, smaller than local_size=5
