"""The binding benchmark of chapter 4: distractors, and both models scored on the same image and caption pairs."""
from __future__ import annotations

import random

import pytest
import torch

import diffclf_lite as dc
from diffclf_lite.book.binding import TASKS, binding_benchmark, contrastive_choice, diffusion_choice, make_distractors
from diffclf_lite.data.miniature import make_pairs
from diffclf_lite.data.scenes import Caption, Obj, caption_of, change_colour, change_digit, parse_caption, swap_colours


# ---- distractors ----
def _attrs(c: Caption) -> list[str]:
    return [c.first.colour, c.first.digit, c.relation, c.second.colour, c.second.digit]


def test_distractors_swap_and_change_what_they_say() -> None:
    from diffclf_lite.data.scenes import describes

    pairs = make_pairs(40, "test", seed=2)
    rng = random.Random(0)
    captions = [caption_of(it, rng.choice(("left", "right"))) for it in pairs.items]
    d = make_distractors(captions, seed=0)
    assert set(d) == set(TASKS)
    for k, (cap, item) in enumerate(zip(captions, pairs.items)):
        assert describes(cap, item)
        sw = d["colour swap"][k]
        assert sw.first.colour == cap.second.colour and sw.second.colour == cap.first.colour
        assert sorted(str(sw).split()) == sorted(str(cap).split())  # same words, bound differently
        assert d["relation swap"][k].relation != cap.relation
        for task in TASKS:
            assert not describes(d[task][k], item)
        for task, slots in (("colour control", (0, 3)), ("digit control", (1, 4))):
            diff = [i for i, (a, b) in enumerate(zip(_attrs(cap), _attrs(d[task][k]))) if a != b]
            assert len(diff) == 1 and diff[0] in slots
            assert _attrs(d[task][k])[diff[0]] not in (_attrs(cap)[slots[0]], _attrs(cap)[slots[1]])
    assert make_distractors(captions, seed=0) == d


def test_benchmark_scores_both_models_on_the_same_pairs(miniature_folder) -> None:
    from diffclf_lite.models.clip import CLIPClassifier
    from diffclf_lite.models.sd import StableDiffusion

    sd = StableDiffusion.from_pretrained(miniature_folder / "sd")
    clip = CLIPClassifier.from_pretrained(miniature_folder / "clip")
    test = make_pairs(6, "test", seed=0)
    captions = [caption_of(it) for it in test.items]
    table = binding_benchmark({"diffusion": sd, "contrastive": clip}, test.images, captions, dc.Exhaustive(4))
    assert len(table) == 2 * len(TASKS) and set(table["n"]) == {6}
    assert ((table["accuracy"] - table["correct"] / 6).abs() < 1e-12).all()
    assert (table[table["model"] == "diffusion"]["nfe_per_image"] == 2 * 4).all()  # 2 candidates x 4 timesteps
    again, choices = binding_benchmark({"contrastive": clip}, test.images, captions, dc.Exhaustive(4),
                                       return_choices=True)  # per-image outcomes, for paired tests
    assert set(choices) == {(t, "contrastive") for t in TASKS}
    for _, row in again.iterrows():
        assert int(choices[row["task"], "contrastive"]["correct"].sum()) == row["correct"]
    swapped = [swap_colours(c) for c in captions]
    out = diffusion_choice(sd, test.images, captions, swapped, dc.Exhaustive(4))
    assert torch.equal(out["correct"], out["margin"] > 0)
    # the diffusion margin is the error difference that dc.classify finds with both captions as the conditions
    sd.set_prompts([str(captions[0]), str(swapped[0])])
    r = dc.classify(sd, test.images[:1].float() / 127.5 - 1, dc.Exhaustive(4))
    torch.testing.assert_close(out["margin"][0], r.mean_errors[0, 1] - r.mean_errors[0, 0], atol=1e-5, rtol=0)  # fp32
    clip_out = contrastive_choice(clip, test.images, captions, swapped)
    cos = clip.embed_images([test.images[0].permute(1, 2, 0).numpy()]) @ clip.embed_text([str(captions[0]),
                                                                                          str(swapped[0])]).T
    torch.testing.assert_close(clip_out["margin"][0], cos[0, 0] - cos[0, 1])


def test_controls_never_pick_a_word_outside_the_given_vocabulary() -> None:
    rng = random.Random(0)
    c = parse_caption("a red three left of a blue seven")
    three = ("three", "seven", "one")
    assert all({change_digit(c, rng, three).first.digit, change_digit(c, rng, three).second.digit} <= set(three)
               for _ in range(10))
    assert all(change_colour(c, rng, ("red", "blue", "green")) in (
        Caption(Obj("green", "three"), "left", c.second), Caption(c.first, "left", Obj("green", "seven")))
        for _ in range(10))


def test_bad_benchmark_inputs_get_clear_errors() -> None:
    cap = parse_caption("a red three left of a blue seven")
    with pytest.raises(ValueError, match="unknown task"):
        binding_benchmark({}, torch.zeros(1, 3, 32, 32, dtype=torch.uint8), [cap], dc.Exhaustive(2),
                          tasks=["colour swapped"])
    with pytest.raises(ValueError, match="nothing to choose"):
        diffusion_choice(None, torch.zeros(1, 3, 32, 32, dtype=torch.uint8), [cap], [cap], dc.Exhaustive(2))
    with pytest.raises(ValueError, match="uint8"):
        diffusion_choice(None, torch.zeros(1, 3, 32, 32), [cap], [swap_colours(cap)], dc.Exhaustive(2))
    with pytest.raises(ValueError, match="unknown digit"):
        parse_caption("a red circle left of a blue seven")
    with pytest.raises(ValueError, match="of the form"):
        parse_caption("a red three next to a blue seven")
