"""Adapters behind the one contract (`engine.contract.EpsModel`): each turns a model into `encode(images)`,
`alphas_cumprod` and a batched `eps(x_t, t, cond_index)` over candidate conditions prepared once.

- `gmm`: an analytic Gaussian mixture with an exact denoiser and exact log p(x | c) (the known answers).
- `sd`: Stable Diffusion (diffusers), from a hub id or a local folder; conditions are prompts.
- `classcond`: class-conditional diffusers UNet2DModel and DiT; conditions are class labels.
- `miniature`: the miniature Stable Diffusion and CLIP the book trains (the real library classes, made small).
- `clip`: CLIP zero-shot classification, the contrastive baseline (not an eps-model).
- `devices`: where and in what precision an adapter runs.
Diffusers and transformers are imported inside the adapters that need them.
"""
from .classcond import ClassConditionalUNet, DiTClassifier
from .clip import CLIPClassifier
from .devices import default_device, resolve_device, resolve_dtype
from .gmm import GaussianMixture
from .sd import StableDiffusion

__all__ = ["GaussianMixture", "StableDiffusion", "ClassConditionalUNet", "DiTClassifier", "CLIPClassifier",
           "default_device", "resolve_device", "resolve_dtype"]
