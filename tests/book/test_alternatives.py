"""The alternatives to Diffusion Classifier: generation per class (class-conditional UNet, Stable Diffusion pipeline),
mid-block features under the null condition, and the linear probe. Tiny models, saved and loaded back."""
from __future__ import annotations

import types

import pytest
import torch

from diffclf_lite.book.alternatives import (capture_output, fit_linear_probe, generate_per_class, generate_sd,
                                            load_sd_pipeline, mid_block_features, noised, per_class_labels,
                                            sd_from_pipeline)
from diffclf_lite.data.prompts import class_prompts
from diffclf_lite.models.classcond import ClassConditionalUNet
from diffclf_lite.models.sd import StableDiffusion, build_tiny_sd
from diffclf_lite.training import TrainConfig, make_scheduler, save_checkpoint, train

TINY = dict(steps=3, batch_size=4, preset="tiny", warmup_steps=1)


def _tiny_model(tmp_path_factory: pytest.TempPathFactory, label_dropout: float) -> ClassConditionalUNet:
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(24, 1, 16, 16, generator=g) * 2 - 1, torch.arange(24) % 3
    result = train(x, y, TrainConfig(**TINY, label_dropout=label_dropout), progress=False)
    return ClassConditionalUNet.from_pretrained(save_checkpoint(tmp_path_factory.mktemp("alt"), result))


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> ClassConditionalUNet:
    return _tiny_model(tmp_path_factory, label_dropout=0.2)


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory: pytest.TempPathFactory):
    return build_tiny_sd(tmp_path_factory.mktemp("alt-sd") / "tiny", latent_size=8)


def test_per_class_labels_and_bad_counts() -> None:
    assert per_class_labels(3, 2).tolist() == [0, 0, 1, 1, 2, 2]
    with pytest.raises(ValueError, match="n_per_class"):
        per_class_labels(3, 0)


def test_generation_is_deterministic_under_a_seed(model: ClassConditionalUNet) -> None:
    kw = dict(num_inference_steps=3, guidance_scale=2.0, batch_size=4)
    x, y = generate_per_class(model, 2, seed=5, **kw)
    x_again, _ = generate_per_class(model, 2, seed=5, **kw)
    x_other, _ = generate_per_class(model, 2, seed=6, **kw)
    assert x.shape == (6, 1, 16, 16) and y.tolist() == [0, 0, 1, 1, 2, 2]
    assert torch.equal(x, x_again) and not torch.allclose(x, x_other)
    assert x.abs().max() <= 1
    with pytest.raises(ValueError, match="batch_size"):
        generate_per_class(model, 2, batch_size=0)


def test_generated_class_follows_the_label(model: ClassConditionalUNet) -> None:
    """One chunk with every label: the images are exactly model.sample's for those labels (the label reaches the UNet)."""
    x, y = generate_per_class(model, 2, num_inference_steps=3, batch_size=6, seed=1)
    from diffclf_lite.book.alternatives import _seeds

    assert torch.equal(x, model.sample(y.tolist(), 3, seed=_seeds(1, 1)[0]))
    swapped = model.sample(y.flip(0).tolist(), 3, seed=_seeds(1, 1)[0])
    assert not torch.allclose(x, swapped)  # same noise, other labels: other images


def test_noised_has_the_ddpm_mean_and_variance() -> None:
    abar = make_scheduler().alphas_cumprod
    x0 = torch.full((1, 1, 200, 200), 0.7)
    for t in (10, 500, 990):
        x_t = noised(x0, t, abar, seed=3)
        a = abar[t].item()
        resid = (x_t - a**0.5 * x0) / (1 - a) ** 0.5  # should be standard normal noise
        assert abs(resid.mean().item()) < 0.02 and abs(resid.std().item() - 1) < 0.02
    assert torch.equal(noised(x0, 500, abar, seed=3), noised(x0, 500, abar, seed=3))
    with pytest.raises(ValueError, match="timestep"):
        noised(x0, 1000, abar)


def test_mid_block_features_use_the_null_class(model: ClassConditionalUNet) -> None:
    x = torch.rand(5, 1, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    f = mid_block_features(model, x, timestep=50, batch_size=2, seed=0)
    assert f.shape == (5, model.unet.config.block_out_channels[-1])
    assert torch.allclose(f, mid_block_features(model, x, timestep=50, batch_size=5, seed=0), atol=1e-5)  # batch-free
    assert not torch.allclose(f, mid_block_features(model, x, timestep=50, seed=1), atol=1e-4)  # the noise matters
    # the same computation by hand, for image 0: its noise, the null class, the spatial mean of the mid block
    x_t = noised(model.encode(x[:1]), 50, model.alphas_cumprod, seed=0)
    with capture_output(model.unet.mid_block) as seen:
        model.unet(x_t, torch.tensor([50]), class_labels=torch.tensor([model.null_class]))
        model.unet(x_t, torch.tensor([50]), class_labels=torch.tensor([0]))
    assert torch.allclose(f[0], seen[0].mean((2, 3))[0], atol=1e-5)
    assert not torch.allclose(f[0], seen[1].mean((2, 3))[0], atol=1e-4)  # a real class gives other features
    assert not model.unet.mid_block._forward_hooks  # the hook is gone
    flat = mid_block_features(model, x[:2], timestep=50, pool="flatten")
    assert flat.shape == (2, seen[0][0].numel()) and torch.allclose(flat.view(2, *seen[0].shape[1:]).mean((2, 3)), f[:2],
                                                                     atol=1e-5)


def test_mid_block_features_bad_input(model: ClassConditionalUNet, tmp_path_factory: pytest.TempPathFactory) -> None:
    x = torch.zeros(2, 1, 16, 16)
    with pytest.raises(ValueError, match="pool"):
        mid_block_features(model, x, pool="max")
    with pytest.raises(ValueError, match="timestep"):
        mid_block_features(model, x, timestep=-1)
    with pytest.raises(ValueError, match="non-empty"):
        mid_block_features(model, x[:0])
    with pytest.raises(ValueError, match="ClassConditionalUNet"):
        mid_block_features(object(), x)
    with pytest.raises(ValueError, match="label_dropout"):
        mid_block_features(_tiny_model(tmp_path_factory, label_dropout=0.0), x)
    assert not model.unet.mid_block._forward_hooks


def test_linear_probe_separates_what_is_separable_and_not_noise() -> None:
    g = torch.Generator().manual_seed(0)
    y = torch.arange(400) % 4
    centres = torch.randn(4, 16, generator=g) * 3
    f = centres[y] + torch.randn(400, 16, generator=g)
    probe = fit_linear_probe(f[:200], y[:200])
    assert (torch.as_tensor(probe.predict(f[200:].double().numpy())) == y[200:]).double().mean() > 0.97
    noise = torch.randn(400, 16, generator=g)  # features that carry no information about y
    acc = (torch.as_tensor(fit_linear_probe(noise[:200], y[:200]).predict(noise[200:].double().numpy())) == y[200:])
    assert acc.double().mean() < 0.45  # chance is 0.25
    with pytest.raises(ValueError, match="two classes"):
        fit_linear_probe(f[:10], torch.zeros(10, dtype=torch.long))


def test_stable_diffusion_pipeline_generation_is_seeded_and_batch_free(tiny_sd) -> None:
    pipe = load_sd_pipeline(tiny_sd, device="cpu", dtype="fp32")
    prompts = class_prompts(["cat", "dog"], ["a photo of a {}.", "a drawing of a {}."])
    x, y = generate_sd(pipe, prompts, 3, num_inference_steps=2, batch_size=4, seed=0)
    assert x.shape == (6, 3, 64, 64) and y.tolist() == [0, 0, 0, 1, 1, 1] and x.abs().max() <= 1
    assert torch.equal(x, generate_sd(pipe, prompts, 3, num_inference_steps=2, batch_size=4, seed=0)[0])
    assert torch.allclose(x, generate_sd(pipe, prompts, 3, num_inference_steps=2, batch_size=1, seed=0)[0], atol=1e-4)
    assert not torch.allclose(x, generate_sd(pipe, prompts, 3, num_inference_steps=2, batch_size=4, seed=1)[0], atol=1e-3)


def test_generate_sd_cycles_through_each_class_prompts() -> None:
    calls = []

    def fake_pipe(prompt, generator, height, **kw):  # records the prompts, returns grey images in [0, 1]
        calls.extend(prompt)
        return types.SimpleNamespace(images=torch.full((len(prompt), 3, height, height), 0.5))

    fake_pipe.unet = types.SimpleNamespace(config=types.SimpleNamespace(sample_size=2))
    fake_pipe.vae_scale_factor = 4
    prompts = class_prompts(["cat", "dog"], ["a {}.", "two {}s."])
    x, y = generate_sd(fake_pipe, prompts, 3, batch_size=2)
    assert calls == ["a cat.", "two cats.", "a cat.", "a dog.", "two dogs.", "a dog."]
    assert x.shape == (6, 3, 8, 8) and torch.equal(x, torch.zeros_like(x)) and y.tolist() == [0, 0, 0, 1, 1, 1]


def test_stable_diffusion_features_use_the_empty_prompt(tiny_sd) -> None:
    sd = StableDiffusion.from_pretrained(tiny_sd, ["a photo of a cat."], device="cpu", dtype="fp32")
    x = torch.rand(3, 3, 40, 40, generator=torch.Generator().manual_seed(0)) * 2 - 1  # resized to 64 px inside
    f = mid_block_features(sd, x, timestep=100, batch_size=2)
    assert f.shape == (3, sd.unet.config.block_out_channels[-1])
    assert torch.allclose(f, mid_block_features(sd, x, timestep=100, batch_size=3), atol=1e-5)
    assert sd.prompts == ["a photo of a cat."]  # the candidate prompts are left alone


def test_adapter_on_the_pipeline_shares_its_weights(tiny_sd) -> None:
    pipe = load_sd_pipeline(tiny_sd, device="cpu", dtype="fp32")
    shared = sd_from_pipeline(pipe, ["a photo of a cat."])
    loaded = StableDiffusion.from_pretrained(tiny_sd, ["a photo of a cat."], device="cpu", dtype="fp32")
    assert shared.unet is pipe.unet and torch.equal(shared.alphas_cumprod, loaded.alphas_cumprod)
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1
    assert torch.allclose(mid_block_features(shared, x), mid_block_features(loaded, x), atol=1e-5)
