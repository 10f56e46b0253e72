"""Bundled class names and templates, prompt sets with several prompts per class, datasets and dataset evaluation."""
from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import diffclf_lite as dc
from conftest import KnownErrorModel
from diffclf_lite import prompts as P
from diffclf_lite.datasets import image_folder, synthetic_shapes, torchvision_dataset
from diffclf_lite.evaluate import evaluate, planned_nfe, plot_confusion


@pytest.mark.parametrize("name,n_classes", [("cifar10", 10), ("stl10", 10), ("pets", 37), ("flowers102", 102),
                                            ("food101", 101), ("aircraft", 100), ("imagenet", 1000)])
def test_bundled_datasets(name, n_classes):
    info = P.dataset_info(name)
    assert len(info["classes"]) == n_classes and info["paper_template"] in info["templates"]
    assert all("{}" in t for t in info["templates"])
    ps = P.dataset_prompts(name)
    assert ps.num_classes == n_classes and ps.one_prompt_per_class


def test_paper_templates_and_label_order():
    assert P.dataset_info("CIFAR-10")["paper_template"] == "a blurry photo of a {}."
    assert P.dataset_info("oxford_pets")["paper_template"] == "a photo of a {}, a type of pet."
    pets = P.dataset_info("pets")["classes"]  # label order of the Pets dataset: alphabetical, ignoring case
    assert pets == sorted(pets, key=str.lower) and pets[:3] == ["Abyssinian", "american bulldog", "american pit bull terrier"]
    assert P.dataset_info("imagenet")["classes"][:2] == ["tench", "goldfish"]
    assert len(P.dataset_info("cifar10")["templates"]) == 18
    with pytest.raises(ValueError, match="cifar10, stl10"):
        P.dataset_info("mnist")


def test_several_prompts_per_class():
    ps = P.dataset_prompts("stl10", "all")
    assert len(ps.prompts) == 20 and ps.prompts[:2] == ("a photo of a airplane.", "a photo of the airplane.")
    assert ps.prompt_class[:4] == (0, 0, 1, 1) and not ps.one_prompt_per_class


def test_class_errors_average_the_alive_prompts_of_each_class():
    ps = P.class_prompts(["cat", "dog"], ["a {}", "the {}", "my {}"])  # prompts 0-2: cat, 3-5: dog
    err = torch.tensor([[1.0, 2.0, 3.0, 1.5, 1.5, float("nan")]])
    torch.testing.assert_close(ps.class_errors(err), torch.tensor([[2.0, 1.5]], dtype=torch.float64))
    assert ps.predict(err).tolist() == [1]
    alive = torch.tensor([[True, False, False, False, True, False]])  # e.g. after staged pruning
    torch.testing.assert_close(ps.class_errors(err, alive), torch.tensor([[1.0, 1.5]], dtype=torch.float64))
    assert ps.predict(err, alive).tolist() == [0]
    none_alive = torch.tensor([[True, True, True, False, False, False]])
    assert math.isnan(ps.class_errors(err, none_alive)[0, 1]) and ps.predict(err, none_alive).tolist() == [0]


def test_prompt_csv(tmp_path):
    ok = tmp_path / "ok.csv"
    ok.write_text("class_index,prompt,class_name\n0,a photo of a cat.,cat\n1,a photo of a dog.,dog\n0,a cat.,cat\n")
    ps = P.read_prompt_csv(ok)
    assert ps.class_names == ("cat", "dog") and ps.prompt_class == (0, 1, 0)
    official = tmp_path / "official.csv"  # the official code's column names
    official.write_text('prompt,classname,classidx\n"a photo of a cat, a pet.",cat,0\n"a dog.",dog,1\n')
    assert P.read_prompt_csv(official).prompts == ("a photo of a cat, a pet.", "a dog.")
    bad = {
        "class_index,text\n0,a cat\n": "class_index and prompt",
        "class_index,prompt\n0,a cat\n2,a dog\n": "without gaps",
        "class_index,prompt,class_name\n0,a cat,cat\n1,another cat,cat\n": "duplicate classes",
        "class_index,prompt,class_name\n0,a cat,cat\n0,a kitten,kitten\n": "named both",
        "class_index,prompt\nzero,a cat\n": "non-negative integer",
        "class_index,prompt\n0,a cat\n0,a cat\n": "appears twice",
        "class_index,prompt\n": "no prompts",
    }
    for i, (text, message) in enumerate(bad.items()):
        f = tmp_path / f"bad{i}.csv"
        f.write_text(text)
        with pytest.raises(ValueError, match=message):
            P.read_prompt_csv(f)
    dup = tmp_path / "classes.txt"
    dup.write_text("cat\ndog\ncat\n")
    with pytest.raises(ValueError, match="duplicate class names"):
        P.read_class_list(dup)
    with pytest.raises(ValueError, match="needs a '{}'"):
        P.class_prompts(["cat"], "a photo")


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


def test_evaluate_records_and_confusion(tmp_path):
    # known errors: class c's l2 error at timestep t is offset[t, c]^2; prompts 0,1 -> class 0, prompt 2 -> class 1
    offsets = torch.zeros(1000, 3)
    offsets[:, 0], offsets[:, 1], offsets[:, 2] = 0.5, 2.0, 1.0  # class errors: (0.25 + 4) / 2 = 2.125 vs 1.0
    model = KnownErrorModel(torch.zeros(4), offsets)
    ps = P.PromptSet(("a", "b"), ("p0", "p1", "p2"), (0, 0, 1))
    data = [([0.0] * 4, 1), ([0.0] * 4, 0)]
    ev = evaluate(model, data, ps, dc.Exhaustive(5), progress=False, images_per_call=2)
    assert [r["prediction"] for r in ev.records] == [1, 1] and ev.accuracy == 0.5
    assert ev.records[0]["class_errors"] == pytest.approx([2.125, 1.0]) and ev.records[0]["nfe"] == 15
    assert ev.records[0]["prompt_errors"] == pytest.approx([0.25, 4.0, 1.0])
    assert ev.confusion().tolist() == [[0, 1], [0, 1]]
    assert ev.table()["prediction_name"].tolist() == ["b", "b"]
    out = ev.save(tmp_path / "run")
    lines = (out / "records.jsonl").read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[1])["label"] == 0
    assert json.loads((out / "summary.json").read_text())["accuracy"] == 0.5
    import matplotlib

    matplotlib.use("Agg")
    ax = plot_confusion(ev)
    assert "accuracy 50.0%" in ax.get_title()
    budget = evaluate(model, data * 3, ps, dc.Exhaustive(5), progress=False, max_seconds=0.0)
    assert len(budget.records) == 1 and budget.settings["stopped_early"]  # time budget: stops after the first image
    with pytest.raises(ValueError, match="outside the 2 classes"):
        evaluate(model, [([0.0] * 4, 5)], ps, dc.Exhaustive(2), progress=False)


@pytest.mark.parametrize("name,n_classes,nfe", [("cifar10", 10, 2750), ("stl10", 10, 3000), ("pets", 37, 2050),
                                                ("food101", 101, 5570), ("flowers102", 102, 5590),
                                                ("aircraft", 100, 5550), ("imagenet", 1000, 124500)])
def test_planned_nfe_matches_the_official_code_count(name, n_classes, nfe):
    samples, keep, _ = dc.PAPER_SCHEDULES[name]
    assert planned_nfe(dc.Staged(samples, keep), n_classes) == nfe
    assert planned_nfe(dc.Exhaustive(7), n_classes, n_trials=2) == 14 * n_classes


def test_planned_nfe_is_what_classify_spends():
    model = KnownErrorModel(torch.zeros(4), torch.rand(1000, 6, generator=torch.Generator().manual_seed(0)))
    strategy = dc.Staged([4, 12], [3, 1])
    r = dc.classify(model, [[0.0] * 4] * 2, strategy)
    assert r.nfe.tolist() == [planned_nfe(strategy, 6)] * 2 == [4 * 6 + 8 * 3] * 2
