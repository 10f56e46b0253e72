"""A green `make book` means every chapter executed in that build: a build after a failed one fails again.

Runs jupyter-book twice on a one-page book with the repository's execution settings and the Makefile's own build
flags: a chapter whose cell raises fails the first build and the second (no page is reused from the first), and
once the cell is fixed the build passes.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _make_book_flags() -> list[str]:
    line = re.search(r"jupyter-book build \. (.*)$", (ROOT / "Makefile").read_text(), re.M)
    assert line, "the Makefile's book target no longer runs `jupyter-book build . ...`"
    return line.group(1).split()


def _build(book: Path) -> subprocess.CompletedProcess:
    jb = Path(sys.executable).with_name("jupyter-book")
    env = {**os.environ, "JUPYTER_PREFER_ENV_PATH": "1"}
    return subprocess.run([str(jb), "build", str(book), *_make_book_flags()], cwd=book, env=env,
                          capture_output=True, text=True, timeout=600)


def test_a_build_after_a_failed_one_fails_again(tmp_path: Path) -> None:
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    small = {"title": "t", "execute": config["execute"], "only_build_toc_files": True}
    (tmp_path / "_config.yml").write_text(yaml.safe_dump(small), encoding="utf-8")
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: intro\nchapters:\n  - file: chapter\n")
    (tmp_path / "intro.md").write_text("# Intro\n")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Chapter"),
                                         nbformat.v4.new_code_cell("raise RuntimeError('this chapter fails')")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "chapter.ipynb")
    first, second = _build(tmp_path), _build(tmp_path)
    assert first.returncode != 0 and "Executing notebook failed" in first.stdout + first.stderr
    assert second.returncode != 0, "a second build passed over the failed chapter:\n" + second.stdout[-2000:]
    nb.cells[1].source = "print('fixed')"
    nbformat.write(nb, tmp_path / "chapter.ipynb")
    third = _build(tmp_path)
    assert third.returncode == 0, third.stdout[-3000:] + third.stderr[-3000:]
    assert "fixed" in (tmp_path / "_build" / "html" / "chapter.html").read_text(encoding="utf-8")
