"""Resume compares contents, not sizes: a model folder rebuilt in place with other weights, an image rewritten with the
same byte size, or another commit of a hub model is refused; hashing is done once per file and process."""
from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import huggingface_hub
import pytest
from PIL import Image

from diffclf_lite.data import fingerprints as F
from diffclf_lite.data.datasets import image_folder
from diffclf_lite.models.sd import StableDiffusion, build_tiny_sd
from diffclf_lite.runs.cli import main
from diffclf_lite.runs.records import fingerprint_folder, hub_commit


def _sizes(folder: Path) -> dict[str, int]:
    return {p.relative_to(folder).as_posix(): p.stat().st_size for p in folder.rglob("*") if p.is_file()}


def _args(model, data, out, *extra) -> list[str]:
    return ["evaluate", "--model", str(model), "--data", str(data), "--strategy", "exhaustive:2", "--device", "cpu",
            "--dtype", "fp32", "--no-progress", "--output", str(out), *extra]


def _refusal(argv, capsys) -> str:
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2 and "Traceback" not in err, err
    return err


def test_a_model_folder_rebuilt_in_place_with_other_weights_is_refused(tmp_path, capsys):
    model = build_tiny_sd(tmp_path / "model", seed=0)
    argv = _args(model, "synthetic", tmp_path / "run", "--subset", "2")
    assert main(argv) == 0 and main(argv) == 0  # the same folder resumes
    before = _sizes(model)
    shutil.rmtree(model)
    build_tiny_sd(model, seed=1)  # same architecture, every file the same size, other weights
    assert _sizes(model) == before
    err = _refusal(argv, capsys)
    assert "the model's files (weights or configs) are not the ones the records were made with" in err
    assert "model_fingerprint: the folder has" in err and "--overwrite" in err


def test_an_image_rewritten_with_the_same_byte_size_is_refused(tmp_path, tiny_sd_folder, capsys):
    root = tmp_path / "data"
    for name, colour in (("cat", (200, 0, 0)), ("dog", (0, 0, 200))):
        (root / name).mkdir(parents=True)
        for k in range(2):
            Image.new("RGB", (12, 10), colour).save(root / name / f"{k}.bmp")  # bmp: the size depends on pixels' count only
    argv = _args(tiny_sd_folder, root, tmp_path / "run")
    assert main(argv) == 0
    size = (root / "dog" / "1.bmp").stat().st_size
    Image.new("RGB", (12, 10), (0, 200, 0)).save(root / "dog" / "1.bmp")
    assert (root / "dog" / "1.bmp").stat().st_size == size
    err = _refusal(argv, capsys)
    assert "the image files (their contents, names or labels) are not the ones the records were made from" in err
    assert "data_fingerprint" in err


def test_folder_fingerprints_read_contents(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "w.bin").write_bytes(b"\x00" * 64)
    first = fingerprint_folder(tmp_path / "a")
    (tmp_path / "a" / "w.bin").write_bytes(b"\x01" * 64)
    assert fingerprint_folder(tmp_path / "a") != first
    (tmp_path / "a" / "w.bin").write_bytes(b"\x00" * 64)
    assert fingerprint_folder(tmp_path / "a") == first  # contents, not the time they were written


def test_each_file_is_hashed_once_per_process(tmp_path, monkeypatch):
    f = tmp_path / "w.bin"
    f.write_bytes(b"weights" * 1000)
    F.clear_cache()
    digest = F.file_digest(f)

    def no_reading(*args, **kwargs):
        raise AssertionError("read again")

    monkeypatch.setattr(Path, "open", no_reading)
    assert F.file_digest(f) == digest  # a stat, no read
    monkeypatch.undo()
    f.write_bytes(b"Weights" * 1000)  # same size, new mtime: read again
    assert F.file_digest(f) != digest


def test_image_folder_fingerprint_follows_contents(tmp_path):
    root = tmp_path / "d"
    (root / "x").mkdir(parents=True)
    Image.new("RGB", (4, 4), (1, 2, 3)).save(root / "x" / "a.bmp")
    first = image_folder(root).fingerprint
    Image.new("RGB", (4, 4), (9, 9, 9)).save(root / "x" / "a.bmp")
    assert image_folder(root).fingerprint != first and first.startswith("folder:")


# ---- hub models: the code path cannot reach the hub here, so the hub is faked ----
def test_a_hub_model_is_fingerprinted_by_the_commit_that_was_loaded(tmp_path, tiny_sd_folder, monkeypatch, capsys):
    commits = iter(["a" * 40, "a" * 40, "b" * 40])
    loaded, real = [], StableDiffusion.from_pretrained

    def fake_from_pretrained(cls, model, prompts=(), **kwargs):
        assert model == "someone/tiny-sd"
        sd = real(tiny_sd_folder, prompts, **kwargs)
        sd.commit_hash = next(commits)  # what diffusers' load_config(..., return_commit_hash=True) gives for a hub id
        loaded.append(sd.commit_hash)
        return sd

    monkeypatch.setattr(StableDiffusion, "from_pretrained", classmethod(fake_from_pretrained))
    argv = _args("someone/tiny-sd", "synthetic", tmp_path / "run", "--subset", "2")
    assert main(argv) == 0 and main(argv) == 0  # the same commit resumes
    err = _refusal(argv, capsys)  # the hub's main branch moved to another commit
    assert loaded == ["a" * 40, "a" * 40, "b" * 40]
    assert "the model's files (weights or configs) are not the ones" in err and f'has "{"a" * 40}"' in err


def test_a_local_folder_has_no_commit(tiny_sd_folder):
    assert StableDiffusion.from_pretrained(tiny_sd_folder, device="cpu").commit_hash is None


def test_hub_commit_falls_back_to_the_cache_then_the_hub(monkeypatch):
    te = SimpleNamespace(config=SimpleNamespace(_commit_hash="c" * 40))  # transformers configs carry it
    assert hub_commit("o/m", model=SimpleNamespace(commit_hash=None, text_encoder=te)) == "c" * 40

    calls = []

    def snapshot(repo_id, revision=None, local_files_only=False):
        calls.append(("snapshot", repo_id, revision, local_files_only))
        return f"/cache/models--o--m/snapshots/{'d' * 40}"

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot)
    assert hub_commit("o/m", revision="main") == "d" * 40 and calls == [("snapshot", "o/m", "main", True)]

    def not_cached(*args, **kwargs):
        raise huggingface_hub.errors.LocalEntryNotFoundError("not cached")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", not_cached)
    monkeypatch.setattr(huggingface_hub, "model_info", lambda repo_id, revision=None: SimpleNamespace(sha="e" * 40))
    assert hub_commit("o/m") == "e" * 40

    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(huggingface_hub, "model_info", offline)
    with pytest.raises(ValueError, match="--model o/m: cannot tell which commit of it was loaded"):
        hub_commit("o/m")
