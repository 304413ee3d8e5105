"""Checkpoints saved by an earlier release (tests/fixtures/checkpoints) load and predict what they predicted then.

The fixtures are real ``yolo-attn train`` checkpoints written by scripts/make_checkpoint_fixtures.py at the commit in
provenance.json: a from-scratch CBAM + CoordAtt + CA_C2f detector, and an SE + EMA detector fine-tuned with identity
mixes. Their pickles name the block classes by the module paths of that release.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from ultralytics.nn.tasks import load_checkpoint, torch_safe_load

import yolo_attn  # noqa: F401  (registers the blocks, allow-lists them for safe loading)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "checkpoints"
NAMES = ("small-cbam-ca_c2f", "small-se-ema")


def _output(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        out = model.float().eval()(x)
    return out[0] if isinstance(out, (list, tuple)) else out


def test_the_fixtures_come_from_a_recorded_release():
    provenance = json.loads((FIXTURES / "provenance.json").read_text())
    assert len(provenance["commit"]) == 40


# the floor run (Ultralytics 8.4.0) takes the plain case only: its torch_safe_load(safe_only=True) is another loader
# (stand-in SafeClass objects for any class outside Ultralytics), not the weights-only load of ULTRALYTICS_SAFE_LOAD
@pytest.mark.parametrize(
    "safe", [pytest.param(False, id="plain", marks=pytest.mark.seam), pytest.param(True, id="safe-load")]
)
@pytest.mark.parametrize("name", NAMES)
def test_an_old_checkpoint_loads_and_predicts_the_same(name, safe):
    expected = torch.load(FIXTURES / f"{name}.expected.pt")
    if safe:  # what ULTRALYTICS_SAFE_LOAD=1 does for every load: weights-only unpickling with an allow-list
        ckpt, _ = torch_safe_load(str(FIXTURES / f"{name}.pt"), safe_only=True)
        model = (ckpt.get("ema") or ckpt["model"]).float()
    else:
        model, _ = load_checkpoint(str(FIXTURES / f"{name}.pt"), device="cpu")
    torch.testing.assert_close(_output(model, expected["input"]), expected["output"], rtol=1e-4, atol=1e-4)


@pytest.mark.seam
def test_an_old_fine_tuned_checkpoint_keeps_its_identity_mixes():
    model, _ = load_checkpoint(str(FIXTURES / "small-se-ema.pt"), device="cpu")
    mixes = {k: float(v) for k, v in model.state_dict().items() if k.endswith("identity_mix")}
    assert set(mixes) == {"model.5.identity_mix", "model.6.identity_mix"} and all(m != 0 for m in mixes.values())


@pytest.mark.parametrize("safe", [False, True], ids=["plain", "safe-load"])
def test_a_block_pickled_before_the_identity_mix_existed_loads_as_the_papers_formula(tmp_path, safe):
    from yolo_attn.modules import CBAM

    old = CBAM(32).eval()
    for block in (old, old.channel_attention, old.spatial_attention):
        del block._parameters["identity_mix"]  # what a block of a release before the mix pickled
    path = tmp_path / "old.pt"
    torch.save({"model": old}, path)
    if safe:
        ckpt, _ = torch_safe_load(str(path), safe_only=True)
    else:
        ckpt = torch.load(path, weights_only=False)
    loaded = ckpt["model"]
    assert loaded.identity_mix is None and loaded.channel_attention.identity_mix is None
    fresh = CBAM(32).eval()
    fresh.load_state_dict(old.state_dict())
    x = torch.randn(2, 32, 5, 7)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), fresh(x), rtol=0, atol=0)
    assert loaded.start_as_identity().identity_mix is not None
