"""The one parser of Ultralytics device strings (training's amp default, evaluation device, slots, latency device)."""

from __future__ import annotations

import pytest

from yolo_attn.experiments.cell import first_device, is_gpu
from yolo_attn.utils.devices import DeviceSpec, parse_device


@pytest.mark.parametrize(
    ("device", "spec", "first"),
    [
        (None, DeviceSpec("auto"), ""),
        ("", DeviceSpec("auto"), ""),
        ("CPU", DeviceSpec("cpu"), "cpu"),
        ("mps", DeviceSpec("mps"), "mps"),
        ("cuda", DeviceSpec("cuda"), "0"),
        (3, DeviceSpec("cuda", ("3",)), "3"),
        ("cuda:2", DeviceSpec("cuda", ("2",)), "2"),
        ("1,2,3", DeviceSpec("cuda", ("1", "2", "3")), "1"),
        ("[0, 1]", DeviceSpec("cuda", ("0", "1")), "0"),
    ],
)
def test_every_spelling_parses_once(device, spec, first):
    assert parse_device(device) == spec and parse_device(device).first == first
    assert is_gpu(device) == (spec.kind == "cuda")
    assert first_device(device) == (None if device is None else first)


@pytest.mark.parametrize("device", ["gpu-please", "0,x", ","])
def test_garbage_is_refused(device):
    with pytest.raises(ValueError, match="not understood"):
        parse_device(device)
