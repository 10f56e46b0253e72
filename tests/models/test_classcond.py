"""Class-conditional adapters (UNet2DModel, DiT) on tiny models saved and loaded back."""
from __future__ import annotations

import json

import pytest
import torch

import diffclf_lite as dc
from diffclf_lite.models.classcond import ClassConditionalUNet, DiTClassifier, save_tiny_dit
from diffclf_lite.training import TrainConfig, make_scheduler, save_checkpoint, train

TINY = dict(steps=3, batch_size=4, preset="tiny", warmup_steps=1)


def _data(n: int = 24, size: int = 16, classes: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 1, size, size, generator=g) * 2 - 1, torch.arange(n) % classes


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory):
    x, y = _data()
    result = train(x, y, TrainConfig(**TINY, label_dropout=0.2), progress=False)
    return save_checkpoint(tmp_path_factory.mktemp("ckpt"), result), result


def test_checkpoint_round_trip_and_contract(checkpoint) -> None:
    path, result = checkpoint
    assert {"config.json", "diffusion_pytorch_model.safetensors", "scheduler_config.json", "training.json"} <= {
        p.name for p in path.iterdir()}
    info = json.loads((path / "training.json").read_text())
    assert info["num_classes"] == 3 and info["null_class"] == 3 and info["config"]["steps"] == 3
    model = ClassConditionalUNet.from_pretrained(path)
    dc.check_model(model)
    assert model.num_conditions == 3 and model.null_class == 3 and model.unet.config.num_class_embeds == 4
    # alphas_cumprod: DDPM's linear betas 1e-4 .. 0.02 (Ho et al. 2020), as training used
    expected = dc.alphas_cumprod_from_betas(dc.beta_schedule("linear", 1000))
    torch.testing.assert_close(model.alphas_cumprod, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(model.alphas_cumprod, make_scheduler("linear").alphas_cumprod.double())
    x_t, t = torch.randn(4, 1, 16, 16), torch.tensor([0, 10, 500, 999])
    c = torch.tensor([0, 1, 2, 1])
    out = model.eps(x_t, t, c)
    with torch.no_grad():
        ref = result.model(x_t, t, class_labels=c).sample
    torch.testing.assert_close(out, ref)  # the saved weights are the EMA weights
    assert not torch.allclose(model.eps(x_t, t, torch.tensor([1, 2, 0, 0])), out)  # the class matters


def test_encode_scales_and_resizes(checkpoint) -> None:
    model = ClassConditionalUNet.from_pretrained(checkpoint[0])
    u8 = torch.tensor([0, 255], dtype=torch.uint8).repeat(1, 1, 16, 8)
    torch.testing.assert_close(model.encode(u8).unique(), torch.tensor([-1.0, 1.0]))
    small = torch.full((2, 1, 8, 8), 0.5)
    assert model.encode(small).shape == (2, 1, 16, 16) and torch.allclose(model.encode(small), torch.tensor(0.5))


def test_classify_matches_the_equation(checkpoint) -> None:
    """dc.classify's error of a (sample, t, class) pair is ||eps - eps_theta(sqrt(abar) x + sqrt(1 - abar) eps, t, c)||^2."""
    model = ClassConditionalUNet.from_pretrained(checkpoint[0], class_ids=[2, 0])
    x, _ = _data(n=3)
    r = dc.classify(model, x, dc.Exhaustive(4), seed=1)
    assert r.errors.shape == (3, 4, 2) and (r.nfe == 8).all() and set(r.prediction.tolist()) <= {0, 1}
    assert 0.0 <= r.accuracy(torch.tensor([0, 1, 0])) <= 1.0
    plan = dc.make_plan(4, (1, 16, 16), model.alphas_cumprod, seed=1)
    k, i = 2, 1
    a = model.alphas_cumprod[plan.timesteps[k]].float()
    x_t = a.sqrt() * x[i : i + 1] + (1 - a).sqrt() * plan.noise[k : k + 1]
    with torch.no_grad():
        pred = model.unet(x_t, plan.timesteps[k : k + 1], class_labels=torch.tensor([0])).sample  # class_ids[1] = 0
    assert r.errors[i, k, 1].item() == pytest.approx((pred - plan.noise[k]).pow(2).mean().item(), rel=1e-4)


def test_sampler_generates_in_range(checkpoint) -> None:
    model = ClassConditionalUNet.from_pretrained(checkpoint[0])
    a = model.sample([0, 2], num_inference_steps=3, guidance_scale=2.0, seed=0)
    assert a.shape == (2, 1, 16, 16) and a.min() >= -1 and a.max() <= 1
    torch.testing.assert_close(a, model.sample([0, 2], num_inference_steps=3, guidance_scale=2.0, seed=0))


def test_bad_inputs_raise_clear_errors(checkpoint, tmp_path) -> None:
    model = ClassConditionalUNet.from_pretrained(checkpoint[0])
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\)"):
        model.encode(torch.zeros(2, 3, 16, 16))
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        model.encode(torch.full((1, 1, 16, 16), 3.0))
    with pytest.raises(ValueError, match="cond_index"):
        model.eps(torch.zeros(1, 1, 16, 16), torch.tensor([5]), torch.tensor([3]))
    with pytest.raises(ValueError, match="class_ids"):
        ClassConditionalUNet.from_pretrained(checkpoint[0], class_ids=[0, 3])
    with pytest.raises(ValueError, match="labels"):
        model.sample([3])
    missing = tmp_path / "no_such_checkpoint"
    with pytest.raises(FileNotFoundError, match="no_such_checkpoint"):
        ClassConditionalUNet.from_pretrained(missing)
    with pytest.raises(FileNotFoundError, match="digits_ckpt"):  # a bare relative name is a folder, not a hub id
        ClassConditionalUNet.from_pretrained("digits_ckpt")
    x, y = _data()
    with pytest.raises(ValueError, match="labels must lie"):
        train(x, y + 5, TrainConfig(**TINY), num_classes=3, progress=False)
    with pytest.raises(ValueError, match="schedule"):
        TrainConfig(schedule="quadratic")


def test_dit_adapter_offline(tmp_path) -> None:
    from diffusers import DiTPipeline

    save_tiny_dit(tmp_path / "dit", num_classes=5)
    pipe = DiTPipeline.from_pretrained(tmp_path / "dit")
    transformer, vae = pipe.transformer, pipe.vae
    model = DiTClassifier.from_pretrained(tmp_path / "dit", class_ids=[4, 1, 2])
    dc.check_model(model)
    assert model.num_conditions == 3 and model.null_class == 5 and model.resolution == 8
    images = torch.rand(3, 3, 8, 8) * 2 - 1
    x0 = model.encode(images)
    with torch.no_grad():
        ref = vae.encode(images).latent_dist.mean * vae.config.scaling_factor  # posterior mean, not a sample
    torch.testing.assert_close(x0, ref, rtol=1e-4, atol=1e-5)
    x_t, t, c = torch.randn(3, 4, 4, 4), torch.tensor([1, 500, 999]), torch.tensor([0, 1, 2])
    with torch.no_grad():
        full = transformer(x_t, timestep=t, class_labels=torch.tensor([4, 1, 2])).sample
    assert full.shape[1] == 8
    torch.testing.assert_close(model.eps(x_t, t, c), full[:, :4])  # eps half; the rest is the learned variance
    torch.testing.assert_close(model.alphas_cumprod, dc.alphas_cumprod_from_betas(dc.beta_schedule("linear")),
                               rtol=1e-5, atol=1e-6)
    r = dc.classify(model, images, dc.Staged([2, 4], [2, 1]), seed=0)
    assert r.alive.sum(1).eq(1).all() and (r.nfe == 2 * 3 + 2 * 2).all()
    with pytest.raises(ValueError, match="class_ids"):
        DiTClassifier.from_pretrained(tmp_path / "dit", class_ids=[5])  # the null class is no candidate
    with pytest.raises(FileNotFoundError, match="nowhere"):
        DiTClassifier.from_pretrained(tmp_path / "nowhere")
