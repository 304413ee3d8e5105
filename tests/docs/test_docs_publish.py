"""The benchmark writer: every docs/benchmarks file carries the command, the machine, the date and the commit."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from yolo_attn.profiling import publish


def test_a_written_table_reads_back_with_its_header(tmp_path):
    table = "| block | ratio |\n| --- | --- |\n| SE | 1.02 |"
    path = publish.write_benchmark("demo", table, out_dir=tmp_path, note="Settings: rounds 3")
    assert path == tmp_path / "demo.md"
    assert path.read_text().splitlines()[0] == publish.MARK
    fields, body = publish.read_benchmark(path)
    assert list(fields) == list(publish.FIELDS)
    assert fields["Command"] == publish.command_line()
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", fields["Date"])
    assert re.match(r"[0-9a-f]{7,}( \(uncommitted changes\))?$|unknown", fields["Commit"])
    assert "logical cores" in fields["Machine"] and "Python" in fields["Machine"]
    assert body == table + "\n\nSettings: rounds 3"


def test_given_fields_are_written_as_given(tmp_path):
    path = publish.write_benchmark(
        "old",
        "| a | b |\n|---|---|\n| x | 1 |",
        command="python x.py",
        machine_line="m",
        date="d",
        commit="c",
        out_dir=tmp_path,
    )
    assert publish.read_benchmark(path)[0] == {"Command": "python x.py", "Machine": "m", "Date": "d", "Commit": "c"}


@pytest.mark.parametrize(
    "text",
    [
        "| a | b |\n|---|---|\n| x | 1 |\n",  # typed: no header
        publish.MARK + "\n\n- **Command:** `x`\n- **Machine:** m\n- **Date:** \n- **Commit:** c\n\n| a |\n",  # empty
        publish.MARK + "\n\n- **Command:** `x`\n- **Machine:** m\n- **Commit:** c\n\n| a |\n",  # a field missing
    ],
)
def test_a_file_without_a_full_header_is_refused(tmp_path, text):
    path = tmp_path / "bad.md"
    path.write_text(text)
    with pytest.raises(ValueError, match=r"bad\.md"):
        publish.read_benchmark(path)


def test_the_command_is_written_from_the_repository_root():
    script = publish.REPO / "scripts" / "bench_blocks.py"
    assert publish.command_line([str(script), "--cost-table"]) == "python scripts/bench_blocks.py --cost-table"
    assert publish.command_line(["yolo-attn", "demo", "--out", "a b"]) == "yolo-attn demo --out 'a b'"


def test_the_commit_ignores_the_benchmark_files_themselves(tmp_path):
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True, text=True).stdout.strip()

    git("init", "-q")
    (tmp_path / "docs" / "benchmarks").mkdir(parents=True)
    (tmp_path / "docs" / "benchmarks" / "t.md").write_text("old\n")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c")
    sha = git("rev-parse", "--short", "HEAD")
    (tmp_path / "docs" / "benchmarks" / "t.md").write_text("new\n")  # a rerun rewrote its table: still that commit
    assert publish.git_commit(tmp_path) == sha
    (tmp_path / "code.py").write_text("x = 2\n")  # the measured code changed: say so
    assert publish.git_commit(tmp_path) == f"{sha} (uncommitted changes)"


def test_a_subset_run_writes_the_docs_only_when_asked():
    assert publish.wants_docs(None, full_run=True)
    assert not publish.wants_docs(None, full_run=False)
    assert publish.wants_docs(True, full_run=False)
    assert not publish.wants_docs(False, full_run=True)


def test_every_benchmark_script_writes_through_the_writer_and_offers_no_docs():
    writers = [p for p in (publish.REPO / "scripts").glob("*.py") if "write_benchmark(" in p.read_text()]
    assert len(writers) >= 7, writers
    for path in writers:
        text = path.read_text()
        assert "add_docs_argument(" in text or path.name in {"demo_tables.py", "protocol_table.py"}, (
            f"{path.name}: no --docs/--no-docs"
        )
    proc = subprocess.run(
        [sys.executable, str(publish.REPO / "scripts" / "demo_tables.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "docs/benchmarks/demo_detect.md" in proc.stdout


def test_demo_tables_writes_the_reports_table_of_each_demo(tmp_path, monkeypatch):
    import importlib.util

    spec = importlib.util.spec_from_file_location("demo_tables", publish.REPO / "scripts" / "demo_tables.py")
    demo_tables = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo_tables)
    report = tmp_path / "compare.md"
    report.write_text(
        "# Comparison\n\nfine-tuned from w\n\n| Model | mAP50-95 |\n|---|---|\n| yolov8n | 0.141 |\n\nnotes\n"
    )
    assert demo_tables.first_table(report) == "| Model | mAP50-95 |\n|---|---|\n| yolov8n | 0.141 |"

    ran = []

    def fake_run_demo(task, out):
        ran.append((task, out))
        return f"| Model | {task} mAP |\n|---|---|\n| m | 0.5 |", 75.0, 120.0

    monkeypatch.setattr(demo_tables, "run_demo", fake_run_demo)
    monkeypatch.setattr(publish, "DOCS_BENCHMARKS", tmp_path / "bench")
    monkeypatch.setattr(sys, "argv", ["scripts/demo_tables.py", "--task", "segment", "pose", "--out", str(tmp_path)])
    assert demo_tables.main() == 0
    assert ran == [("segment", tmp_path / "segment"), ("pose", tmp_path / "pose")]
    fields, body = publish.read_benchmark(tmp_path / "bench" / "demo_tasks.md")
    assert fields["Command"].endswith(f"scripts/demo_tables.py --task segment pose --out {tmp_path}")
    assert "**segment**\n\n| Model | segment mAP |" in body and "**pose**" in body
    assert "`yolo-attn demo --task pose`: 1 min 15 s wall, 120 s CPU (user + sys)" in body


def test_protocol_table_reads_each_options_compare_csv(tmp_path, monkeypatch):
    import csv
    import importlib.util

    spec = importlib.util.spec_from_file_location("protocol_table", publish.REPO / "scripts" / "protocol_table.py")
    protocol_table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(protocol_table)
    columns = ["stem", "map50_95_mean", "map50_95_std", "engagement_mean", "engagement_min", "engagement_max"]
    columns += [f"delta_map50_95_{k}" for k in ("mean", "low", "high", "noise")]
    for i, (_, settings) in enumerate(protocol_table.OPTIONS):
        folder = tmp_path / protocol_table.folder_name(settings)
        folder.mkdir()
        with (folder / "compare.csv").open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(columns)
            writer.writerow(["yolov8n", 0.1411, 0.0036, "", "", "", "", "", "", ""])
            writer.writerow(["yolov8n-cbam", 0.139, 0.001, 0.034, 0.0087, 0.0921, -0.0021, -0.0265, 0.0222, "True"])
            writer.writerow(
                ["yolov8n-eca", 0.141, 0.002, 0.0218, 0.001, 0.0527, -0.0008 * i, -0.0011, -0.0005, "False"]
            )
    table = protocol_table.protocol_table(tmp_path).splitlines()
    assert len(table) == 2 + len(protocol_table.OPTIONS)
    assert table[0].startswith("| protocol | baseline mAP50-95 | CBAM engagement |")
    assert "| 0.1411 ± 0.0036 | 3.40% [0.87%, 9.21%] | -0.0021 [-0.0265, +0.0222] *noise* |" in table[2]
    assert table[3].endswith("| 2.18% [0.10%, 5.27%] | -0.0008 [-0.0011, -0.0005] |")
    command = protocol_table.compare_command(Path("DEMO"), Path("cmp"), protocol_table.OPTIONS[3][1])
    assert command[3:6] == ["compare", "--data", "DEMO/data/subset/data.yaml"]
    assert command[-2:] == ["attn_mix_decay=False", "attn_lr_mult=30"]
    assert "--latency-runs" in command and "cmp/mix_decayFalse_lr_mult30" in command
