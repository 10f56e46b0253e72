"""The offline binding benchmark: scenes and captions, distractors, both models (contract, training, save/load),
and the per-image candidate restriction of the scoring engine."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch

import diffclf_lite as dc
from conftest import KnownErrorModel
from diffclf_lite.binding import TASKS, Candidates, binding_benchmark, diffusion_choice, make_distractors
from diffclf_lite.binding_models import CaptionDiffusion, ContrastiveModel, build_tokenizer, tokenize
from diffclf_lite.binding_train import BindingConfig, train_caption_diffusion, train_contrastive
from diffclf_lite.scenes import (COLOURS, Caption, Obj, Scene, caption_of, change_colour, change_shape, describes,
                                 make_scenes, parse_caption, scene_groups, swap_colours, swap_relation)

SHAPES3 = ("circle", "square", "triangle")


@pytest.fixture(scope="module")
def train_set():
    return make_scenes(64, "train", seed=0, size=16, shapes=SHAPES3)


@pytest.fixture(scope="module")
def models(train_set):
    cfg = BindingConfig(steps=25, batch_size=16, preset="tiny", lr=3e-3, warmup_steps=2, text_width=32)
    return (train_caption_diffusion(train_set.images, train_set.texts, cfg, progress=False),
            train_contrastive(train_set.images, train_set.texts, cfg, progress=False))


# ---- scenes ----
def test_scenes_are_deterministic_under_a_seed() -> None:
    a, b, c = (make_scenes(20, "train", seed=s, size=16) for s in (3, 3, 4))
    assert torch.equal(a.images, b.images) and a.texts == b.texts
    assert not torch.equal(a.images, c.images)
    assert a.images.shape == (20, 3, 16, 16) and a.images.dtype == torch.uint8


def test_pixels_at_the_object_centres_have_the_captioned_colours() -> None:
    s = make_scenes(50, "test", seed=1, size=32)
    for img, scene, cap, xy in zip(s.images, s.scenes, s.captions, s.centres):
        assert describes(cap, scene) and parse_caption(str(cap)) == cap
        left, right = (cap.first, cap.second) if cap.relation == "left" else (cap.second, cap.first)
        for obj, (x, y) in zip((left, right), xy):
            assert tuple(img[:, int(y), int(x)].tolist()) == COLOURS[obj.colour]
        assert xy[0, 0] < xy[1, 0]  # the left object is on the left
        assert int((img.sum(0) == 0).sum()) > 0.4 * img.shape[1] * img.shape[2]  # black background around them


def test_test_split_holds_out_whole_groups() -> None:
    def groups(s):
        return {(frozenset((sc.left.colour, sc.right.colour)), frozenset((sc.left.shape, sc.right.shape)))
                for sc in s.scenes}
    train, test = make_scenes(400, "train", seed=0), make_scenes(200, "test", seed=0)
    assert groups(train).isdisjoint(groups(test))
    assert len(groups(train) | groups(test)) == len(scene_groups(tuple(COLOURS), ("circle", "square", "triangle",
                                                                                  "diamond")))


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


def test_swaps_are_involutions() -> None:
    c = parse_caption("a red circle left of a blue square")
    assert str(swap_colours(c)) == "a blue circle left of a red square"
    assert swap_colours(swap_colours(c)) == c and swap_relation(swap_relation(c)) == c
    assert describes(swap_relation(c), Scene(Obj("blue", "square"), Obj("red", "circle")))
    assert caption_of(Scene(c.first, c.second), "right") == Caption(c.second, "right", c.first)


def test_bad_inputs_get_clear_errors() -> None:
    with pytest.raises(ValueError, match="unknown colour"):
        Obj("mauve", "circle")
    with pytest.raises(ValueError, match="unknown shape"):
        Obj("red", "hexagon")
    with pytest.raises(ValueError, match="unknown colour"):
        make_scenes(4, "train", colours=("red", "blue", "mauve"))
    with pytest.raises(ValueError, match="at least 3 distinct colours"):
        make_scenes(4, "train", colours=("red", "blue"))
    with pytest.raises(ValueError, match="at least 3 distinct colours and 3 distinct shapes"):
        make_scenes(4, "train", shapes=("circle", "square"))
    with pytest.raises(ValueError, match="differ in colour and in shape"):
        Scene(Obj("red", "circle"), Obj("red", "square"))
    with pytest.raises(ValueError, match="at least one scene"):
        make_scenes(0, "train")
    with pytest.raises(ValueError, match="split"):
        make_scenes(4, "validation")
    with pytest.raises(ValueError, match="not a caption"):
        parse_caption("a red circle")
    with pytest.raises(ValueError, match="not in the scene vocabulary"):
        tokenize(build_tokenizer(), ["a red circle left of a mauve square"])
    with pytest.raises(ValueError, match="unknown task"):
        binding_benchmark({}, torch.zeros(1, 3, 16, 16), [parse_caption("a red circle left of a blue square")],
                          dc.Exhaustive(2), tasks=["colour swapped"])
    cap = parse_caption("a red circle left of a blue square")
    with pytest.raises(ValueError, match="nothing to choose"):
        diffusion_choice(None, torch.zeros(1, 3, 16, 16), [cap], [cap], dc.Exhaustive(2))


# ---- the engine restricted to per-image candidates ----
@pytest.mark.parametrize("strategy", [dc.Exhaustive(20), dc.Racing(20), dc.Staged([5, 20], [2, 1])])
def test_candidates_restrict_every_strategy(strategy) -> None:
    T, C = 1000, 6
    offsets = torch.linspace(0.1, 1.0, C).repeat(T, 1)  # class 0 is best overall, but never a candidate below
    model = KnownErrorModel(torch.zeros(4), offsets)
    cand = torch.zeros(3, C, dtype=torch.bool)
    cand[0, [2, 5]] = cand[1, [4, 3]] = cand[2, [1, 2]] = True
    res = dc.classify(model, torch.zeros(3, 4), Candidates(strategy, cand))
    assert res.prediction.tolist() == [2, 3, 1]
    assert bool(res.errors[~cand[:, None, :].expand_as(res.errors)].isnan().all())  # nothing else evaluated
    assert int(res.nfe.max()) <= 2 * strategy.n_timesteps
    with pytest.raises(ValueError, match="candidates must be shaped"):
        dc.classify(model, torch.zeros(2, 4), Candidates(strategy, cand))


# ---- the two models ----
def test_caption_diffusion_follows_the_contract_and_learns(models, train_set) -> None:
    diff, clip = models
    diff.model.set_captions([])
    with pytest.raises(ValueError, match="no captions set"):
        diff.model.eps(torch.zeros(1, 3, 16, 16), torch.zeros(1, dtype=torch.long), torch.zeros(1, dtype=torch.long))
    diff.model.set_captions(train_set.texts[:3])
    dc.check_model(diff.model)
    assert diff.model.num_conditions == 3
    first, last = np.mean(diff.losses[:5]), np.mean(diff.losses[-5:])
    assert last < 0.8 * first, (first, last)
    assert np.mean(clip.losses[-5:]) < np.mean(clip.losses[:5])
    assert diff.parameters > 0 and clip.parameters > 0


def test_training_is_deterministic(train_set) -> None:
    cfg = BindingConfig(steps=2, batch_size=4, preset="tiny", text_width=32, seed=5)
    a, b = (train_caption_diffusion(train_set.images, train_set.texts, cfg, progress=False) for _ in range(2))
    assert a.losses == b.losses
    with pytest.raises(ValueError, match="one caption each"):
        train_contrastive(train_set.images, train_set.texts[:-1], cfg, progress=False)


def test_save_and_load_give_identical_outputs(models, train_set, tmp_path) -> None:
    diff, clip = models
    texts = train_set.texts[:4]
    diff.model.set_captions(texts)
    x = diff.model.encode(train_set.images[:4])
    t, c = torch.tensor([10, 300, 600, 900]), torch.tensor([0, 1, 2, 3])
    with torch.inference_mode():
        before = diff.model.eps(x, t, c)
    loaded = CaptionDiffusion.from_pretrained(diff.model.save_pretrained(tmp_path / "diffusion"), captions=texts)
    with torch.inference_mode():
        assert torch.equal(loaded.eps(x, t, c), before)
    assert torch.equal(loaded.alphas_cumprod, diff.model.alphas_cumprod)
    sims = clip.model.similarity(train_set.images[:4], texts)
    again = ContrastiveModel.from_pretrained(clip.model.save_pretrained(tmp_path / "contrastive"))
    assert torch.equal(again.similarity(train_set.images[:4], texts), sims)
    with pytest.raises(FileNotFoundError, match="save_pretrained"):
        CaptionDiffusion.from_pretrained(tmp_path / "nothing")


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
