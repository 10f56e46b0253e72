"""Bundled class names and templates, prompt sets with several prompts per class, prompt files and class lists."""
from __future__ import annotations

import math

import pytest
import torch

from diffclf_lite.data import prompts as P


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
