"""Datasets: synthetic shapes, image folders (every image mode, broken and foreign files, empty folders), and
torchvision's absence explained."""
from __future__ import annotations

import sys

import numpy as np
import pytest
from PIL import Image

from conftest import PIL_MODES as MODES
from conftest import centre_rgb as _rgb
from conftest import two_class_folder as _folder
from diffclf_lite.data.datasets import (UnreadableImage, image_folder, load_dataset, synthetic_shapes,
                                        torchvision_dataset)
from diffclf_lite.data.images import preprocess_image


def test_synthetic_shapes_and_subsets():
    ds = synthetic_shapes(n_per_class=4, size=32, seed=0)
    assert len(ds) == 12 and ds.classes == ["circle", "square", "triangle"]
    assert [ds[i][1] for i in range(6)] == [0, 1, 2, 0, 1, 2]
    a, b = np.asarray(ds[0][0]), np.asarray(synthetic_shapes(4, 32, seed=0)[0][0])
    assert a.shape == (32, 32, 3) and np.array_equal(a, b)
    sub = ds.subset(5, seed=3)
    assert len(sub) == 5 and sub.indices == sorted(set(sub.indices)) and sub.indices == ds.subset(5, seed=3).indices
    assert np.array_equal(np.asarray(sub[0][0]), np.asarray(ds[sub.source_index(0)][0]))


def test_image_folder(tmp_path):
    for name, colour in [("red_apple", (255, 0, 0)), ("green_pear", (0, 255, 0))]:
        (tmp_path / name).mkdir()
        for k in range(2):
            Image.new("RGB", (10 + k, 8), colour).save(tmp_path / name / f"{k}.png")
    ds = image_folder(tmp_path)
    assert ds.classes == ["green pear", "red apple"] and len(ds) == 4
    img, label = ds[0]
    assert label == 0 and img.getpixel((0, 0)) == (0, 255, 0)
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(ValueError, match="without images"):
        image_folder(tmp_path)
    with pytest.raises(ValueError, match="not a folder"):
        image_folder(tmp_path / "nope")


def test_torchvision_missing_gives_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)  # as on a machine without torchvision
    monkeypatch.setitem(sys.modules, "torchvision.datasets", None)
    with pytest.raises(ValueError, match="pip install torchvision"):
        torchvision_dataset("cifar10")


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


def test_broken_and_foreign_files_in_a_folder_are_reported(tmp_path, monkeypatch):
    root = _folder(tmp_path)
    (root / "cat" / "notes.txt").write_text("not an image")
    (root / "cat" / "fake.jpg").write_text("not a jpeg either")
    (root / "loose.png").write_bytes((root / "cat" / "0.png").read_bytes())
    (root / "cat" / ".DS_Store").write_bytes(b"\0\1")  # hidden: not data, not reported
    (root / "prompts.csv").write_text("class_index,prompt\n")  # a folder's own notes beside the classes: not reported
    Image.new("RGB", (64, 64), (0, 0, 200)).save(root / "dog" / "cut.png")
    (root / "dog" / "cut.png").write_bytes((root / "dog" / "cut.png").read_bytes()[:80])  # header intact, data cut
    with pytest.warns(UserWarning, match="3 files left out"):
        ds = image_folder(root)
    assert len(ds) == 5
    reasons = "\n".join(ds.skipped)
    assert "notes.txt: not an image extension" in reasons and "fake.jpg: cannot be read as an image" in reasons
    assert "loose.png: not in a class subfolder" in reasons and ".DS_Store" not in reasons and "prompts.csv" not in reasons
    with pytest.raises(UnreadableImage, match=r"cut.png: cannot be decoded .*Re-export or delete"):
        ds[len(ds) - 1]  # sorted: cat/0, cat/1, dog/0, dog/1, dog/cut
    # over PIL's pixel limit (its decompression-bomb guard, here lowered to 2,000 pixels): left out at the scan, named
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)
    with pytest.warns(UserWarning, match="4 files left out"):
        small = image_folder(root)
    assert len(small) == 4 and any(s.startswith(str(root / "dog" / "cut.png")) and "DecompressionBombError" in s
                                   for s in small.skipped)


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
