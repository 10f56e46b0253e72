"""The digits recipe: the command line, a loadable checkpoint, and the per-machine cache keyed by settings."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from diffclf_lite.data.digits import DIGITS_TEST_PER_CLASS
from diffclf_lite.models.classcond import ClassConditionalUNet
from diffclf_lite.training import TrainConfig
from diffclf_lite.training.digits import main


def test_command_line_help(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert all(opt in text for opt in ("--out", "--steps", "--seed", "--label-dropout", "--schedule"))


def test_digits_checkpoint_is_trained_once_and_keyed_by_settings(tmp_path, monkeypatch) -> None:
    from diffclf_lite.training import digits as recipe

    calls = []
    real = recipe.train_digits_model
    monkeypatch.setattr(recipe, "train_digits_model", lambda *a, **k: calls.append(a) or real(*a, **k))
    first = recipe.digits_checkpoint(steps=2, preset="tiny", root=tmp_path, progress=False, batch_size=8)
    again = recipe.digits_checkpoint(steps=2, preset="tiny", root=tmp_path, progress=False, batch_size=8)
    other = recipe.digits_checkpoint(steps=2, preset="tiny", root=tmp_path, progress=False, batch_size=8, seed=1)
    assert first == again != other and len(calls) == 2  # the second call reused the cached folder
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([first.name, other.name])  # no temp folders left
    info = json.loads((first / "training.json").read_text())
    assert info["config"]["steps"] == 2 and info["config"]["batch_size"] == 8 and len(info["losses"]) == 2
    same = TrainConfig(steps=2, preset="tiny", batch_size=8)  # the same settings as a config
    assert recipe.digits_checkpoint(config=same, root=tmp_path) == first and len(calls) == 2
    assert recipe.digits_checkpoint_path(config=same, root=tmp_path) == first
    with pytest.raises(ValueError, match="either config or keyword"):
        recipe.digits_checkpoint(config=same, root=tmp_path, batch_size=8)
    model = ClassConditionalUNet.from_pretrained(first)
    assert model.num_classes == 10


def test_digits_checkpoint_leaves_nothing_when_training_fails(tmp_path, monkeypatch) -> None:
    from diffclf_lite.training import digits as recipe

    def broken(out_dir, *args, **kwargs):
        (Path(out_dir) / "config.json").parent.mkdir(parents=True)
        (Path(out_dir) / "config.json").write_text("{}")  # a half-written checkpoint
        raise KeyboardInterrupt

    monkeypatch.setattr(recipe, "train_digits_model", broken)
    with pytest.raises(KeyboardInterrupt):
        recipe.digits_checkpoint(steps=2, preset="tiny", root=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_train_digits_model_writes_a_loadable_checkpoint(tmp_path) -> None:
    import json

    from diffclf_lite.models.classcond import ClassConditionalUNet
    from diffclf_lite.training import train_digits_model

    r = train_digits_model(tmp_path / "ckpt", steps=2, preset="tiny", progress=False, batch_size=4)
    info = json.loads((tmp_path / "ckpt" / "training.json").read_text())
    assert info["config"]["extra"]["test_per_class"] == DIGITS_TEST_PER_CLASS and info["num_classes"] == 10
    model = ClassConditionalUNet.from_pretrained(tmp_path / "ckpt")
    assert model.num_conditions == 10 and model.resolution == 16 and len(r.losses) == 2
