"""Citations: one style ({cite:t} / {cite:p} roles, author-year), and every cited work in book/references.bib."""
from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted(p for p in (ROOT / "book").rglob("*") if p.suffix in (".md", ".ipynb"))
ROLE = re.compile(r"\{cite(?::[a-z]+)?\}`([^`]+)`")
# A citation typed as text: "Song et al., 2021", "Peebles & Xie (2023)", "(Clark and Jaini, 2023)".
NAME = r"[A-Z][A-Za-z'-]+"
TYPED = re.compile(rf"\b{NAME}(?: et al\.| (?:&|and) {NAME}),? \(?(?:19|20)\d\d\b")


def _markdown(path: Path) -> str:
    if path.suffix == ".md":
        return path.read_text(encoding="utf-8")
    return "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "markdown")


def _bib_keys() -> set[str]:
    return set(re.findall(r"^@\w+\{([^,\s]+),", (ROOT / "book" / "references.bib").read_text(encoding="utf-8"), re.M))


@pytest.mark.parametrize("path", PAGES, ids=lambda p: str(p.relative_to(ROOT / "book")))
def test_every_cited_key_is_in_the_bibliography(path: Path) -> None:
    keys = {k.strip() for m in ROLE.findall(_markdown(path)) for k in m.split(",")}
    missing = sorted(keys - _bib_keys())
    assert not missing, f"{path.name} cites {missing}, not in book/references.bib"


@pytest.mark.parametrize("path", PAGES, ids=lambda p: str(p.relative_to(ROOT / "book")))
def test_no_citation_is_typed_as_text(path: Path) -> None:
    typed = [m.group(0) for m in TYPED.finditer(ROLE.sub("", _markdown(path)))]
    assert not typed, f"{path.name}: cite with {{cite:t}}`key` or {{cite:p}}`key`, not as text: {typed}"


def test_the_typed_citation_pattern_catches_what_it_should() -> None:
    for text in ("Song et al., 2021", "(Peebles & Xie, 2023)", "Clark and Jaini (2023)", "Li et al. 2023"):
        assert TYPED.search(text), text
    for text in ("Li et al. found", "{cite:t}`li2023diffusion` in 2023", "ImageNet (2009 release)"):
        assert not TYPED.search(ROLE.sub("", text)), text


def test_the_bibliography_style_labels_entries_as_the_text_cites() -> None:
    from pybtex.database import parse_file

    from diffclf_lite.book.bibstyle import _label

    entries = parse_file(str(ROOT / "book" / "references.bib")).entries
    assert _label(entries["li2023diffusion"]) == "Li et al., 2023"
    assert _label(entries["clark2023text"]) == "Clark and Jaini, 2023"
    assert _label(entries["mcnemar1947note"]) == "McNemar, 1947"
