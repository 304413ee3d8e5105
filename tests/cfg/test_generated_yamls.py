"""Model YAMLs by name for every registered block: the naming rule, the standard sites, local files, checkpoints."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from support.env import subprocess_env
from torch import nn
from ultralytics import YOLO

from yolo_attn import registry
from yolo_attn.cfg import generated
from yolo_attn.cfg.generated import FAMILIES, TASKS, base_yaml, find_block, generate, load_base
from yolo_attn.cfg.sites import PLACEMENTS, SiteError, standard_sites
from yolo_attn.cfg.yaml_command import write_yaml
from yolo_attn.integration import lookup, run_yaml
from yolo_attn.registry import CHANNEL, REPLACES, BlockSpec

SHIPPED = sorted((Path(generated.__file__).parent / "model_yamls").glob("*.yaml"))
SHIPPED_BLOCK = {"ca": "CoordAtt", "ca-c3k2": "CA_C3k2"}  # shipped file names that are no block name or alias
FAMILY_TASKS = [(f, t) for f in FAMILIES for t in (None, *TASKS)]

# The sites of the shipped files, read off their headers ("Where the blocks sit"), as layer indices of the base.
EXPECTED_SITES = {
    ("yolov8", "det", "channel"): [9, 15, 18, 21],
    ("yolov8", "det", "positional"): [8, 15, 18, 21],
    ("yolov8", "det", "global"): [9, 18, 21],
    ("yolo11", "det", "channel"): [10, 16, 19, 22],
    ("yolo11", "det", "positional"): [8, 16, 19, 22],
    ("yolo11", "det", "global"): [8, 19, 22],
    ("yolov8", "cls", "channel"): [2, 4, 6, 8],
    ("yolov8", "cls", "positional"): [2, 4, 6, 8],
    ("yolov8", "cls", "global"): [6, 8],
    ("yolo11", "cls", "channel"): [2, 4, 6, 9],
    ("yolo11", "cls", "positional"): [2, 4, 6, 9],
    ("yolo11", "cls", "global"): [6, 9],
}


def _fake_spec(placement: str) -> BlockSpec:
    cls = type("Fake", (nn.Identity,), {"standard_sites": placement})
    return BlockSpec(name="Fake", cls=cls)


def _name(family: str, task: str | None, block: str, scale: str = "n") -> str:
    return f"{family}{scale}{'-' + task if task else ''}-{block}.yaml"


def _block_rows(cfg: dict, spec: BlockSpec) -> list[int]:
    return [i for i, row in enumerate(cfg["backbone"] + cfg["head"]) if row[2] in spec.names]


def _expected_rows(sites: list[int], spec: BlockSpec) -> list[int]:
    """Where the block rows land: an inserted row shifts every later one; an extends or replacing block stays."""
    return sites if spec.kind != CHANNEL else [s + k + 1 for k, s in enumerate(sorted(sites))]


@pytest.mark.parametrize("placement", sorted(PLACEMENTS))
@pytest.mark.parametrize(("family", "task"), FAMILY_TASKS)
def test_standard_sites_are_the_shipped_files_sites(family: str, task: str | None, placement: str) -> None:
    kind = "cls" if task == "cls" else "det"
    key = ("yolo11" if family == "yolo26" else family, kind, placement)  # YOLO26 keeps YOLO11's layout
    assert standard_sites(load_base(base_yaml(family, task)), _fake_spec(placement)) == EXPECTED_SITES[key]


@pytest.mark.parametrize(("family", "task"), FAMILY_TASKS)
def test_every_registered_block_resolves_by_name_at_its_sites(family: str, task: str | None) -> None:
    base = load_base(base_yaml(family, task))
    for spec in registry.specs():
        for written in {spec.name, spec.name.lower(), spec.name.upper(), *(a.swapcase() for a in spec.aliases)}:
            name = _name(family, task, written, scale="s")
            if spec.kind != CHANNEL and any(r[2] != spec.stands_for for r in _parent_sites(base, spec)):
                with pytest.raises(SiteError, match=f"replaces {spec.stands_for} rows"):
                    lookup.yaml_model_load(name)
                continue
            cfg = lookup.yaml_model_load(name)
            assert (cfg.pop("scale"), cfg.pop("yaml_file")) == ("s", name)
            assert cfg == generate(base, spec), name
            sites = standard_sites(base, spec)
            rows = cfg["backbone"] + cfg["head"]
            assert _block_rows(cfg, spec) == _expected_rows(sites, spec), name
            if task != "cls" and spec.kind != REPLACES:  # the head reads the refined maps at its neck sites
                head_in = rows[-1][0]
                assert sum(rows[j][2] in spec.names for j in head_in) == len(sites) - 1, name
            plain = [r[2] for r in rows if r[2] not in spec.names]
            if spec.kind == CHANNEL:
                assert plain == [r[2] for r in base["backbone"] + base["head"]], name


def _parent_sites(base: dict, spec: BlockSpec) -> list[list]:
    rows = base["backbone"] + base["head"]
    try:
        return [rows[i] for i in standard_sites(base, spec)]
    except SiteError:
        return [["", "", "not a parent row"]]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_generated_yaml_equals_the_shipped_file(path: Path) -> None:
    family, task, part = re.match(r"^(yolov8|yolo11|yolo26)(?:-(cls))?-(.+)\.yaml$", path.name).groups()
    spec = find_block(SHIPPED_BLOCK.get(part, part))
    assert generate(load_base(base_yaml(family, task)), spec) == yaml.safe_load(path.read_text())


@pytest.mark.parametrize(
    ("name", "task"),
    [
        ("yolov8n-seg-CoordAtt.yaml", "segment"),
        ("yolo26n-pose-mhsa.yaml", "pose"),
        ("yolo11n-obb-eca.yaml", "obb"),
        ("yolo11n-cls-sam.yaml", "classify"),
        ("yolo26n-ca_c3k2.yaml", "detect"),
    ],
)
def test_generated_models_build_with_the_blocks_at_their_sites(name: str, task: str) -> None:
    model = YOLO(name)
    family, _, task_part, block = generated.split_name(name)
    spec = find_block(block)
    sites = standard_sites(load_base(base_yaml(family, task_part)), spec)
    layers = model.model.model
    assert model.task == task
    assert [i for i, m in enumerate(layers) if isinstance(m, spec.cls)] == _expected_rows(sites, spec)
    model.model.eval()
    with torch.no_grad():
        model.model(torch.zeros(1, 3, 64, 64))


def test_a_users_block_resolves_by_name_and_alias(monkeypatch: pytest.MonkeyPatch) -> None:
    from support.user_blocks import PointGate

    registry.register_block(PointGate, name="UserGate", aliases=["ugate"])
    try:
        model = YOLO("yolo11n-pose-UGATE.yaml")
        spec = find_block("ugate")
        gates = [i for i, m in enumerate(model.model.model) if isinstance(m, PointGate)]
        assert gates == _expected_rows(standard_sites(load_base(base_yaml("yolo11", "pose")), spec), spec)
    finally:
        registry.unregister_block("UserGate")


def test_block_names_that_differ_only_in_case_are_ambiguous() -> None:
    from support.user_blocks import PointGate

    one, two = type("Zed1", (PointGate,), {}), type("Zed2", (PointGate,), {})
    registry.register_block(one, name="Zed")
    registry.register_block(two, name="ZED")
    try:
        assert find_block("ZED").cls is two
        with pytest.raises(generated.UnknownBlockError, match="ambiguous"):
            find_block("zed")
    finally:
        registry.unregister_block("Zed"), registry.unregister_block("ZED")


def test_an_unknown_block_part_names_the_registered_blocks() -> None:
    with pytest.raises(FileNotFoundError, match=r"no registered block named 'nosuch'.*CBAM"):
        lookup.yaml_model_load("yolo11n-nosuch.yaml")


def test_a_file_in_the_working_folder_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    base = load_base(base_yaml("yolo11"))
    one_block = generate(base, find_block("CoordAtt"), sites=[4])
    Path("yolo11n-coordatt.yaml").write_text(yaml.safe_dump(one_block, sort_keys=False))  # over generation
    Path("yolo11-cbam.yaml").write_text(yaml.safe_dump(one_block, sort_keys=False))  # the twin, over the shipped file
    for name in ("yolo11n-coordatt.yaml", "yolo11s-cbam.yaml"):
        cfg = lookup.yaml_model_load(name)
        assert (cfg["backbone"], cfg["head"]) == (one_block["backbone"], one_block["head"]), name
    written = write_yaml("yolo11n", "eca", [5])  # what `yolo-attn yaml` writes is then what the name loads
    assert written == Path("yolo11n-eca.yaml")
    assert {tuple(r[3]) for r in lookup.yaml_model_load("yolo11n-eca.yaml")["backbone"] if r[2] == "ECA"} == {(5,)}


CHILD = """
import json, sys
import yolo_attn
from yolo_attn.cfg import generated

def refuse(*a, **k):
    raise AssertionError("the generator was called")

generated.generate = generated.generate_for_name = refuse
from ultralytics import YOLO
from ultralytics.nn.tasks import DetectionModel
model = YOLO(sys.argv[1])
rebuilt = DetectionModel(model.model.yaml, verbose=False)
print(json.dumps({
    "yaml": {k: model.model.yaml[k] for k in ("backbone", "head")},
    "types": [type(m).__name__ for m in model.model.model],
    "rebuilt": [type(m).__name__ for m in rebuilt.model],
}))
"""


def test_the_checkpoint_carries_the_generated_yaml(tmp_path: Path) -> None:
    model = YOLO("yolo11n-coordatt.yaml")
    weights = tmp_path / "m.pt"
    model.save(weights)
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(weights)], capture_output=True, text=True, env=subprocess_env(), check=True
    )
    child = json.loads(out.stdout.strip().splitlines()[-1])
    expected = generate(load_base(base_yaml("yolo11")), find_block("CoordAtt"))
    assert child["yaml"] == {k: expected[k] for k in ("backbone", "head")}
    assert child["types"] == child["rebuilt"] == [type(m).__name__ for m in model.model.model]
    assert child["types"].count("CoordAtt") == 4


def test_the_run_folder_keeps_the_generated_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "args.yaml").write_text(yaml.safe_dump({"model": "yolo26n-seg-se.yaml", "epochs": 3}, sort_keys=False))
    trainer = SimpleNamespace(args=SimpleNamespace(model="yolo26n-seg-se.yaml"), save_dir=tmp_path)
    assert run_yaml.save_model_yaml in run_yaml.callbacks_base.default_callbacks[run_yaml.EVENT]
    copy = run_yaml.save_model_yaml(trainer)
    assert copy == tmp_path / "yolo26n-seg-se.yaml"
    assert yaml.safe_load((tmp_path / "args.yaml").read_text()) == {"model": str(copy), "epochs": 3}
    monkeypatch.setattr(generated, "generate_for_name", lambda name: pytest.fail("the generator was called"))
    cfg = lookup.yaml_model_load(copy)  # the copy alone rebuilds the same model
    expected = generate(load_base(base_yaml("yolo26", "seg")), find_block("SE"))
    assert (cfg["backbone"], cfg["head"]) == (expected["backbone"], expected["head"])
    assert cfg["scale"] == "n"


@pytest.mark.parametrize("model", ["yolov8n.yaml", "yolov8n.pt", "LOCAL"])
def test_the_run_folder_gets_no_copy_of_files_and_ultralytics_configs(tmp_path: Path, model: str) -> None:
    if model == "LOCAL":
        model = str(tmp_path / "yolo11n-se.yaml")
        Path(model).write_text("nc: 1\n")
    trainer = SimpleNamespace(args=SimpleNamespace(model=model), save_dir=tmp_path)
    assert run_yaml.save_model_yaml(trainer) is None
