"""The README and the documentation site: what the README keeps, where figures come from, and that the examples hold.

Figure tables are never typed: every markdown table in the README or a docs page whose data cells hold numbers must be
an include of a file under docs/benchmarks/ that a benchmark script wrote (`yolo_attn.profiling.publish`), with its
header (command, machine, date, commit). The one exception is the README block table's params column, which
tests/docs/test_docs_block_params.py checks against the built models.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import io
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from yolo_attn.profiling.publish import FIELDS, read_benchmark

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
DOCS = REPO / "docs"
BENCHMARKS = DOCS / "benchmarks"
INCLUDE = re.compile(r'^\s*--8<--\s+"([^"]+)"\s*$')
CODE_SPAN = re.compile(r"`[^`]*`")
NUMBER_CELL = re.compile(r"^[-+−~]?\d")
# README sections the docs include (pymdownx.snippets "README.md:<section>"): one copy of the block table and example
README_SECTIONS = {"blocks", "own-block", "python-api"}
# docs/benchmarks files no script writes, and why (none today: every table has its script)
NO_SCRIPT: dict[str, str] = {}
# the pages the README must link to (deliverable 7 of the redesign)
REQUIRED_PAGES = [
    "index.md",
    "fine-tuning.md",
    "any-block.md",
    "your-own-block.md",
    "tasks.md",
    "placement.md",
    "scaling-out.md",
    "coco.md",
    "architecture.md",
    "benchmarks.md",
]


def pages() -> list[Path]:
    """The README and every docs page that is not a generated benchmark file."""
    return [README, *sorted(p for p in DOCS.rglob("*.md") if BENCHMARKS not in p.parents)]


def tables(text: str) -> Iterator[tuple[int, list[str]]]:
    """Yield (first line number, rows) of each markdown table, indented ones included, outside code fences."""
    rows: list[str] = []
    start, fenced = 0, False
    for number, line in enumerate([*text.splitlines(), ""], start=1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        if not fenced and line.lstrip().startswith("|"):
            start = start if rows else number
            rows.append(line.strip())
            continue
        if rows:
            yield start, rows
            rows = []


def cells(row: str) -> list[str]:
    """Split a table row into its cells (an escaped ``\\|`` stays inside its cell)."""
    return [c.strip() for c in re.split(r"(?<!\\)\|", row.strip().strip("|"))]


def numeric_columns(rows: list[str]) -> set[int]:
    """Columns (0-based) with at least one data cell that is a figure: a number once code spans are removed."""
    found = set()
    for row in rows[2:]:
        for index, cell in enumerate(cells(row)):
            if NUMBER_CELL.match(CODE_SPAN.sub("", cell).replace("*", "").strip()):
                found.add(index)
    return found


def includes(text: str) -> list[str]:
    """The paths a page includes with ``--8<-- "path"`` (pymdownx.snippets), section suffixes kept."""
    return [m.group(1) for line in text.splitlines() if (m := INCLUDE.match(line))]


def code_blocks(text: str, languages: tuple[str, ...]) -> Iterator[str]:
    """Yield the body of each fenced code block in one of ``languages``."""
    for match in re.finditer(r"^[ \t]*```(\w*)[ \t]*\n(.*?)^[ \t]*```", text, re.S | re.M):
        if match.group(1) in languages:
            yield match.group(2)


def section(text: str, title: str) -> str:
    """The body of the ``## title`` section."""
    return text.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def command_lines(text: str, program: str = "yolo-attn") -> list[str]:
    """Every command of ``program`` in a page: bash-block lines (continuations joined) and inline code spans."""
    found = []
    for block in code_blocks(text, ("bash", "text", "")):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #", 1)[0].strip().removeprefix("$ ")
            if line.startswith(program + " "):
                found.append(line)
    found += [s for s in re.findall(r"`([^`\n]+)`", text) if s.startswith(program + " ")]
    for _, rows in tables(text):  # a verb table: "| `compare --data D ...` | what it does |"
        if cells(rows[0])[0] == "verb":
            found += [f"{program} " + re.findall(r"`([^`]+)`", cells(row)[0])[0] for row in rows[2:]]
    return found


def all_text() -> dict[Path, str]:
    return {page: page.read_text() for page in pages()}


# --- the README -----------------------------------------------------------------------------------------------------


def test_readme_is_at_most_300_lines():
    lines = README.read_text().splitlines()
    assert len(lines) <= 300, f"README.md has {len(lines)} lines; move the rest into docs/"


def test_readme_keeps_the_two_setup_commands_and_ci_runs_the_test_one():
    setup = list(code_blocks(section(README.read_text(), "Set up (fresh clone)"), ("bash",)))
    assert len(setup) == 2, setup
    demo, tests = (block.strip() for block in setup)
    assert demo == "python -m venv .venv && . .venv/bin/activate && pip install -e . && yolo-attn demo"
    install = 'pip install -e ".[dev,docs]" && pytest'
    assert tests.startswith("python -m venv .venv && . .venv/bin/activate && " + install), tests
    assert "mkdocs build --strict" in tests
    ci = (REPO / ".ci" / "run").read_text()
    assert install in ci and "mkdocs build --strict" in ci


def test_readme_keeps_what_a_newcomer_needs_and_links_every_docs_page():
    text = README.read_text()
    for title in ("Set up (fresh clone)", "Command line", "Python API", "Blocks", "Your own block"):
        assert f"\n## {title}\n" in text, title
    assert "```yaml\n" in text.split("\n## ", 1)[0]  # the YAML excerpt, before the first section
    linked = set(re.findall(r"\]\(docs/([^)#]+)", text))
    missing = [page for page in REQUIRED_PAGES if page not in linked]
    assert not missing, f"README links no {missing}"
    for page in linked:
        assert (DOCS / page).is_file(), page


def test_readme_verb_table_lists_exactly_the_cli_verbs():
    from yolo_attn.cli import VERBS

    table = section(README.read_text(), "Command line")
    listed = [re.match(r"\| `([\w-]+)`", row)[1] for row in table.splitlines() if re.match(r"\| `[\w-]+` \|", row)]
    assert sorted(listed) == sorted(VERBS)


def test_readme_python_api_names_exist():
    table = section(README.read_text(), "Python API")
    names = 0
    for row in table.splitlines():
        if not row.startswith("| `yolo_attn"):
            continue
        first = cells(row)[0]
        module = None
        for name in re.findall(r"`([^`]+)`", first):
            if name.startswith("yolo_attn"):
                module = name.rsplit(".", 1)[0]
                resolve(name)
            else:
                resolve(f"{module}.{name}")
            names += 1
    assert names >= 15, names  # register_block, check_block, BLOCKS, compare, PlacementGrid, ...
    for name in ("register_block", "check_block", "BLOCKS", "compare", "PlacementGrid"):
        assert f"{name}`" in table, name


# --- figures: generated, never typed --------------------------------------------------------------------------------


@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(REPO)))
def test_no_figure_table_is_typed_into_a_page(page):
    text = page.read_text()
    blocks_line = text[: text.index("\n## Blocks\n")].count("\n") + 2 if page == README else None
    for line, rows in tables(text):
        figures = numeric_columns(rows)
        if page == README and line > blocks_line and rows[0].startswith("| YAML name"):
            params = cells(rows[0]).index("params added (k)")
            assert figures <= {params}, f"README block table: figures outside the params column, {figures}"
            continue
        assert not figures, (
            f"{page.name}:{line}: a figure table typed into the page (columns {sorted(figures)}); write it with "
            "yolo_attn.profiling.publish.write_benchmark from its script and include docs/benchmarks/<name>.md"
        )


def test_every_include_is_a_generated_benchmark_file_or_a_readme_section():
    seen = 0
    for page, text in all_text().items():
        for target in includes(text):
            seen += 1
            if target.startswith("README.md:"):
                assert target.split(":", 1)[1] in README_SECTIONS, (page, target)
                section_name = target.split(":", 1)[1]
                assert f"--8<-- [start:{section_name}]" in README.read_text()
                continue
            path = REPO / target
            assert path.parent == BENCHMARKS, f"{page.name} includes {target}: only docs/benchmarks/ files"
            fields, body = read_benchmark(path)  # raises on a missing header
            assert set(fields) == set(FIELDS) and all(fields.values())
            assert any(numeric_columns(rows) for _, rows in tables(body)), f"{target}: no figure table"
    assert seen >= 15


def test_every_benchmark_file_is_included_and_written_by_a_script():
    included = {target for text in all_text().values() for target in includes(text)}
    scripts = "\n".join(p.read_text() for p in (REPO / "scripts").glob("*.py"))
    writers = set(re.findall(r'write_benchmark\(\s*f?"([\w{}.]+)"', scripts))
    writers |= set(re.findall(r'"(demo_\w+)"', scripts))  # scripts/demo_tables.py: its FILES table
    for names in re.findall(r"^TABLES = \(([^)]*)\)", scripts, re.MULTILINE):  # a script that writes one of several
        writers |= set(re.findall(r'"(\w+)"', names))
    patterns = [re.compile("^" + re.sub(r"\{[^}]+\}", r"\\w+", w) + "$") for w in writers]
    files = sorted(BENCHMARKS.glob("*.md"))
    assert files
    for path in files:
        read_benchmark(path)
        assert f"docs/benchmarks/{path.name}" in included, f"{path.name}: no page includes it"
        if path.stem not in NO_SCRIPT:
            assert any(p.match(path.stem) for p in patterns), f"{path.name}: no script writes it ({sorted(writers)})"


# --- the examples: names exist, offline commands run -----------------------------------------------------------------


def resolve(dotted: str) -> object:
    """Import the longest importable module prefix of ``dotted`` and get the rest as attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(dotted)


def test_every_python_name_the_pages_mention_exists():
    names = set()
    for text in all_text().values():
        names |= set(re.findall(r"\byolo_attn(?:\.[A-Za-z_]\w*)+", text))
    names -= {"yolo_attn.blocks"}  # the plugins' entry-point group, not a module
    assert len(names) > 30
    from yolo_attn.utils.moved import MOVED

    old = sorted(n for n in names if any(n == m or n.startswith(m + ".") for m in MOVED))
    assert not old, f"the pages name module paths that moved (see yolo_attn.utils.moved.MOVED): {old}"
    missing = []
    for name in sorted(names):
        try:
            resolve(name)
        except (ImportError, AttributeError) as e:
            missing.append(f"{name}: {type(e).__name__}: {e}")
    assert not missing, "\n".join(missing)


def expand_braces(word: str) -> list[str]:
    """Shell brace expansion of one word: ``a-{x,y}-{1,2}`` -> four words."""
    match = re.search(r"\{([^{}]*,[^{}]*)\}", word)
    if not match:
        return [word]
    head, tail = word[: match.start()], word[match.end() :]
    return [w for part in match[1].split(",") for w in expand_braces(head + part + tail)]


def test_every_repository_path_the_pages_mention_exists():
    where = r"(?:yolo_attn|tests|scripts|model_yamls|\.ci)/"
    paths = set()
    for text in all_text().values():
        for word in re.findall(rf"(?<![\w/.~-]){where}[\w./{{}},-]*[\w}}]", text):
            paths |= {w.rstrip(".,") for w in expand_braces(word)}
    # a scaled model name (yolov8n-cbam.yaml) is its unscaled file at scale n, as Ultralytics loads it
    unscaled = {p: re.sub(r"\b(yolov8|yolo11|yolo26)[nsmlx]-", r"\1-", p) for p in paths}
    missing = sorted(p for p in paths if not (REPO / p).exists() and not (REPO / unscaled[p]).exists())
    assert len(paths) > 20, paths
    assert not missing, missing


@functools.cache
def verb_help(verb: str) -> str:
    from yolo_attn.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exit_info:
        main([verb, "--help"])
    assert exit_info.value.code == 0
    return out.getvalue()


def test_every_yolo_attn_command_in_the_pages_names_a_verb_and_flags_that_exist():
    from ultralytics.cfg import MODES

    from yolo_attn.cli import VERBS

    special = {"help", "checks", "version", "settings", "cfg", "copy-cfg", "solutions", "login", "logout"}
    checked = 0
    for page, text in all_text().items():
        for line in command_lines(text):
            word = line.split()[1]
            if word.startswith("<") or word == "...":
                continue
            assert word in VERBS or word in MODES or word in special, f"{page.name}: {line}"
            if word in VERBS:
                for flag in re.findall(r"(?<![\w-])(--[a-z][\w-]*)", line):
                    assert re.search(rf"(?<![\w-]){flag}\b", verb_help(word)), f"{page.name}: {line}: {flag}"
                checked += 1
    assert checked > 30, checked


def yaml_examples() -> list[str]:
    found = []
    for text in all_text().values():
        for line in command_lines(text):
            words = shlex.split(line)
            placeholder = {"BASE", "NAME", "ARG", "SITE", "OUT"}
            if (
                words[1] != "yaml"
                or len(words) < 4
                or words[2].startswith("-")
                or any(w in placeholder or "/" in w or "..." in w or "[" in w for w in words)
            ):
                continue
            found.append(line)
    return sorted(set(found))


def test_the_docs_yaml_examples_run_offline(tmp_path, monkeypatch):
    from yolo_attn.cli import main

    examples = yaml_examples()
    assert len(examples) >= 5, examples
    monkeypatch.chdir(tmp_path)
    for line in examples:
        before = set(tmp_path.iterdir())
        main(shlex.split(line)[1:])
        written = set(tmp_path.iterdir()) - before
        assert any(p.suffix == ".yaml" for p in written), f"{line}: wrote {written}"


@pytest.mark.slow
def test_the_python_c_examples_run(tmp_path):
    snippets = []
    for text in all_text().values():
        snippets += re.findall(r'^python -c "([^"]+)"', text, re.M)
    assert snippets
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for code in snippets:
        proc = subprocess.run(
            [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
        )
        assert proc.returncode == 0, f"{code}\n{proc.stdout}\n{proc.stderr}"
