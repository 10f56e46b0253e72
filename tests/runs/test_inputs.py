"""Every bad input gets a documented conversion or a clear error naming the file or setting: image modes and sizes,
broken files in a folder, empty folders, prompt files, dataset names, offline hub ids, devices, batch sizes,
and no unsafe deserialisation anywhere in the package."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from diffclf_lite import prompts as P
from diffclf_lite.cli import main
from diffclf_lite.datasets import UnreadableImage, image_folder, load_dataset
from diffclf_lite.devices import resolve_device
from diffclf_lite.evaluate import evaluate
from diffclf_lite.sd import StableDiffusion, build_tiny_sd, preprocess_image
from diffclf_lite.strategies import Exhaustive

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_sd(tmp_path_factory.mktemp("inputs") / "tiny")


def _rgb(x: torch.Tensor) -> list[int]:
    """The centre pixel of a preprocessed (3, R, R) image in [-1, 1], back to 0..255."""
    r = x.shape[-1] // 2
    return [round(v) for v in ((x[:, r, r] + 1) * 127.5).tolist()]


def _palette_image() -> Image.Image:
    image = Image.new("P", (9, 7), 1)
    image.putpalette([0, 0, 0, 200, 10, 10])
    return image


# mode -> (image, expected RGB): the documented conversions (alpha over white, 16-bit and float rescaled to 8 bits)
MODES = {
    "1": (Image.new("1", (9, 7), 1), [255, 255, 255]),
    "L": (Image.new("L", (9, 7), 100), [100, 100, 100]),
    "LA": (Image.new("LA", (9, 7), (0, 0)), [255, 255, 255]),  # fully transparent black -> the white background
    "P": (_palette_image(), [200, 10, 10]),  # palette entry 1 = (200, 10, 10)
    "RGBA": (Image.new("RGBA", (9, 7), (0, 0, 255, 255)), [0, 0, 255]),
    "CMYK": (Image.new("CMYK", (9, 7), (0, 255, 255, 0)), [255, 0, 0]),  # pure red in ink
    "I;16": (Image.fromarray(np.full((7, 9), 65535, dtype=np.uint16)), [255, 255, 255]),
    "F": (Image.fromarray(np.full((7, 9), 0.5, dtype=np.float32)), [128, 128, 128]),
}


@pytest.mark.parametrize("mode", list(MODES))
def test_every_pil_mode_becomes_the_documented_rgb(mode):
    image, expected = MODES[mode]
    assert image.mode == mode
    x = preprocess_image(image, 16)
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32 and float(x.abs().max()) <= 1
    assert _rgb(x) == pytest.approx(expected, abs=1)


def test_image_files_in_every_mode_load_from_a_folder(tmp_path):
    formats = {"1": "png", "L": "png", "LA": "png", "P": "png", "RGBA": "png", "CMYK": "tiff", "I;16": "png", "F": "tiff"}
    for mode, ext in formats.items():
        (tmp_path / "all").mkdir(exist_ok=True)
        MODES[mode][0].save(tmp_path / "all" / f"{mode.replace(';', '_')}.{ext}")
    ds = image_folder(tmp_path)
    assert len(ds) == 8 and not ds.skipped
    by_file = sorted(formats, key=lambda m: f"{m.replace(';', '_')}.{formats[m]}")  # the folder's sorted file order
    for i, mode in enumerate(by_file):
        image, _ = ds[i]
        assert image.mode == mode and _rgb(preprocess_image(image, 8)) == pytest.approx(MODES[mode][1], abs=1)


def test_tiny_huge_and_long_images(monkeypatch):
    assert preprocess_image(Image.new("RGB", (1, 1), (10, 20, 30)), 16).shape == (3, 16, 16)
    assert _rgb(preprocess_image(Image.new("RGB", (1, 1), (10, 20, 30)), 16)) == [10, 20, 30]
    big = preprocess_image(Image.new("RGB", (6000, 4000), (0, 128, 0)), 32)  # downscaled: 24 Mpx in, 32x32 out
    assert _rgb(big) == [0, 128, 0]
    long = Image.new("RGB", (2, 40000), (5, 5, 5))  # 1:20000; resized naively it would be 512 x 10 M pixels
    long.paste((250, 250, 250), (0, 19000, 2, 21000))  # the centre band is what a centre crop keeps
    assert _rgb(preprocess_image(long, 512)) == [250, 250, 250]
    with pytest.raises(ValueError, match="0x5 pixels has nothing to classify"):
        preprocess_image(Image.new("RGB", (0, 5)), 16)


def _folder(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    for name, colour in (("cat", (200, 0, 0)), ("dog", (0, 0, 200))):
        (root / name).mkdir(parents=True)
        for k in range(2):
            Image.new("RGB", (12, 10), colour).save(root / name / f"{k}.png")
    return root


def test_broken_and_foreign_files_in_a_folder_are_reported(tmp_path, monkeypatch):
    root = _folder(tmp_path)
    (root / "cat" / "notes.txt").write_text("not an image")
    (root / "cat" / "fake.jpg").write_text("not a jpeg either")
    (root / "loose.png").write_bytes((root / "cat" / "0.png").read_bytes())
    (root / "cat" / ".DS_Store").write_bytes(b"\0\1")  # hidden: not data, not reported
    Image.new("RGB", (64, 64), (0, 0, 200)).save(root / "dog" / "cut.png")
    (root / "dog" / "cut.png").write_bytes((root / "dog" / "cut.png").read_bytes()[:80])  # header intact, data cut
    with pytest.warns(UserWarning, match="3 files left out"):
        ds = image_folder(root)
    assert len(ds) == 5
    reasons = "\n".join(ds.skipped)
    assert "notes.txt: not an image extension" in reasons and "fake.jpg: cannot be read as an image" in reasons
    assert "loose.png: not in a class subfolder" in reasons and ".DS_Store" not in reasons
    with pytest.raises(UnreadableImage, match=r"cut.png: cannot be decoded .*Re-export or delete"):
        ds[len(ds) - 1]  # sorted: cat/0, cat/1, dog/0, dog/1, dog/cut
    # over PIL's pixel limit (its decompression-bomb guard, here lowered to 2,000 pixels): left out at the scan, named
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)
    with pytest.warns(UserWarning, match="4 files left out"):
        small = image_folder(root)
    assert len(small) == 4 and any(s.startswith(str(root / "dog" / "cut.png")) and "DecompressionBombError" in s
                                   for s in small.skipped)


def test_an_unreadable_image_is_a_record_with_an_error_not_a_silent_drop(tmp_path, tiny):
    root = _folder(tmp_path)
    Image.new("RGB", (64, 64), (0, 0, 200)).save(root / "dog" / "cut.png")
    (root / "dog" / "cut.png").write_bytes((root / "dog" / "cut.png").read_bytes()[:80])
    ds = image_folder(root)
    model = StableDiffusion.from_pretrained(tiny, device="cpu", dtype="fp32")
    ev = evaluate(model, ds, P.class_prompts(ds.classes), Exhaustive(2), progress=False, output=tmp_path / "out")
    bad = ev.unreadable
    assert len(bad) == 1 and "cut.png" in bad[0]["error"] and bad[0]["label"] == 1
    assert ev.summary()["images"] == 4 and len(ev.summary()["unreadable"]) == 1 and len(ev.table()) == 4
    assert ev.confusion().sum() == 4


def test_empty_and_missing_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no class subfolders"):
        image_folder(tmp_path / "empty")
    (tmp_path / "flat").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "flat" / "a.png")
    with pytest.raises(ValueError, match="no class subfolders; put the images of each class in their own subfolder"):
        image_folder(tmp_path / "flat")
    (tmp_path / "hollow" / "cat").mkdir(parents=True)
    with pytest.raises(ValueError, match="found no readable images"):
        image_folder(tmp_path / "hollow")
    with pytest.raises(ValueError, match="no such folder"):
        load_dataset(str(tmp_path / "typo"))
    with pytest.raises(ValueError, match="unknown dataset 'mnist'.*cifar10"):
        load_dataset("mnist")
    (tmp_path / "file.png").write_bytes(b"x")
    with pytest.raises(ValueError, match="is a file"):
        load_dataset(str(tmp_path / "file.png"))


@pytest.mark.parametrize("text,message", [
    ("index,prompt\n0,a cat\n", "needs the columns class_index and prompt"),
    ("class_index,text\n0,a cat\n", "needs the columns class_index and prompt"),
    ("", "needs the columns class_index and prompt"),
    ("class_index,prompt\n", "no prompts"),
    ("class_index,prompt,class_name\n0,a cat,cat\n1,a feline,cat\n", "duplicate classes"),
    ("class_index,prompt\n0,a cat\n2,a dog\n", "without gaps; missing \\[1\\]"),
    ("class_index,prompt\nzero,a cat\n", ":2: class_index must be a non-negative integer"),
    ("class_index,prompt\n0,\n", ":2: empty prompt"),
])
def test_prompt_files_with_wrong_columns_duplicates_or_gaps(tmp_path, text, message):
    path = tmp_path / "p.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        P.read_prompt_csv(path)


def test_class_lists_with_duplicates(tmp_path):
    (tmp_path / "c.txt").write_text("cat\ndog\ncat\n")
    with pytest.raises(ValueError, match="duplicate class names \\['cat'\\]"):
        P.read_class_list(tmp_path / "c.txt")


def test_devices_that_do_not_exist():
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="not a device name"):
        resolve_device("graphics-card")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="'cuda' was requested but this machine has none.*--device cpu"):
            resolve_device("cuda")
        with pytest.raises(ValueError, match="has none"):
            StableDiffusion(None, None, None, None, torch.ones(3), device="cuda:0")
    else:
        with pytest.raises(ValueError, match="numbered from 0"):
            resolve_device(f"cuda:{torch.cuda.device_count()}")


def test_batch_sizes_of_zero(tiny):
    model = StableDiffusion.from_pretrained(tiny, device="cpu", dtype="fp32")
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
def test_cli_usage_errors_are_one_line_with_exit_code_2(tiny, tmp_path, capsys, extra, message):
    line = _cli_error(["evaluate", "--model", str(tiny), "--data", "synthetic", "--strategy", "exhaustive:2",
                       "--output", str(tmp_path / "o"), "--no-progress", *extra], capsys)
    assert line.startswith("diffclf evaluate: error:") and message in line


def test_cli_bad_folder_prompt_and_resume_errors(tiny, tmp_path, capsys):
    root = _folder(tmp_path)
    (tmp_path / "three.txt").write_text("cat\ndog\nbird\n")
    base = ["evaluate", "--model", str(tiny), "--data", str(root), "--strategy", "exhaustive:2", "--device", "cpu",
            "--no-progress", "--output", str(tmp_path / "run")]
    assert "prompts describe 3 classes but the data has 2" in _cli_error([*base, "--prompts", str(tmp_path / "three.txt")], capsys)
    assert main(base) == 0
    line = _cli_error([*base, "--seed", "4"], capsys)
    assert "seed: the folder has 0, this run has 4" in line and "--overwrite" in line
    assert main([*base, "--seed", "4", "--overwrite"]) == 0
    assert "not an evaluation output folder" in _cli_error(["merge", str(tmp_path)], capsys)


def _shell(*args: str, **env: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **env}
    return subprocess.run([sys.executable, "-m", "diffclf_lite.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env=full_env)


def test_an_uncached_hub_id_while_offline_from_the_shell(tmp_path):
    proc = _shell("evaluate", "--model", "someone/not-cached", "--data", "synthetic", "--strategy", "exhaustive:2",
                  "--device", "cpu", "--output", str(tmp_path / "o"), HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "HF_HUB_OFFLINE is set and 'someone/not-cached' is not in the local hub cache" in lines[-1]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_a_gpu_requested_where_none_exists(tmp_path, capsys):
    line = _cli_error(["evaluate", "--data", "synthetic", "--device", "cuda", "--output", str(tmp_path / "o")], capsys)
    assert line.startswith("diffclf evaluate: error: device 'cuda' was requested but this machine has none")


UNSAFE = re.compile(r"\bpickle\b|\bjoblib\b|\bdill\b|allow_pickle\s*=\s*True|torch\.load\((?![^)]*weights_only\s*=\s*True)")


def test_no_unsafe_deserialisation_in_the_package():
    """Checkpoints and noise banks are untrusted: only safetensors / from_pretrained / torch.load(weights_only=True)."""
    files = [*(ROOT / "diffclf_lite").rglob("*.py"), *(ROOT / "benchmarks").rglob("*.py"), *(ROOT / "book").glob("*.ipynb")]
    hits = [f"{f.relative_to(ROOT)}:{n}" for f in files
            for n, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1) if UNSAFE.search(line)]
    assert not hits, f"unsafe loads (use safetensors or torch.load(..., weights_only=True)): {hits}"
    assert UNSAFE.search("torch.load(path)") and UNSAFE.search("import pickle")  # the pattern can fail
    assert not UNSAFE.search("torch.load(path, weights_only=True)")


def test_warnings_are_not_errors_for_a_clean_folder(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(image_folder(_folder(tmp_path))) == 4
