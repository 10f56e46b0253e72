"""A Sphinx extension: the references list labelled as the text cites, "Li et al., 2023", not "[LPD+23]".

The book cites with sphinxcontrib-bibtex's author-year style ({cite:t} gives "Li et al. (2023)"); its bibliography
labels come from a separate pybtex label style whose default ("alpha") gives keys like [LPD+23]. This registers a
pybtex style `authoryear` (labels "Li et al., 2023", list sorted by author and year) and the reference style
`author_year_round` (the same in-text citations in round brackets); `_config.yml` selects both.
"""
from __future__ import annotations

from collections import Counter


def _label(entry) -> str:
    people = entry.persons.get("author") or entry.persons.get("editor") or []
    names = [" ".join(p.last_names).replace("{", "").replace("}", "") for p in people] or ["Anon."]
    who = names[0] if len(names) == 1 else f"{names[0]} and {names[1]}" if len(names) == 2 else f"{names[0]} et al."
    return f"{who}, {entry.fields.get('year', 'n.d.')}"


def _styles():
    from pybtex.style.formatting.unsrt import Style as Unsrt
    from pybtex.style.labels import BaseLabelStyle

    class AuthorYearLabels(BaseLabelStyle):
        def format_labels(self, sorted_entries):
            entries = list(sorted_entries)
            labels = [_label(e) for e in entries]
            counts, seen = Counter(labels), Counter()
            for label in labels:  # two works by the same authors in one year: 2023a, 2023b
                if counts[label] > 1:
                    seen[label] += 1
                    label = label + "abcdefghijklmnopqrstuvwxyz"[seen[label] - 1]
                yield label

    class AuthorYear(Unsrt):
        default_label_style = "authoryear"
        default_sorting_style = "author_year_title"

    return AuthorYearLabels, AuthorYear


def _round_brackets():
    """sphinxcontrib-bibtex's author-year references in round brackets: "Li et al. (2023)", "(Li et al., 2023; ...)"."""
    from dataclasses import dataclass, field

    from sphinxcontrib.bibtex.style.referencing import BracketStyle
    from sphinxcontrib.bibtex.style.referencing.author_year import AuthorYearReferenceStyle

    def _round() -> BracketStyle:
        return BracketStyle(left="(", right=")", sep="; ")

    @dataclass
    class AuthorYearRound(AuthorYearReferenceStyle):
        bracket_textual: BracketStyle = field(default_factory=_round)
        bracket_parenthetical: BracketStyle = field(default_factory=_round)
        bracket_author: BracketStyle = field(default_factory=_round)
        bracket_label: BracketStyle = field(default_factory=_round)
        bracket_year: BracketStyle = field(default_factory=_round)

    return AuthorYearRound


def setup(app):
    from pybtex.plugin import register_plugin
    from sphinxcontrib.bibtex.plugin import register_plugin as register_reference_style

    labels, style = _styles()
    register_plugin("pybtex.style.labels", "authoryear", labels)
    register_plugin("pybtex.style.formatting", "authoryear", style)
    register_reference_style("sphinxcontrib.bibtex.style.referencing", "author_year_round", _round_brackets())
    return {"parallel_read_safe": True, "parallel_write_safe": True}
