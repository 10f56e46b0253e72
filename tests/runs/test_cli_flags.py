"""Flags that were ignored or half-reported: --prompts all on a folder, an --output that cannot be made, the resume
note printed once, --template with a paper dataset."""
from __future__ import annotations

import argparse
from types import SimpleNamespace

import pytest

from conftest import two_class_folder
from diffclf_lite.runs.cli import DEFAULT_TEMPLATE, _prompt_set, main


def _error(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2 and "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def _base(tiny_sd_folder, data, out) -> list[str]:
    return ["evaluate", "--model", str(tiny_sd_folder), "--data", str(data), "--strategy", "exhaustive:2", "--device", "cpu",
            "--dtype", "fp32", "--no-progress", "--output", str(out)]


@pytest.mark.parametrize("data", ["folder", "synthetic"])
def test_prompts_all_without_a_template_ensemble_is_an_error(tiny_sd_folder, tmp_path, capsys, data):
    data = two_class_folder(tmp_path) if data == "folder" else data
    err = _error([*_base(tiny_sd_folder, data, tmp_path / "o"), "--prompts", "all"], capsys)
    assert "--prompts all is CLIP's template ensemble of one of the paper's datasets" in err and ".csv" in err
    assert not (tmp_path / "o" / "records").exists()  # refused before any work


def test_template_with_a_paper_dataset_is_an_error_not_ignored():
    dataset = SimpleNamespace(name="cifar10", classes=["airplane"] * 10)
    args = argparse.Namespace(prompts="paper", template="a sketch of a {}.", data="cifar10")
    with pytest.raises(ValueError, match="--template is for folders, synthetic data and .txt class lists"):
        _prompt_set(args, dataset)
    assert _prompt_set(argparse.Namespace(prompts="all", template=DEFAULT_TEMPLATE, data="cifar10"), dataset).num_classes == 10


@pytest.mark.parametrize("where", ["proc", "under_a_file"])
def test_an_output_that_cannot_be_created_names_the_flag_and_the_path(tiny_sd_folder, tmp_path, capsys, where):
    if where == "proc":
        out = "/proc/diffclf-test/run"
    else:
        (tmp_path / "a_file").write_text("x")
        out = str(tmp_path / "a_file" / "run")
    err = _error(_base(tiny_sd_folder, "synthetic", out), capsys)
    assert f"--output {out}: cannot create this folder" in err and "[Errno" not in err


def test_an_output_that_is_a_file_is_named(tiny_sd_folder, tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    assert f"--output {tmp_path / 'f'} exists and is not a folder" in _error(_base(tiny_sd_folder, "synthetic", tmp_path / "f"), capsys)


def test_the_resume_note_is_printed_once(tiny_sd_folder, tmp_path, capsys):
    base = [*_base(tiny_sd_folder, "synthetic", tmp_path / "o"), "--subset", "2"]
    assert main([*base, "--batch-size", "4"]) == 0
    capsys.readouterr()
    assert main([*base, "--batch-size", "3"]) == 0
    out = capsys.readouterr().out
    assert out.count("note:") == 1 and "batch_size 4 -> 3" in out and "last bits" in out, out
