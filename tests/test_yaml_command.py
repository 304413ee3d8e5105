"""``yolo-attn yaml BASE [--block] BLOCK [ARG ...] [key=value ...] [--task T] [--at SITE ...] [-o OUT]``."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from yolo_attn import cli
from yolo_attn.cfg.generated import base_yaml, find_block, generate, load_base


def _block_rows(path: Path, name: str) -> list[tuple[int, list]]:
    cfg = yaml.safe_load(path.read_text())
    return [(i, r[3]) for i, r in enumerate(cfg["backbone"] + cfg["head"]) if r[2] == name]


def test_args_and_keywords_at_the_standard_sites(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    cli.main(["yaml", "yolo11n", "cbam", "8", "k=3", "--task", "seg"])
    out = tmp_path / "yolo11n-seg-cbam.yaml"
    assert "Wrote yolo11n-seg-cbam.yaml" in capsys.readouterr().out
    assert _block_rows(out, "CBAM") == [(11, [8, 3]), (18, [8, 3]), (22, [8, 3]), (26, [8, 3])]
    expected = generate(load_base(base_yaml("yolo11", "seg")), find_block("CBAM"), [8, 3])
    assert yaml.safe_load(out.read_text()) == expected


def test_a_keyword_alone_gets_the_defaults_before_it(tmp_path: Path) -> None:
    out = tmp_path / "x.yaml"
    cli.main(["yaml", "yolov8s-pose", "CBAM", "k=3", "-o", str(out)])
    assert {tuple(a) for _, a in _block_rows(out, "CBAM")} == {(16, 3)}


def test_at_puts_the_block_after_the_layers_asked_for(tmp_path: Path) -> None:
    out = tmp_path / "yolov8-at.yaml"
    cli.main(["yaml", "yolov8", "SE", "--at", "4,6", "-o", str(out)])
    cfg = yaml.safe_load(out.read_text())
    assert [i for i, _ in _block_rows(out, "SE")] == [5, 8]
    assert cfg["head"][-1][0] == [17, 20, 23]  # Detect renumbered for the two inserted rows


def test_a_users_file_as_base(tmp_path: Path) -> None:
    base = tmp_path / "mine.yaml"
    base.write_text(yaml.safe_dump(load_base(base_yaml("yolo26", "obb")), sort_keys=False))
    cli.main(["yaml", str(base), "eca", "-o", str(tmp_path / "mine-eca.yaml")])
    assert [i for i, _ in _block_rows(tmp_path / "mine-eca.yaml", "ECA")] == [11, 18, 22, 26]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["yaml", "yolo11n", "nosuch"], "no registered block named 'nosuch'"),
        (["yaml", "yolo11n", "CBAM", "1", "2", "3"], "Expected CBAM [r=16, k=7]"),
        (["yaml", "yolo11n-seg", "CBAM", "--task", "pose"], "contradicts"),
        (["yaml", "yolov8n", "CA_C3k2"], "extends C3k2"),
        (["yaml", "yolov8n", "SE", "--at", "99"], "a site is a layer index"),
        (["yaml", "yolo12n", "--block", "SE", "--at", "p4", "sppf"], "'sppf': this model has no such site"),
        (["yaml", "yolo11n", "--block", "SE", "--at", "p9"], "its sites are p2 (2), p3 (4), p4 (6), p5 (10)"),
        (["yaml", "yolo11n", "--at", "p4"], "no block given"),
    ],
)
def test_errors_exit_2_with_the_reason(argv: list[str], message: str, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
