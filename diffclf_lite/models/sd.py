"""Stable Diffusion as an EpsModel (Li et al. 2023, §3 and §5.1): VAE posterior-mean latents, cached prompt
embeddings, and eps_theta(x_t, t, c) from the UNet. Same code for hub models and the offline stand-in.

Needs the `sd` extra (diffusers, transformers), imported inside the functions that use it: `import diffclf_lite`
loads neither.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..data.hub import HUB, load_error, load_with_variant, pinned
from ..data.images import preprocess_image
from .devices import resolve_device, resolve_dtype

__all__ = ["DEFAULT_MODEL_ID", "SD15_MODEL_ID", "StableDiffusion", "build_tiny_sd", "save_sd_folder", "char_tokenizer"]

DEFAULT_MODEL_ID = HUB["sd2-base"].repo_id  # the paper's headline model, 512 px, eps-prediction (see data/hub.py)
SD15_MODEL_ID = HUB["sd1.5"].repo_id
_LAYOUT = "unet/, vae/, text_encoder/, tokenizer/ and scheduler/ (what save_pretrained writes)"


def _place(module: Any, device: torch.device, dtype: torch.dtype) -> Any:
    """Move to the device, cast only when the dtype differs (diffusers warns on a needless cast), inference only."""
    module = module.to(device)
    if next(module.parameters()).dtype != dtype:
        module = module.to(dtype)
    return module.eval().requires_grad_(False)


class StableDiffusion:
    """Stable Diffusion behind the EpsModel contract; the conditions are the prompts, embedded once and cached."""

    def __init__(self, unet: Any, vae: Any, text_encoder: Any, tokenizer: Any, alphas_cumprod: torch.Tensor,
                 prompts: Sequence[str] = (), *, device: str | torch.device | None = None,
                 dtype: str | torch.dtype | None = None, resolution: int | None = None,
                 prediction_type: str = "epsilon", channels_last: bool | None = None, encode_batch_size: int = 8) -> None:
        self.device = resolve_device(device)  # a clear error when the named GPU does not exist
        self.dtype = resolve_dtype(dtype, self.device)
        if prediction_type not in ("epsilon", "v_prediction"):
            raise ValueError(f"prediction_type {prediction_type!r} is not supported; use 'epsilon' or 'v_prediction'.")
        self.prediction_type = prediction_type
        self.channels_last = self.device.type == "cuda" if channels_last is None else bool(channels_last)
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        self.unet, self.vae, self.text_encoder = (_place(m, self.device, self.dtype) for m in (unet, vae, text_encoder))
        self.unet = self.unet.to(memory_format=fmt)
        self.tokenizer = tokenizer
        self.alphas_cumprod = alphas_cumprod.detach().double().cpu()
        self._abar = self.alphas_cumprod.to(self.device)
        self.vae_scale = 2 ** (len(vae.config.block_out_channels) - 1)
        self.scaling_factor = float(getattr(vae.config, "scaling_factor", None) or 0.18215)
        self.shift_factor = float(getattr(vae.config, "shift_factor", None) or 0.0)
        down = 2 ** (len(unet.config.block_out_channels) - 1)
        self.resolution = int(resolution or unet.config.sample_size * self.vae_scale)
        if self.resolution % (self.vae_scale * down):
            raise ValueError(f"resolution {self.resolution} must be a multiple of {self.vae_scale * down} for this UNet and VAE.")
        self.encode_batch_size = int(encode_batch_size)
        self._cache: dict[str, torch.Tensor] = {}
        self.text_encoder_calls = 0
        self.commit_hash: str | None = None  # set by from_pretrained for a hub model
        self.set_prompts(prompts)

    @classmethod
    def from_pretrained(cls, model: str | Path = DEFAULT_MODEL_ID, prompts: Sequence[str] = (), *,
                        device: str | torch.device | None = None, dtype: str | torch.dtype | None = None,
                        resolution: int | None = None, revision: str | None = None, variant: str | None = None,
                        local_files_only: bool = False, **kwargs: Any) -> "StableDiffusion":
        """Load UNet, VAE, text encoder, tokenizer and the scheduler's config (no safety checker) from a hub id or folder."""
        from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
        from transformers import CLIPTextModel, CLIPTokenizer

        dev = resolve_device(device)
        dt = resolve_dtype(dtype, dev)
        src, revision, variant = pinned(model, revision, variant, half=dt == torch.float16)  # the table's pins
        kw = {"revision": revision, "local_files_only": local_files_only}
        try:
            def parts(variant: str | None) -> tuple[Any, Any, Any]:
                return (UNet2DConditionModel.from_pretrained(src, subfolder="unet", torch_dtype=dt, variant=variant, **kw),
                        AutoencoderKL.from_pretrained(src, subfolder="vae", torch_dtype=dt, variant=variant, **kw),
                        CLIPTextModel.from_pretrained(src, subfolder="text_encoder", variant=variant, **kw))

            unet, vae, text_encoder = load_with_variant(parts, variant)  # fp16 files where the repository has them
            tokenizer = CLIPTokenizer.from_pretrained(src, subfolder="tokenizer", **kw)
            config, commit = DDPMScheduler.load_config(src, subfolder="scheduler", return_commit_hash=True, **kw)
        except (OSError, ValueError) as err:
            raise load_error("sd", src, err, _LAYOUT, revision) from err
        scheduler = DDPMScheduler.from_config(config)
        model = cls(unet, vae, text_encoder, tokenizer, scheduler.alphas_cumprod, prompts, device=dev, dtype=dt,
                    resolution=resolution, prediction_type=scheduler.config.prediction_type, **kwargs)
        model.commit_hash = commit  # the hub commit the files came from (None for a local folder)
        return model

    # ---- conditions: prompt embeddings, computed once per distinct prompt ----
    @property
    def prompts(self) -> list[str]:
        return list(self._prompts)

    @property
    def num_conditions(self) -> int:
        return len(self._prompts)

    def set_prompts(self, prompts: Sequence[str]) -> None:
        """Make `prompts` the candidate conditions; only prompts never seen before go through the text encoder."""
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        if any(not isinstance(p, str) for p in prompts):
            raise ValueError("prompts must be strings, one per candidate condition.")
        new = list(dict.fromkeys(p for p in prompts if p not in self._cache))
        if new:
            for p, e in zip(new, self._embed(new)):
                self._cache[p] = e
        self._prompts = prompts
        self._embeds = torch.stack([self._cache[p] for p in prompts]) if prompts else None  # (P, L, D)

    @torch.inference_mode()
    def _embed(self, prompts: list[str], batch: int = 64) -> torch.Tensor:
        """Text-encoder last hidden states (as diffusers' pipelines do without clip_skip), padded to max length."""
        out = []
        for s in range(0, len(prompts), batch):
            ids = self.tokenizer(prompts[s:s + batch], padding="max_length", max_length=self.tokenizer.model_max_length,
                                 truncation=True, return_tensors="pt").input_ids.to(self.device)
            self.text_encoder_calls += 1
            out.append(self.text_encoder(ids)[0].to(self.dtype))
        return torch.cat(out)

    # ---- the EpsModel contract ----
    @property
    def latent_shape(self) -> tuple[int, int, int]:
        r = self.resolution // self.vae_scale
        return (int(self.vae.config.latent_channels), r, r)

    def preprocess(self, images: Any) -> torch.Tensor:
        """A list of images (or one image) -> (N, 3, R, R) in [-1, 1] on the CPU."""
        from PIL import Image

        if isinstance(images, (Image.Image, np.ndarray)) or (isinstance(images, torch.Tensor) and images.ndim == 3):
            images = [images]
        return torch.stack([preprocess_image(im, self.resolution) for im in images])

    @torch.inference_mode()
    def encode(self, images: Any) -> torch.Tensor:
        """x0 = (VAE posterior mean - shift) * scaling factor (Li et al. §5.1): (N, 4, R/8, R/8) float32 on the device."""
        pixels = images if isinstance(images, torch.Tensor) and images.ndim == 4 else self.preprocess(images)
        if pixels.ndim != 4 or pixels.shape[1] != 3:
            raise ValueError(f"expected images or a (N, 3, H, W) tensor in [-1, 1], got shape {tuple(pixels.shape)}.")
        out = []
        for s in range(0, len(pixels), self.encode_batch_size):
            x = pixels[s:s + self.encode_batch_size].to(self.device, self.dtype)
            mean = self.vae.encode(x).latent_dist.mean
            out.append(((mean - self.shift_factor) * self.scaling_factor).float())
        return torch.cat(out)

    def eps(self, x_t: torch.Tensor, t: torch.Tensor, cond_index: torch.Tensor) -> torch.Tensor:
        """eps_theta(x_t, t, prompt[cond_index]) (a v-prediction UNet is converted: eps = sqrt(1-abar) x_t + sqrt(abar) v)."""
        if self._embeds is None:
            raise ValueError("no prompts set: pass prompts to from_pretrained or call set_prompts([...]) first.")
        x = x_t.to(self.dtype)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        out = self.unet(x, t, encoder_hidden_states=self._embeds[cond_index], return_dict=False)[0]
        if self.prediction_type == "v_prediction":
            abar = self._abar[t].to(x_t.dtype).view(-1, 1, 1, 1)
            out = (1 - abar).sqrt() * x_t + abar.sqrt() * out.to(x_t.dtype)
        return out

    @torch.inference_mode()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents -> images (N, 3, R, R) in [0, 1] on the CPU (for looking at what the classifier sees)."""
        x = latents.to(self.device, self.dtype) / self.scaling_factor + self.shift_factor
        return ((self.vae.decode(x).sample.float().cpu() + 1) / 2).clamp(0, 1)


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable unicode character table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def _char_vocab(folder: Path) -> tuple[Path, Path]:
    """A character-level CLIP BPE vocabulary (no merges) that needs no download."""
    chars = list(_bytes_to_unicode().values())
    vocab = {c: i for i, c in enumerate(chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"])}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    return folder / "vocab.json", folder / "merges.txt"


def char_tokenizer(model_max_length: int = 77) -> Any:
    """A CLIPTokenizer over the character-level vocabulary above, built offline (tiny SD and tiny CLIP stand-ins)."""
    import tempfile

    from transformers import CLIPTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        return CLIPTokenizer(*map(str, _char_vocab(Path(tmp))), model_max_length=model_max_length)


def build_tiny_sd(folder: str | Path, *, latent_size: int = 8, prediction_type: str = "epsilon", seed: int = 0) -> Path:
    """Build a tiny random-weight pipeline of SD's classes (UNet2DConditionModel, AutoencoderKL with 8x downsampling,
    CLIPTextModel + CLIPTokenizer, PNDM scheduler with SD's scaled_linear betas) and save it like a hub folder."""
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    tokenizer = char_tokenizer(77)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        max_position_embeddings=77, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id))
    unet = UNet2DConditionModel(
        sample_size=latent_size, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, attention_head_dim=8)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1, block_out_channels=(8, 8, 16, 16),
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4, norm_num_groups=8,
        sample_size=latent_size * 8, scaling_factor=0.18215)
    scheduler = PNDMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              skip_prk_steps=True, set_alpha_to_one=False, steps_offset=1, prediction_type=prediction_type)
    return save_sd_folder(folder, unet, vae, text_encoder, tokenizer, scheduler)


def save_sd_folder(folder: str | Path, unet: Any, vae: Any, text_encoder: Any, tokenizer: Any, scheduler: Any) -> Path:
    """Save Stable Diffusion's parts like a hub folder (one subfolder each and model_index.json), so that
    `StableDiffusion.from_pretrained` and diffusers' StableDiffusionPipeline load it: stand-ins and benchmark builds."""
    import diffusers

    folder = Path(folder)
    parts = {"unet": unet, "vae": vae, "text_encoder": text_encoder, "scheduler": scheduler, "tokenizer": tokenizer}
    for name, part in parts.items():
        part.save_pretrained(folder / name)
    index = {"_class_name": "StableDiffusionPipeline", "_diffusers_version": diffusers.__version__,
             "feature_extractor": [None, None], "safety_checker": [None, None], "requires_safety_checker": False,
             **{k: ["diffusers" if k in ("unet", "vae", "scheduler") else "transformers", type(v).__name__]
                for k, v in parts.items()}}
    (folder / "model_index.json").write_text(json.dumps(index, indent=2), encoding="utf-8")  # as save_pretrained writes it
    return folder
