"""The binding benchmark of chapter 4: distractors, and both models scored on the same image and caption pairs."""
from __future__ import annotations

import random

import pytest
import torch

import diffclf_lite as dc
from conftest import SHAPES3
from diffclf_lite.book.binding import TASKS, binding_benchmark, diffusion_choice, make_distractors
from diffclf_lite.data.scenes import (Caption, Obj, change_colour, change_shape, describes, make_scenes, parse_caption,
                                      swap_colours)


# ---- distractors ----
def _attrs(c: Caption) -> list[str]:
    return [c.first.colour, c.first.shape, c.relation, c.second.colour, c.second.shape]


def test_distractors_swap_and_change_what_they_say() -> None:
    s = make_scenes(40, "test", seed=2, size=16)
    d = make_distractors(s.captions, seed=0)
    assert set(d) == set(TASKS)
    for k, (cap, scene) in enumerate(zip(s.captions, s.scenes)):
        sw = d["colour swap"][k]
        assert sw.first.colour == cap.second.colour and sw.second.colour == cap.first.colour
        assert sorted(str(sw).split()) == sorted(str(cap).split())  # same words, bound differently
        assert d["relation swap"][k].relation != cap.relation
        for task in TASKS:
            assert not describes(d[task][k], scene)
        for task, slots in (("colour control", (0, 3)), ("shape control", (1, 4))):
            diff = [i for i, (a, b) in enumerate(zip(_attrs(cap), _attrs(d[task][k]))) if a != b]
            assert len(diff) == 1 and diff[0] in slots
            assert _attrs(d[task][k])[diff[0]] not in (_attrs(cap)[slots[0]], _attrs(cap)[slots[1]])
    assert make_distractors(s.captions, seed=0) == d


def test_benchmark_scores_both_models_on_the_same_pairs(models) -> None:
    diff, clip = models
    test = make_scenes(6, "test", seed=0, size=16, shapes=SHAPES3)
    table = binding_benchmark({"diffusion": diff.model, "contrastive": clip.model}, test.images, test.captions,
                              dc.Exhaustive(4), shapes=SHAPES3)
    assert len(table) == 2 * len(TASKS) and set(table["n"]) == {6}
    assert ((table["accuracy"] - table["correct"] / 6).abs() < 1e-12).all()
    diff_rows = table[table["model"] == "diffusion"]
    assert (diff_rows["nfe_per_image"] == 2 * 4).all()  # two candidates x four timesteps, nothing else
    out = diffusion_choice(diff.model, test.images, test.captions, swap_colours_all(test.captions), dc.Exhaustive(4))
    assert torch.equal(out["correct"], out["margin"] > 0)


def swap_colours_all(captions):
    return [swap_colours(c) for c in captions]


def test_controls_never_pick_a_word_outside_the_given_vocabulary() -> None:
    rng = random.Random(0)
    c = parse_caption("a red circle left of a blue square")
    assert {change_shape(c, rng, SHAPES3).first.shape, change_shape(c, rng, SHAPES3).second.shape} <= set(SHAPES3)
    assert all(change_colour(c, rng, ("red", "blue", "green")) in (
        Caption(Obj("green", "circle"), "left", c.second), Caption(c.first, "left", Obj("green", "square")))
        for _ in range(10))


def test_bad_benchmark_inputs_get_clear_errors() -> None:
    with pytest.raises(ValueError, match="unknown task"):
        binding_benchmark({}, torch.zeros(1, 3, 16, 16), [parse_caption("a red circle left of a blue square")],
                          dc.Exhaustive(2), tasks=["colour swapped"])
    cap = parse_caption("a red circle left of a blue square")
    with pytest.raises(ValueError, match="nothing to choose"):
        diffusion_choice(None, torch.zeros(1, 3, 16, 16), [cap], [cap], dc.Exhaustive(2))
