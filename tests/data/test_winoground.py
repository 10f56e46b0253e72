"""Winoground: text, image and group scores on known matrices, the offline set in the hub layout, the hub's
licence error, and the score matrices of CLIP and of a diffusion classifier."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

import diffclf_lite as dc
from diffclf_lite.data.winoground import (WinogroundExample, clip_scores, diffusion_scores, group_correct,
                                          image_correct, load_winoground, synthetic_winoground, text_correct,
                                          winoground_scores)


# ---- Winoground scores (Thrush et al. 2022 §3.2): S[caption, image] ----
@pytest.mark.parametrize("matrix,text,image", [
    ([[1.0, 0.0], [0.0, 1.0]], True, True),  # each caption with its image: all correct
    ([[0.0, 1.0], [1.0, 0.0]], False, False),  # swapped
    ([[1.0, 0.5], [0.0, 0.2]], False, True),  # image 1 prefers caption 0, but each caption prefers its image
    ([[0.5, 0.9], [0.1, 1.0]], True, False),  # each image prefers its caption, but caption 0 prefers image 1
    ([[1.0, 0.0], [1.0, 1.0]], False, False),  # a tie counts as a failure
])
def test_scores_on_hand_made_matrices(matrix, text, image):
    assert text_correct(matrix).tolist() == [text] and image_correct(matrix).tolist() == [image]
    assert group_correct(matrix).tolist() == [text and image]


def test_scores_match_the_papers_definitions_and_chance_levels():
    s = torch.randn(30000, 2, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ref = [(d["c0i0"] > d["c1i0"] and d["c1i1"] > d["c0i1"], d["c0i0"] > d["c0i1"] and d["c1i1"] > d["c1i0"])
           for d in ({f"c{c}i{i}": float(m[c, i]) for c, i in itertools.product((0, 1), (0, 1))} for m in s[:500])]
    assert text_correct(s[:500]).tolist() == [r[0] for r in ref] and image_correct(s[:500]).tolist() == [r[1] for r in ref]
    table = winoground_scores(s)  # exchangeable scores: chance is 1/4, 1/4 and 1/6 (Thrush et al.)
    se = 100 * np.sqrt(0.25 * 0.75 / len(s))
    assert abs(table.loc["all", "text"] - 25) < 4 * se and abs(table.loc["all", "image"] - 25) < 4 * se
    assert abs(table.loc["all", "group"] - 100 / 6) < 4 * se


def test_score_table_by_tag_and_bad_input():
    good, bad = [[1.0, 0.0], [0.0, 1.0]], [[0.0, 1.0], [1.0, 0.0]]
    table = winoground_scores([good, good, bad, good], ["Object", "Relation", "Relation", "Both"])
    assert table.index.tolist() == ["all", "Object", "Relation", "Both"] and table["examples"].tolist() == [4, 1, 2, 1]
    assert table["text"].tolist() == [75.0, 100.0, 50.0, 100.0] and table["group"].tolist() == [75.0, 100.0, 50.0, 100.0]
    se = [100 * (p * (1 - p) / n) ** 0.5 for p, n in ((0.75, 4), (1.0, 1), (0.5, 2), (1.0, 1))]  # sqrt(p (1 - p) / n)
    assert table["text SE"].tolist() == pytest.approx(se)
    with pytest.raises(ValueError, match=r"\(N, 2, 2\)"):
        text_correct(torch.zeros(3, 2, 3))
    with pytest.raises(ValueError, match="NaN"):
        image_correct([[float("nan"), 0], [0, 1]])
    with pytest.raises(ValueError, match="one tag per example"):
        winoground_scores([good], ["Object", "Both"])


# ---- Winoground data and the two models' score matrices ----
def test_synthetic_set_is_in_the_hub_layout_and_loads_back(tmp_path):
    folder = synthetic_winoground(tmp_path / "w", n_examples=4, size=32)
    assert (folder / "data" / "examples.jsonl").is_file() and (folder / "data" / "images.zip").is_file()
    examples = load_winoground(folder)
    assert [e.id for e in examples] == [0, 1, 2, 3] and [e.tag for e in examples] == ["Object", "Relation"] * 2
    for e in examples:
        assert sorted(e.captions[0].split()) == sorted(e.captions[1].split()) and e.captions[0] != e.captions[1]
        a, b = e.images
        assert a.size == b.size == (32, 32) and np.asarray(a).tolist() != np.asarray(b).tolist()
    with pytest.raises(ValueError, match="examples.jsonl and images.zip"):
        load_winoground(tmp_path)
    jsonl = folder / "data" / "examples.jsonl"
    lines = jsonl.read_text().splitlines()
    jsonl.write_text("\n".join(lines + [lines[0].replace('"ex_0_img_1"', '"ex_99_img_1"')]))
    with pytest.raises(ValueError, match="missing, e.g. \\['ex_99_img_1'\\]"):
        load_winoground(folder)
    jsonl.write_text('{"id": 0, "image_0": "ex_0_img_0", "caption_0": "a"}\n')
    with pytest.raises(ValueError, match="lacks \\['image_1', 'caption_1'\\]"):
        load_winoground(folder)


def test_a_loose_images_folder_with_a_missing_file_fails_at_load_time(tmp_path):
    import zipfile

    folder = synthetic_winoground(tmp_path / "w", n_examples=2, size=32) / "data"
    with zipfile.ZipFile(folder / "images.zip") as zf:  # the same set, unpacked into images/<name>.png
        zf.extractall(folder / "unpacked")
    (folder / "images.zip").unlink()
    pngs = sorted((folder / "unpacked").rglob("*.png"))
    (folder / "images").mkdir()
    for png in pngs:
        png.rename(folder / "images" / png.name)
    assert len(load_winoground(folder.parent)) == 2
    (folder / "images" / pngs[-1].name).unlink()
    with pytest.raises(ValueError, match=f"missing, e.g. \\['{pngs[-1].stem}'\\]"):
        load_winoground(folder.parent)


def test_diffusion_scores_of_no_examples_is_a_clear_error():
    with pytest.raises(ValueError, match="no Winoground examples"):
        diffusion_scores(object(), [])


def test_hub_failure_explains_the_licence_and_login(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ValueError, match="hf download facebook/winoground --repo-type dataset.*accept its licence.*hf auth"):
        load_winoground("facebook/winoground", cache_dir=tmp_path)


class MatchingModel:
    """A text-conditional eps-model that knows each caption's image exactly: eps_hat is the true noise when the
    caption matches the image and is off otherwise, so the matching caption's error is 0."""

    def __init__(self, refs: dict[str, torch.Tensor]) -> None:
        self.refs, self.device = refs, torch.device("cpu")
        self.alphas_cumprod = dc.alphas_cumprod_from_betas(dc.beta_schedule("linear", 1000))

    def set_prompts(self, prompts):
        self.num_conditions, self._ref = len(prompts), torch.stack([self.refs[p] for p in prompts])

    def encode(self, images):
        return torch.stack([torch.as_tensor(im, dtype=torch.float64) for im in images])

    def eps(self, x_t, t, cond_index):
        abar = self.alphas_cumprod[t][:, None]
        return (x_t - abar.sqrt() * self._ref[cond_index]) / (1 - abar).sqrt()


def test_diffusion_scores_are_minus_errors_with_the_known_answer():
    g = torch.Generator().manual_seed(0)
    refs = {f"caption {k}": torch.randn(6, generator=g, dtype=torch.float64) for k in range(6)}
    examples = [WinogroundExample(k, (f"caption {2 * k}", f"caption {2 * k + 1}"), "Object",
                                  lambda k=k: (refs[f"caption {2 * k}"], refs[f"caption {2 * k + 1}"])) for k in range(3)]
    s = diffusion_scores(MatchingModel(refs), examples, n_timesteps=5, examples_per_call=2, batch_size=7)
    assert s.shape == (3, 2, 2)
    torch.testing.assert_close(s[:, [0, 1], [0, 1]], torch.zeros(3, 2, dtype=torch.float64))  # matching: error 0
    assert (s[:, [0, 1], [1, 0]] < 0).all() and group_correct(s).all()
    budget = diffusion_scores(MatchingModel(refs), examples, n_timesteps=5, examples_per_call=2, max_seconds=0)
    torch.testing.assert_close(budget, s[:2])  # a spent time budget stops after the first chunk of examples
    with pytest.raises(ValueError, match="set_prompts"):
        diffusion_scores(dc.GaussianMixture.random(2, 6, seed=0), examples)


def test_diffusion_scores_share_one_plan_across_images_and_match_classify(tiny_sd, tmp_path):
    examples = load_winoground(synthetic_winoground(tmp_path / "w", n_examples=3, size=64))
    s = diffusion_scores(tiny_sd, examples, n_timesteps=4, examples_per_call=2, seed=3)
    for k, e in enumerate(examples):
        tiny_sd.set_prompts(list(e.captions))
        r = dc.classify(tiny_sd, list(e.images), dc.Exhaustive(4), seed=3)  # one plan for both images
        torch.testing.assert_close(s[k], -r.mean_errors.T, atol=1e-6, rtol=1e-6)


def test_clip_scores_are_cosines(clip, tmp_path):
    examples = load_winoground(synthetic_winoground(tmp_path / "w", n_examples=3, size=40))
    s = clip_scores(clip, examples)
    e = examples[1]
    expected = clip.embed_text(list(e.captions)) @ clip.embed_images(list(e.images)).T  # [caption, image]
    torch.testing.assert_close(s[1], expected.double(), atol=1e-6, rtol=0)
    assert s.abs().max() <= 1 + 1e-6
