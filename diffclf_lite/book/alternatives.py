"""The alternatives Li et al. compare Diffusion Classifier with (their Table 1 rows "Synthetic SD Data" and
"SD Features"): a classifier trained only on images the diffusion model generates, and a linear probe on the
denoiser's mid-block features. Neither is zero-shot in the same way: the probe is fitted on real labelled images.

Generation works for a class-conditional UNet (`ClassConditionalUNet.sample`, by class label) and for Stable
Diffusion (diffusers' StableDiffusionPipeline, by class prompts). Features come from a forward hook on the UNet's
`mid_block` at one fixed timestep with the null condition (the null class, or the empty prompt).
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch

from ..data.prompts import PromptSet
from ..models.classcond import ClassConditionalUNet, to_model_range

__all__ = ["per_class_labels", "generate_per_class", "load_sd_pipeline", "sd_from_pipeline", "generate_sd", "capture_output", "noised",
           "mid_block_features", "fit_linear_probe", "POOLS"]

POOLS = ("mean", "flatten")


def per_class_labels(num_classes: int, n_per_class: int) -> torch.Tensor:
    """Labels (num_classes * n_per_class,) ordered class by class: 0, 0, ..., 1, 1, ..."""
    if num_classes < 1 or n_per_class < 1:
        raise ValueError(f"need num_classes >= 1 and n_per_class >= 1, got {num_classes} and {n_per_class}.")
    return torch.arange(num_classes).repeat_interleave(n_per_class)


def _seeds(seed: int, n: int) -> list[int]:
    """n well-separated seeds derived from one seed (seed s and s + 1 share no draws)."""
    return torch.randint(0, 2**62, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


def generate_per_class(model: ClassConditionalUNet, n_per_class: int, num_inference_steps: int = 25,
                       guidance_scale: float = 1.0, seed: int = 0, batch_size: int = 250,
                       progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Generate n_per_class images of every class with the model's DDIM sampler (optionally with classifier-free
    guidance): images (N, C, R, R) in [-1, 1] and the labels they were generated for (N,). The same seed and batch_size
    give the same images."""
    from tqdm.auto import tqdm

    labels = per_class_labels(model.num_classes, n_per_class)
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
    starts = range(0, len(labels), batch_size)
    chunks = [model.sample(labels[s : s + batch_size].tolist(), num_inference_steps, guidance_scale, seed=k)
              for s, k in tqdm(list(zip(starts, _seeds(seed, len(starts)))), desc="generating", disable=not progress)]
    return torch.cat(chunks), labels


def load_sd_pipeline(model: str | Path, device: str | torch.device | None = None,
                     dtype: str | torch.dtype | None = None) -> Any:
    """diffusers' StableDiffusionPipeline from a hub id or folder, without safety checker, progress bars off."""
    from diffusers import StableDiffusionPipeline  # lazy: the `sd` extra

    from ..data.hub import load_error, load_with_variant, pinned
    from ..models.devices import resolve_device, resolve_dtype

    dev = resolve_device(device)  # a clear error when the named GPU does not exist
    dt = resolve_dtype(dtype, dev)
    src, revision, variant = pinned(model, half=dt == torch.float16)  # the table's pins and fp16 files
    try:
        pipe = load_with_variant(lambda variant: StableDiffusionPipeline.from_pretrained(
            src, revision=revision, variant=variant, torch_dtype=dt, safety_checker=None, requires_safety_checker=False),
            variant)
    except (OSError, ValueError) as err:
        raise load_error("sd", src, err, "model_index.json and the pipeline's folders (what save_pretrained writes)",
                         revision) from err
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(dev)


def sd_from_pipeline(pipe: Any, prompts: Sequence[str] = ()) -> Any:
    """The classifier's StableDiffusion adapter on the pipeline's own modules: one copy of the weights for both."""
    from ..models.sd import StableDiffusion

    sched = pipe.scheduler
    return StableDiffusion(pipe.unet, pipe.vae, pipe.text_encoder, pipe.tokenizer, sched.alphas_cumprod, prompts,
                           device=pipe.device, dtype=pipe.unet.dtype,
                           prediction_type=getattr(sched.config, "prediction_type", "epsilon"))


@torch.no_grad()
def generate_sd(pipe: Any, prompts: PromptSet, n_per_class: int, num_inference_steps: int = 25,
                guidance_scale: float = 7.5, seed: int = 0, batch_size: int = 8, resolution: int | None = None,
                progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Generate n_per_class images of every class with a text-to-image pipeline, cycling through the class's prompts:
    images (N, 3, R, R) in [-1, 1] on the CPU and labels (N,). Each image has its own seeded generator, so the
    result does not depend on batch_size."""
    from tqdm.auto import tqdm

    labels = per_class_labels(prompts.num_classes, n_per_class)
    by_class = [[p for p, c in zip(prompts.prompts, prompts.prompt_class) if c == k] for k in range(prompts.num_classes)]
    texts = [by_class[c][i % len(by_class[c])] for c in range(prompts.num_classes) for i in range(n_per_class)]
    gens = [torch.Generator().manual_seed(s) for s in _seeds(seed, len(texts))]  # CPU: the same draws on any device
    size = resolution or pipe.unet.config.sample_size * pipe.vae_scale_factor
    out = []
    for s in tqdm(range(0, len(texts), batch_size), desc="generating", disable=not progress):
        im = pipe(prompt=texts[s : s + batch_size], num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
                  generator=gens[s : s + batch_size], height=size, width=size, output_type="pt").images
        out.append(im.float().cpu() * 2 - 1)  # (B, 3, R, R): [0, 1] -> [-1, 1]
    return torch.cat(out).clamp(-1, 1), labels


@contextmanager
def capture_output(module: torch.nn.Module) -> Iterator[list[torch.Tensor]]:
    """Collect the outputs of `module` (a forward hook) while the block runs; the hook is removed afterwards."""
    outputs: list[torch.Tensor] = []
    handle = module.register_forward_hook(lambda m, i, o: outputs.append(o[0] if isinstance(o, tuple) else o))
    try:
        yield outputs
    finally:
        handle.remove()


def noised(x0: torch.Tensor, timestep: int, alphas_cumprod: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps (DDPM eq. 4), eps from a CPU generator seeded with `seed`."""
    if not 0 <= timestep < len(alphas_cumprod):
        raise ValueError(f"timestep must lie in [0, {len(alphas_cumprod)}), got {timestep}.")
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float32).to(x0.device)
    a = alphas_cumprod[timestep].item()
    return a**0.5 * x0.float() + (1 - a) ** 0.5 * eps


def _null_forward(model: Any) -> Any:
    """A function x_t, t -> UNet output under the null condition: the null class or the empty prompt's embedding."""
    if isinstance(model, ClassConditionalUNet):
        if model.null_class is None:
            raise ValueError("the model has no null class (trained with label_dropout=0), so it has no unconditional "
                             "prediction to take features from; train with label_dropout > 0.")
        return lambda x, t: model.unet(x.to(model.dtype), t, class_labels=torch.full_like(t, model.null_class))
    if hasattr(model, "text_encoder") and hasattr(model, "tokenizer"):  # diffclf_lite.models.sd.StableDiffusion
        ids = model.tokenizer([""], padding="max_length", max_length=model.tokenizer.model_max_length,
                              return_tensors="pt").input_ids.to(model.device)
        empty = model.text_encoder(ids)[0].to(model.dtype)  # (1, L, D)
        return lambda x, t: model.unet(x.to(model.dtype), t, encoder_hidden_states=empty.expand(len(x), -1, -1))
    raise ValueError(f"mid_block_features needs a ClassConditionalUNet or a diffclf_lite.models.sd.StableDiffusion, got "
                     f"{type(model).__name__}.")


@torch.no_grad()
def mid_block_features(model: Any, images: torch.Tensor, timestep: int = 100, pool: str = "mean", batch_size: int = 64,
                       seed: int = 0) -> torch.Tensor:
    """Features (N, D) of images (N, C, H, W) in [-1, 1]: the UNet's mid-block output for x_t at one fixed timestep
    under the null condition (as Li et al.'s "SD Features" baseline), pooled over space ("mean": D = channels) or
    flattened ("flatten"). The noise of image i depends only on (seed, i), so batch_size does not change the result."""
    if pool not in POOLS:
        raise ValueError(f"pool must be one of {POOLS}, got {pool!r}.")
    x = torch.as_tensor(images)
    if x.ndim != 4 or len(x) == 0:
        raise ValueError(f"expected a non-empty batch of images (N, C, H, W), got shape {tuple(x.shape)}.")
    forward, unet, abar = _null_forward(model), model.unet, model.alphas_cumprod
    channels = 3 if hasattr(model, "vae") else model.channels
    feats = []
    with capture_output(unet.mid_block) as seen:
        for s in range(0, len(x), batch_size):
            pixels = to_model_range(x[s : s + batch_size], channels, model.resolution, torch.float32, torch.device("cpu"),
                                    mode="bicubic")
            x0 = model.encode(pixels)  # (B, c, r, r): pixels or SD latents
            x_t = torch.cat([noised(x0[i : i + 1], timestep, abar, seed=seed * 1_000_003 + s + i) for i in range(len(x0))])
            forward(x_t, torch.full((len(x_t),), timestep, device=x_t.device, dtype=torch.long))
            h = seen.pop().float()  # (B, C_mid, h, w)
            feats.append((h.mean((2, 3)) if pool == "mean" else h.flatten(1)).cpu())
    return torch.cat(feats)


def fit_linear_probe(features: torch.Tensor, labels: torch.Tensor, C: float = 1.0, max_iter: int = 2000) -> Any:
    """Standardise, then multinomial logistic regression (scikit-learn): a linear probe fitted on real labels."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    f, y = torch.as_tensor(features), torch.as_tensor(labels)
    if f.ndim != 2 or len(f) != len(y) or len(y.unique()) < 2:
        raise ValueError(f"need features (N, D), labels (N,) and at least two classes, got {tuple(f.shape)}, "
                         f"{tuple(y.shape)} with {len(y.unique())} class(es).")
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter))
    return probe.fit(f.double().numpy(), y.numpy())
