"""``yolo-attn migrate`` on YAMLs written in the forks' styles (cv-attention, YOLOAir, hand-edited tasks.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from ultralytics import YOLO

from yolo_attn import cli
from yolo_attn.cfg.generated import base_yaml, load_base
from yolo_attn.cfg.migrate import FORK_NAMES, MigrationError, migrate, migrate_file

# A YOLOv8 YAML as the forks write it: the channel count first (unscaled 1024/512/1536, or the scale-n count 64 of
# the 256-channel P3 layer), fork class names, rows after the blocks that reference them (Concat [-1, 10], Detect).
FORK = """
nc: 3
scales:
  n: [0.33, 0.25, 1024]
  s: [0.33, 0.50, 1024]
backbone:
  - [-1, 1, Conv, [64, 3, 2]]
  - [-1, 1, Conv, [128, 3, 2]]
  - [-1, 3, C2f, [128, True]]
  - [-1, 1, Conv, [256, 3, 2]]
  - [-1, 6, C2f, [256, True]]
  - [-1, 1, Conv, [512, 3, 2]]
  - [-1, 6, C2f, [512, True]]
  - [-1, 1, Conv, [1024, 3, 2]]
  - [-1, 3, C2f, [1024, True]]
  - [-1, 1, SPPF, [1024, 5]]
  - [-1, 1, CBAMBlock, [1024]] # 10
head:
  - [-1, 1, nn.Upsample, [None, 2, "nearest"]]
  - [[-1, 6], 1, Concat, [1]]
  - [-1, 3, C2f, [512]] # 13
  - [-1, 1, nn.Upsample, [None, 2, "nearest"]]
  - [[-1, 4], 1, Concat, [1]]
  - [-1, 3, C2f, [256]]
  - [-1, 1, SEAttention, [64, 8]] # 17 scaled channel count, then the reduction
  - [-1, 1, Conv, [256, 3, 2]]
  - [[-1, 13], 1, Concat, [1]]
  - [-1, 3, C2f, [512]]
  - [-1, 1, CoordAttention, [512, 512]] # 21 (inp, oup)
  - [-1, 1, Conv, [512, 3, 2]]
  - [[-1, 10], 1, Concat, [1]] # 23 reads the CBAM row
  - [-1, 1, cbam, [1536, 8, 3]] # 24 the Concat's 512 + 1024 channels, then CBAM's own args, any case
  - [-1, 3, C2f, [1024]]
  - [-1, 1, ECAAttention, [3]] # 26 no channel arg (cv-attention's ECA takes only the kernel size)
  - [[17, 21, 26], 1, Detect, [nc]]
"""


def _rows(cfg: dict) -> list[list]:
    return cfg["backbone"] + cfg["head"]


def test_fork_rows_become_ours() -> None:
    result = migrate(yaml.safe_load(FORK))
    rows = _rows(result.cfg)
    assert rows[10] == [-1, 1, "CBAM", []]
    assert rows[17] == [-1, 1, "SE", [8]]
    assert rows[21] == [-1, 1, "CoordAtt", []]
    assert rows[24] == [-1, 1, "CBAM", [8, 3]]
    assert rows[26] == [-1, 1, "ECA", [3]]
    fork_rows = _rows(yaml.safe_load(FORK))
    untouched = [i for i in range(len(rows)) if i not in {10, 17, 21, 24, 26}]
    assert [rows[i] for i in untouched] == [fork_rows[i] for i in untouched]  # every from index stays valid
    changed = {int(line.split(":")[0].removeprefix("layer ")) for line in result.changes}
    assert changed == {10, 17, 21, 24, 26}
    assert "dropped [64]: the input channels (scale n)" in next(c for c in result.changes if c.startswith("layer 17"))
    assert "dropped [512, 512]" in next(c for c in result.changes if c.startswith("layer 21"))
    assert "SEAttention is SE" in next(c for c in result.changes if c.startswith("layer 17"))


def test_the_migrated_file_builds_at_every_scale(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    src = tmp_path / "yolov8-fork.yaml"
    src.write_text(FORK)
    out = migrate_file(src)
    assert out == tmp_path / "yolov8-fork-migrated.yaml"
    assert "layer 10: [-1, 1, CBAMBlock, [1024]] -> [-1, 1, CBAM, []]" in capsys.readouterr().out
    text = out.read_text()
    assert text.index("nc:") < text.index("scales:") < text.index("backbone:") < text.index("head:")  # sort_keys=False
    for scale in "ns":
        scaled = tmp_path / f"yolov8{scale}-fork.yaml"
        scaled.write_text(text)
        model = YOLO(str(scaled))
        names = [type(m).__name__ for m in model.model.model]
        assert [names[i] for i in (10, 17, 21, 24, 26)] == ["CBAM", "SE", "CoordAtt", "CBAM", "ECA"], scale


def test_our_own_yaml_needs_no_change() -> None:
    from yolo_attn.cfg.generated import find_block, generate

    ours = generate(load_base(base_yaml("yolo11")), find_block("CBAM"))
    result = migrate(ours)
    assert result.cfg == ours and result.changes == []


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ([-1, 1, "BiFormerBlock", [1024]], "neither a yolo_attn block, a known fork spelling, nor an Ultralytics"),
        ([-1, 1, "CoordAttention", [1024, 512]], "1024 -> 512 channels: ours keep the channel count"),
        ([-1, 1, "SEAttention", [1024, 16, 3]], "do not fit SE"),
    ],
)
def test_rows_that_cannot_be_mapped_are_refused_with_the_reason(row: list, reason: str, tmp_path: Path) -> None:
    cfg = yaml.safe_load(FORK)
    cfg["backbone"][10] = row
    with pytest.raises(MigrationError, match="layer 10") as e:
        migrate(cfg)
    assert reason in str(e.value)
    src, out = tmp_path / "fork.yaml", tmp_path / "out.yaml"
    src.write_text(yaml.safe_dump(cfg, sort_keys=False))
    with pytest.raises(SystemExit) as exit_:
        cli.main(["migrate", str(src), "-o", str(out)])
    assert reason in str(exit_.value.code) and "Nothing written" in str(exit_.value.code)
    assert not out.exists()


def test_every_fork_spelling_maps_to_a_registered_block() -> None:
    from yolo_attn import registry

    assert all(registry.get(ours) is not None and registry.get(fork) is None for fork, ours in FORK_NAMES.items())


def test_migrate_command_writes_the_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    src, out = tmp_path / "fork.yaml", tmp_path / "yolov8-ours.yaml"
    src.write_text(FORK)
    cli.main(["migrate", str(src), "-o", str(out)])
    printed = capsys.readouterr().out
    assert printed.count("layer ") == 5 and f"Wrote {out}" in printed
    assert _rows(yaml.safe_load(out.read_text()))[21] == [-1, 1, "CoordAtt", []]


def test_the_forks_composed_names_and_the_channel_first_convention_map():
    from ultralytics.nn.tasks import yaml_model_load

    d = yaml_model_load("yolo11.yaml")
    d["backbone"][2][2], d["backbone"][4][2], d["backbone"][10][2] = "C3k2_SimAM", "C2f_EMA", "C2BRA"
    d["head"].insert(2, [-1, 1, "CoordAtt", [1536, 32]])  # after the 1536-channel Concat (unscaled): r=32
    d["head"][3][0] = -1
    result = migrate(d)
    rows = result.cfg["backbone"] + result.cfg["head"]
    assert rows[2][2] == "C3k2_SimAM" and rows[4][2] == "C2f_EMA"
    assert rows[10] == [-1, 2, "C2PSA_BiLevelRoutingAttention", [1024]]
    assert rows[13] == [-1, 1, "CoordAtt", [32]]
    text = "\n".join(result.changes)
    assert "C2BRA is C2PSA_BiLevelRoutingAttention" in text and "SimAM inside C3k2" in text
    with pytest.raises(MigrationError, match="C2Nothing"):
        d["backbone"][10][2] = "C2Nothing"
        migrate(d)
