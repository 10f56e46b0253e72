"""The code a reader sees is formatted for the page: at most 88 columns, short cells, no tooling comments.

The book's code boxes show about 88 characters; longer lines are cut off on the rendered page. The formatter is
ruff's (Black-compatible, and it reads notebooks); string literals and comments it cannot break are checked here.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
CHAPTERS = sorted((ROOT / "book").glob("*.ipynb"))
COLUMNS = 88
MAX_LINES = 30          # a reader-facing code cell
MAX_SOLUTION_LINES = 45  # a build-it-yourself solution may be longer
TOOLING = re.compile(r"#\s*(noqa|NBVAL|type:\s*ignore|pragma|fmt:|pylint)", re.I)
HIDDEN = {"remove-cell", "remove-input"}


def _shown_code(path: Path):
    for i, cell in enumerate(nbformat.read(path, as_version=4).cells):
        tags = set(cell.metadata.get("tags", []))
        if cell.cell_type == "code" and not tags & HIDDEN:
            yield i, cell, tags


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_chapter_is_formatted(path: Path) -> None:
    run = subprocess.run([sys.executable, "-m", "ruff", "format", "--check", "--diff", f"--line-length={COLUMNS}",
                          "--no-cache", str(path)], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, (f"{path.name} is not formatted; run: ruff format --line-length {COLUMNS} "
                                 f"{path.relative_to(ROOT)}\n{run.stdout[-3000:]}{run.stderr[-2000:]}")


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_code_on_the_page_fits_and_has_no_tooling_comments(path: Path) -> None:
    problems = []
    for i, cell, tags in _shown_code(path):
        lines = cell.source.splitlines()
        problems += [f"cell {i}: {len(line)} columns: {line[:60]}..." for line in lines if len(line) > COLUMNS]
        problems += [f"cell {i}: tooling comment on the page: {line.strip()}" for line in lines if TOOLING.search(line)]
        limit = MAX_SOLUTION_LINES if "solution" in tags else MAX_LINES
        if len(lines) > limit:
            problems.append(f"cell {i}: {len(lines)} lines (at most {limit}); split it where the idea changes")
    assert not problems, f"{path.name}:\n  " + "\n  ".join(problems)
