"""Class-conditional adapters behind the EpsModel contract: a diffusers UNet2DModel with class embeddings, and DiT.

Li et al. §5.3 / Table 4: a class-conditional diffusion model (DiT-XL/2) used as an ImageNet classifier, with
cond_index k meaning the class label class_ids[k]. The same engine (`dc.classify`) and strategies run on both.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from ..data.hub import HUB, load_error, load_with_variant, pinned

__all__ = ["ClassConditionalUNet", "DiTClassifier", "to_model_range", "save_tiny_dit"]


def to_model_range(images: Any, channels: int, resolution: int, dtype: torch.dtype, device: torch.device,
                   mode: str = "bilinear") -> torch.Tensor:
    """Images (N, C, H, W) as uint8 0..255 or float in [-1, 1] -> float in [-1, 1] at `resolution` (Ho et al. §4)."""
    x = torch.as_tensor(images)
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or x.shape[1] != channels:
        raise ValueError(f"expected images shaped (N, {channels}, H, W), got {tuple(x.shape)}.")
    if x.dtype == torch.uint8:
        x = x.float() / 127.5 - 1
    x = x.float()
    if x.numel() and (x.min() < -1.001 or x.max() > 1.001):
        raise ValueError(f"float images must be scaled to [-1, 1] (got [{x.min():.3g}, {x.max():.3g}]): "
                         "use x * 2 - 1 for images in [0, 1], or pass uint8 images.")
    if x.shape[-2:] != (resolution, resolution):
        x = F.interpolate(x, size=(resolution, resolution), mode=mode, align_corners=False, antialias=True)
        x = x.clamp(-1, 1)
    return x.to(device=device, dtype=dtype)


def _check_class_ids(class_ids: Sequence[int] | None, n_embeds: int, n_classes: int) -> torch.Tensor:
    ids = torch.arange(n_classes) if class_ids is None else torch.as_tensor(list(class_ids), dtype=torch.long)
    if ids.ndim != 1 or len(ids) == 0 or int(ids.min()) < 0 or int(ids.max()) >= n_classes:
        raise ValueError(f"class_ids must be a non-empty list of class labels in [0, {n_classes}), got "
                         f"{ids.tolist()}; the model has {n_embeds} class embeddings.")
    return ids


def _local_or_hub(path_or_id: str | Path, hint: str) -> str:
    """A local folder (must exist) or a hub id `owner/name`; anything that can only be a path must exist."""
    text = str(path_or_id)
    local = Path(text).expanduser()
    looks_local = local.is_absolute() or text.startswith((".", "~")) or text.count("/") != 1 or local.exists()
    if looks_local and not local.is_dir():
        raise FileNotFoundError(f"checkpoint folder {local} does not exist; {hint}")
    return str(local) if looks_local else text


class _ClassCondBase:
    """Shared eps(): cond_index k -> class label class_ids[k], checked on the CPU (a device assert on CUDA)."""

    class_ids: torch.Tensor
    device: torch.device
    dtype: torch.dtype

    @property
    def num_conditions(self) -> int:
        return len(self.class_ids)

    def _labels(self, cond_index: torch.Tensor) -> torch.Tensor:
        if cond_index.device.type == "cpu" and len(cond_index) and (
            int(cond_index.min()) < 0 or int(cond_index.max()) >= self.num_conditions
        ):
            raise ValueError(f"cond_index must lie in [0, {self.num_conditions}), got "
                             f"[{int(cond_index.min())}, {int(cond_index.max())}].")
        return self.class_ids[cond_index]


class ClassConditionalUNet(_ClassCondBase):
    """A diffusers UNet2DModel with `num_class_embeds` (a checkpoint of diffclf_lite.training) as an EpsModel."""

    def __init__(self, unet: Any, alphas_cumprod: torch.Tensor, num_classes: int, null_class: int | None = None,
                 class_ids: Sequence[int] | None = None, scheduler_config: dict | None = None) -> None:
        n_embeds = unet.config.num_class_embeds
        if n_embeds is None:
            raise ValueError("the UNet has no class embedding table: build it with num_class_embeds=<classes>.")
        if not 1 <= num_classes <= n_embeds or (null_class is not None and not num_classes <= null_class < n_embeds):
            raise ValueError(f"num_classes={num_classes}, null_class={null_class} do not fit the UNet's {n_embeds} "
                             "class embeddings.")
        self.unet = unet.eval().requires_grad_(False)
        self.device, self.dtype = unet.device, unet.dtype
        self.alphas_cumprod = alphas_cumprod.to(torch.float64).cpu()
        self.num_classes, self.null_class = int(num_classes), null_class
        self.class_ids = _check_class_ids(class_ids, n_embeds, num_classes).to(self.device)
        self.scheduler_config = scheduler_config or {}
        self.resolution, self.channels = int(unet.config.sample_size), int(unet.config.in_channels)

    @classmethod
    def from_pretrained(cls, path_or_id: str | Path, device: str | torch.device = "cpu",
                        dtype: torch.dtype = torch.float32, class_ids: Sequence[int] | None = None,
                        subfolder: str | None = None) -> "ClassConditionalUNet":
        """Load a UNet2DModel + DDPMScheduler (+ training.json) from a local folder or a hub id."""
        from diffusers import DDPMScheduler, UNet2DModel  # lazy

        src = _local_or_hub(path_or_id, "train one with `python -m diffclf_lite.training --out FOLDER` or pass a "
                                        "hub id (owner/name).")
        kw = {"subfolder": subfolder} if subfolder else {}
        unet = UNet2DModel.from_pretrained(src, torch_dtype=dtype, **kw).to(device)
        sched = DDPMScheduler.from_pretrained(src, **kw)
        info_file = Path(src) / (subfolder or "") / "training.json"
        info = json.loads(info_file.read_text(encoding="utf-8")) if info_file.is_file() else {}
        n = int(info.get("num_classes", unet.config.num_class_embeds))
        return cls(unet, sched.alphas_cumprod, n, info.get("null_class"), class_ids, dict(sched.config))

    def encode(self, images: Any) -> torch.Tensor:
        """Pixels are the diffusion space: images scaled to [-1, 1] at the UNet's resolution, (N, C, R, R)."""
        return to_model_range(images, self.channels, self.resolution, self.dtype, self.device)

    def eps(self, x_t: torch.Tensor, t: torch.Tensor, cond_index: torch.Tensor) -> torch.Tensor:
        """eps_theta(x_t, t, y) with y = class_ids[cond_index] (Li et al. eq. 5)."""
        return self.unet(x_t.to(self.dtype), t, class_labels=self._labels(cond_index)).sample

    @torch.no_grad()
    def sample(self, labels: Sequence[int], num_inference_steps: int = 25, guidance_scale: float = 1.0,
               seed: int = 0) -> torch.Tensor:
        """Generate images (N, C, R, R) in [-1, 1] of class labels `labels` with DDIM (Song et al. 2021), optionally
        with classifier-free guidance eps_null + s (eps_y - eps_null) (Ho & Salimans 2022) when a null class exists."""
        from diffusers import DDIMScheduler

        y = torch.as_tensor(list(labels), dtype=torch.long)
        if len(y) == 0 or int(y.min()) < 0 or int(y.max()) >= self.num_classes:
            raise ValueError(f"labels must lie in [0, {self.num_classes}), got {y.tolist()}.")
        if guidance_scale != 1.0 and self.null_class is None:
            raise ValueError("guidance_scale != 1 needs a null class: train with label_dropout > 0.")
        sched = DDIMScheduler.from_config(self.scheduler_config or {"num_train_timesteps": len(self.alphas_cumprod)})
        sched.set_timesteps(num_inference_steps)
        g = torch.Generator().manual_seed(seed)
        x = torch.randn((len(y), self.channels, self.resolution, self.resolution), generator=g).to(self.device, self.dtype)
        y = y.to(self.device)
        for t in sched.timesteps:
            tt = t.expand(len(y)).to(self.device)
            eps = self.unet(x, tt, class_labels=y).sample
            if guidance_scale != 1.0:
                eps_null = self.unet(x, tt, class_labels=torch.full_like(y, self.null_class)).sample
                eps = eps_null + guidance_scale * (eps - eps_null)
            x = sched.step(eps, t, x).prev_sample
        return x.float().clamp(-1, 1).cpu()


class DiTClassifier(_ClassCondBase):
    """DiT (Peebles & Xie 2023) in a VAE latent space as an EpsModel, e.g. DiT-XL/2 at 256 px (Li et al. Table 4).

    encode: VAE posterior mean x scaling factor (as Li et al. do for Stable Diffusion). eps: the transformer
    predicts eps and a learned variance stacked on the channel axis; the first half is eps. DiT's null class
    (the extra embedding row, 1000 for ImageNet) is never a candidate.
    """

    def __init__(self, transformer: Any, vae: Any, alphas_cumprod: torch.Tensor,
                 class_ids: Sequence[int] | None = None, encode_batch_size: int = 16) -> None:
        self.transformer, self.vae = transformer.eval().requires_grad_(False), vae.eval().requires_grad_(False)
        self.device, self.dtype = transformer.device, transformer.dtype
        self.null_class = int(transformer.config.num_embeds_ada_norm)  # labels 0..null_class-1 are real classes
        self.class_ids = _check_class_ids(class_ids, self.null_class + 1, self.null_class).to(self.device)
        self.alphas_cumprod = alphas_cumprod.to(torch.float64).cpu()
        self.latent_channels = int(transformer.config.in_channels)
        self.vae_scale = 2 ** (len(vae.config.block_out_channels) - 1)
        self.resolution = int(transformer.config.sample_size) * self.vae_scale
        self.encode_batch_size = int(encode_batch_size)

    @classmethod
    def from_pretrained(cls, path_or_id: str | Path = HUB["dit-xl-2-256"].repo_id, device: str | torch.device = "cpu",
                        dtype: torch.dtype = torch.float32, class_ids: Sequence[int] | None = None,
                        revision: str | None = None) -> "DiTClassifier":
        """Load a diffusers DiTPipeline folder or hub id and keep its transformer, VAE and noise schedule."""
        from diffusers import DiTPipeline  # lazy

        src, revision, variant = pinned(path_or_id, revision, half=dtype == torch.float16)  # the table's pins
        src = _local_or_hub(src, "pass a folder written by DiTPipeline.save_pretrained or the hub id "
                                 f"{HUB['dit-xl-2-256'].repo_id}.")
        kw = {"torch_dtype": dtype} if dtype != torch.float32 else {}  # fp32 is the default
        try:
            pipe = load_with_variant(lambda variant: DiTPipeline.from_pretrained(src, revision=revision, variant=variant,
                                                                                 **kw), variant)
        except (OSError, ValueError) as err:
            raise load_error("dit", src, err, "transformer/, vae/, scheduler/ and model_index.json (what "
                             "DiTPipeline.save_pretrained writes)", revision) from err
        transformer, vae = pipe.transformer.to(device), pipe.vae.to(device)
        return cls(transformer, vae, pipe.scheduler.alphas_cumprod, class_ids)

    @torch.no_grad()
    def encode(self, images: Any) -> torch.Tensor:
        """Images in [-1, 1] (or uint8), resized to the VAE resolution -> latents (N, 4, R/8, R/8)."""
        x = to_model_range(images, 3, self.resolution, self.vae.dtype, self.device, mode="bicubic")
        out = [self.vae.encode(x[i : i + self.encode_batch_size]).latent_dist.mean
               for i in range(0, len(x), self.encode_batch_size)]
        return torch.cat(out).to(self.dtype) * self.vae.config.scaling_factor

    def eps(self, x_t: torch.Tensor, t: torch.Tensor, cond_index: torch.Tensor) -> torch.Tensor:
        """The eps half of DiT's output (the other half parameterises the variance)."""
        out = self.transformer(x_t.to(self.dtype), timestep=t, class_labels=self._labels(cond_index)).sample
        return out[:, : self.latent_channels] if out.shape[1] == 2 * self.latent_channels else out


def save_tiny_dit(path: str | Path, num_classes: int = 10, seed: int = 0) -> Path:
    """A tiny DiTPipeline with random weights (8x8 RGB images, 4x4x4 latents), saved like the hub's: a stand-in that
    runs DiTClassifier's real loading code offline. Its predictions mean nothing."""
    from diffusers import AutoencoderKL, DDIMScheduler, DiTPipeline, DiTTransformer2DModel

    torch.manual_seed(seed)
    transformer = DiTTransformer2DModel(num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=8,
                                        num_layers=1, sample_size=4, patch_size=2, num_embeds_ada_norm=num_classes)
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 8),
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                        norm_num_groups=4, sample_size=8)
    sched = DDIMScheduler(beta_schedule="linear", num_train_timesteps=1000, clip_sample=False)  # DiT's schedule
    pipe = DiTPipeline(transformer=transformer, vae=vae, scheduler=sched,
                       id2label={i: f"class {i}" for i in range(num_classes)})
    pipe.save_pretrained(path)
    return Path(path)
