"""The miniature models are the real library classes and load through the real models' code paths."""
from __future__ import annotations

import torch

from diffclf_lite.data import miniature as W
from diffclf_lite.models.clip import CLIPClassifier
from diffclf_lite.models.miniature import bpe_merges, build_tokenizer
from diffclf_lite.models.sd import StableDiffusion


def test_bpe_learns_merges_that_make_every_word_one_token(tmp_path) -> None:
    assert bpe_merges(["aa", "ab"])[0] == ("a", "a</w>")  # both pairs occur once: the first in sorted order wins
    tok = build_tokenizer(W.vocabulary(), tmp_path / "tok")
    assert [len(tok.tokenize(w)) for w in W.vocabulary()] == [1] * len(W.vocabulary())
    ids = tok("a red seven on the left").input_ids
    assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id and len(ids) == 8
    assert len(tok.tokenize("zebra")) > 1  # an unknown word falls back to pieces, as in CLIP


def test_miniature_folder_loads_like_the_hub_models(miniature_folder) -> None:
    sd = StableDiffusion.from_pretrained(miniature_folder / "sd", ["a seven", "a red digit"])
    assert sd.resolution == 32 and sd.latent_shape == (4, 8, 8) and sd.prediction_type == "epsilon"
    x, _ = W.task_set("digit", 3)
    z = sd.encode(x.float() / 127.5 - 1)
    assert z.shape == (3, 4, 8, 8) and torch.isfinite(z).all()
    eps = sd.eps(torch.randn(2, 4, 8, 8), torch.tensor([10, 900]), torch.tensor([0, 1]))
    assert eps.shape == (2, 4, 8, 8)
    clip = CLIPClassifier.from_pretrained(miniature_folder / "clip")
    emb = clip.embed_images([im for im in x.permute(0, 2, 3, 1).numpy()])
    assert emb.shape[0] == 3 and torch.allclose(emb.norm(dim=1), torch.ones(3), atol=1e-5)


def test_diffusers_pipeline_generates_from_the_folder(miniature_folder) -> None:
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(miniature_folder / "sd")
    pipe.set_progress_bar_config(disable=True)
    out = pipe(["a red seven"], num_inference_steps=3, guidance_scale=2.0, height=32, width=32, output_type="np",
               generator=torch.Generator().manual_seed(0))
    assert out.images.shape == (1, 32, 32, 3)
