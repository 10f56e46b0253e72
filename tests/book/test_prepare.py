"""The build step before the chapters: trains (or finds) what the cpu profile loads, and says which."""
from __future__ import annotations

import pytest

from diffclf_lite.book import prepare as P


def test_prepare_trains_what_is_missing_and_reports_what_was_cached(tmp_path, monkeypatch, capsys):
    built = []

    def fake(name):
        def where():
            return tmp_path / name

        def build(progress=True):
            built.append(name)
            (tmp_path / name).mkdir(exist_ok=True)
            (tmp_path / name / "training.json").write_text("{}")
            return tmp_path / name
        return where, build

    digits_where, digits_build = fake("digits")
    mini_where, mini_build = fake("mini")
    monkeypatch.setattr(P, "digits_checkpoint_path", digits_where)
    monkeypatch.setattr(P, "digits_checkpoint", digits_build)
    monkeypatch.setattr(P, "miniature_path", mini_where)
    monkeypatch.setattr(P, "miniature_models", mini_build)
    (tmp_path / "digits").mkdir()
    (tmp_path / "digits" / "training.json").write_text("{}")  # already trained
    out = P.prepare("cpu", progress=False)
    assert sorted(out.values()) == sorted(str(tmp_path / n) for n in ("digits", "mini"))
    text = capsys.readouterr().out
    assert "digits model (chapter 3): in the cache" in text and "(chapters 2 and 4): trained in" in text
    assert P.prepare("smoke") == {} and P.prepare("gpu") == {}
    with pytest.raises(ValueError, match="profile"):
        P.prepare("laptop")
