"""The miniature captioned world: deterministic, held-out parts really held out, captions in the vocabulary."""
from __future__ import annotations

import random

import pytest
import torch
from sklearn.datasets import load_digits

from diffclf_lite.data import miniature as W
from diffclf_lite.data.digits import load_digits_split
from diffclf_lite.data.miniature import COLOURS


def test_images_are_deterministic_and_drawn_where_the_item_says() -> None:
    a, b = W.make_singles(40, "test", seed=3), W.make_singles(40, "test", seed=3)
    assert torch.equal(a.images, b.images) and a.items == b.items
    assert not torch.equal(a.images, W.make_singles(40, "test", seed=4).images)
    for img, item in zip(a.images, a.items):
        colour, _, pos = item.objects[0]
        ink = img.float().sum(0)  # (32, 32)
        left, right = ink[:, :16].sum(), ink[:, 16:].sum()
        assert (left > right) == (pos == "left")
        rgb = img.float().flatten(1)[:, ink.flatten() > 0].sum(1)  # the drawn colour's channel ratio
        want = torch.tensor(COLOURS[colour], dtype=torch.float32)
        assert torch.allclose(rgb / rgb.sum(), want / want.sum(), atol=0.02)


def test_training_never_shows_held_out_combinations_or_test_handwriting() -> None:
    train = W.training_set(600, 200, seed=0)
    shown = {(c, W.DIGIT_WORDS[d]) for it in train.items for c, d, _ in it.objects}
    assert shown.isdisjoint(W.HELD_OUT_COMBOS) and len(W.HELD_OUT_COMBOS) == 10
    colour_test = W.make_singles(100, "test", combos="held-out")
    assert all((o[0], W.DIGIT_WORDS[o[1]]) in W.HELD_OUT_COMBOS for it in colour_test.items for o in it.objects)
    train_groups, test_groups = W.pair_groups()
    assert set(train_groups).isdisjoint(test_groups) and len(test_groups) == round(0.2 * 450)
    split = load_digits_split(size=8)  # the handwriting: training images from the training digits only
    train_src = {k for src in train.sources for k in src}
    test_src = {k for src in W.make_pairs(50, "test").sources + colour_test.sources for k in src}
    assert train_src <= set(split.train_index.tolist()) and test_src <= set(split.test_index.tolist())
    labels = torch.as_tensor(load_digits().target)
    assert all(int(labels[k]) == d for it, src in zip(train.items, train.sources)
               for (_, d, _), k in zip(it.objects, src))


def test_captions_and_prompts_use_only_the_vocabulary() -> None:
    vocab = set(W.vocabulary())
    rng = random.Random(0)
    data = W.training_set(200, 100)
    texts = [W.random_caption(it, rng) for it in data.items]
    texts += [p for task in W.TASKS for tmpl in ("a", "the") for p in W.task_prompts(task, tmpl)[1]]
    assert {w for t in texts for w in t.split()} <= vocab
    assert not any(t.startswith("the ") for t in texts[:300])  # "the" starts only the held-out template
    assert W.task_prompts("digit", "the")[1][7] == "the seven" and W.caption("red", 7, "left") == "a red seven on the left"


def test_task_sets_label_what_they_show() -> None:
    for task in W.TASKS:
        x, y = W.task_set(task, 30, seed=1)
        names = W.task_prompts(task)[0]
        assert x.shape == (30, 3, 32, 32) and x.dtype == torch.uint8 and 0 <= int(y.min()) <= int(y.max()) < len(names)
    x, y = W.task_set("position", 30, seed=1)
    left_ink = x.float()[:, :, :, :16].sum((1, 2, 3)) > x.float()[:, :, :, 16:].sum((1, 2, 3))
    assert torch.equal(left_ink, y == 0)


def test_task_folder_layout(tmp_path) -> None:
    out = W.write_task(tmp_path / "digit", "digit", 25)
    assert sorted(p.name for p in out.iterdir() if p.is_dir())[:2] == ["0_zero", "1_one"]
    assert sum(1 for _ in out.rglob("*.png")) == 25
    assert (out / "classes.txt").read_text().split() == list(W.DIGIT_WORDS)
    assert (out / "prompts.csv").read_text().splitlines()[8] == "7,a seven,seven"
    with pytest.raises(ValueError, match="already holds files"):  # no mixed test set from two runs
        W.write_task(out, "digit", 5)
    assert sum(1 for _ in out.rglob("*.png")) == 25


def test_bad_arguments_get_clear_errors() -> None:
    with pytest.raises(ValueError, match="split"):
        W.make_singles(3, "val")
    with pytest.raises(ValueError, match="combos"):
        W.make_singles(3, "test", combos="some")
    with pytest.raises(ValueError, match="task"):
        W.task_set("shape", 3)
    with pytest.raises(ValueError, match="template"):
        W.task_prompts("digit", "an")
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="whole number"):
            W.make_singles(bad, "test")
    with pytest.raises(ValueError, match="whole number"):
        W.make_pairs(0, "test")
    with pytest.raises(ValueError, match="whole number"):
        W.miniature_winoground(0)
    with pytest.raises(ValueError, match="differ"):
        W.Item((("red", 1, "left"), ("red", 2, "right")))


def test_task_sets_have_every_class_equally_often() -> None:
    for task, classes in (("digit", 10), ("colour", 5), ("position", 2)):
        _, y = W.task_set(task, 10 * classes, seed=2)
        assert torch.bincount(y, minlength=classes).tolist() == [10] * classes
