"""The caption-conditional diffusion model and the contrastive model: contract, learning, save and load, bad input."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import diffclf_lite as dc
from diffclf_lite.book.binding import binding_benchmark, diffusion_choice
from diffclf_lite.data.scenes import (
    Obj,
    Scene,
    make_scenes,
    parse_caption,
)
from diffclf_lite.models.captioned import CaptionDiffusion, ContrastiveModel, build_tokenizer, tokenize


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
