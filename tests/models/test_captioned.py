"""The caption-conditional diffusion model and the contrastive model: contract, learning, save and load, bad words."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import diffclf_lite as dc
from diffclf_lite.models.captioned import CaptionDiffusion, ContrastiveModel, build_tokenizer, tokenize


def test_a_word_outside_the_vocabulary_is_refused() -> None:
    with pytest.raises(ValueError, match="not in the scene vocabulary"):
        tokenize(build_tokenizer(), ["a red circle left of a mauve square"])


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
