"""Training the miniature Stable Diffusion and CLIP on the miniature captioned world (data.miniature), on a CPU.

Stable Diffusion's recipe in small (Rombach et al. 2022): first an autoencoder (AutoencoderKL: reconstruction loss
plus a small KL term), then, on its latents (posterior means times a scaling factor that makes them unit-variance),
a UNet2DConditionModel and a CLIPTextModel trained jointly with the DDPM loss, the caption dropped 10% of the time
so that classifier-free guidance works. CLIP's recipe in small (Radford et al. 2021): a CLIPModel trained with the
symmetric InfoNCE loss on the same images and captions. `miniature_models` trains once per machine and settings.
"""
from __future__ import annotations

import copy
import hashlib
import json
import random
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from ..data import miniature as world
from ..models import miniature as arch
from .digits import build_once, cache_dir

__all__ = ["MiniatureConfig", "MINIATURE_CONFIG", "MINIATURE_SMOKE", "train_miniature", "miniature_models", "miniature_path"]

FORMAT = 2  # part of the cache key: 2 = CLIP trains beside the autoencoder and UNet, on its own generator
DONE_FILE = "training.json"


@dataclass(frozen=True)
class MiniatureConfig:
    """Every setting of the miniature models' training; the defaults are what the book uses."""

    n_singles: int = 12000  # one-digit training images
    n_pairs: int = 4000  # two-digit training images
    vae_steps: int = 700
    vae_batch: int = 64
    vae_lr: float = 2e-3
    kl_weight: float = 1e-5
    unet_steps: int = 3000
    unet_batch: int = 128
    unet_lr: float = 2e-3
    caption_dropout: float = 0.1
    ema_decay: float = 0.995
    clip_steps: int = 1000
    clip_batch: int = 128
    clip_lr: float = 1e-3
    seed: int = 0

    def __post_init__(self) -> None:
        small = {k: v for k, v in asdict(self).items() if k != "seed" and not v > 0}
        if small:
            raise ValueError(f"every setting except seed must be positive, got {small}.")


MINIATURE_CONFIG = MiniatureConfig()
MINIATURE_SMOKE = MiniatureConfig(n_singles=64, n_pairs=32, vae_steps=2, vae_batch=8, unet_steps=2, unet_batch=8,
                                  clip_steps=2, clip_batch=16)  # the same code in seconds; the models learn nothing


def _lr(step: int, steps: int, peak: float, warmup: int = 50) -> float:
    """Linear warm-up, then cosine decay to 10% of the peak."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return peak * (0.1 + 0.45 * (1 + torch.cos(torch.tensor(progress * torch.pi)).item()))


def _fit(params: list[torch.nn.Parameter], loss_at: Callable[[int], torch.Tensor], steps: int, lr: float, desc: str,
         progress: bool, after_step: Callable[[int], None] | None = None, stop: threading.Event | None = None,
         position: int = 0) -> list[float]:
    """AdamW with the schedule above and gradient clipping at 1; a progress bar with the time left. Ends early
    (RuntimeError) when `stop` is set: the other phase running beside this one has failed."""
    from tqdm.auto import tqdm

    opt = torch.optim.AdamW(params, lr=lr)
    losses: list[float] = []
    bar = tqdm(range(steps), desc=desc, disable=not progress, mininterval=2.0, position=position)
    for step in bar:
        if stop is not None and stop.is_set():
            raise RuntimeError(f"{desc}: stopped because the other training phase failed")
        for group in opt.param_groups:
            group["lr"] = _lr(step, steps, lr)
        loss = loss_at(step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if after_step is not None:
            after_step(step)
        losses.append(loss.item())
        if step % 50 == 0:
            bar.set_postfix(loss=f"{sum(losses[-50:]) / len(losses[-50:]):.4f}")
    return losses


class _Captions:
    """Random training captions of the images (drawn per step from a seeded generator), tokenized once each."""

    def __init__(self, items: list[world.Item], tokenizer: Any, seed: int, dropout: float = 0.0) -> None:
        self.items, self.tokenizer, self.dropout = items, tokenizer, dropout
        self.rng = random.Random(seed)
        self.ids: dict[str, torch.Tensor] = {}

    def __call__(self, idx: torch.Tensor) -> torch.Tensor:
        texts = ["" if self.rng.random() < self.dropout else world.random_caption(self.items[i], self.rng)
                 for i in idx.tolist()]
        new = [t for t in dict.fromkeys(texts) if t not in self.ids]
        if new:
            ids = self.tokenizer(new, padding="max_length", max_length=arch.MAX_TOKENS, truncation=True,
                                 return_tensors="pt").input_ids
            self.ids.update(zip(new, ids))
        return torch.stack([self.ids[t] for t in texts])


def train_miniature(out: str | Path, config: MiniatureConfig = MINIATURE_CONFIG, progress: bool = True) -> Path:
    """Train the autoencoder, then the UNet with its text encoder and, beside them on a second thread, CLIP; write
    out/sd (the hub layout of a Stable Diffusion repository), out/clip (a CLIPModel with its processor) and
    out/training.json. Each phase draws from its own seeded generator, so the weights do not depend on how the two
    threads interleave; each thread runs torch on one core (these small operations gain little from more)."""
    cfg, out = config, Path(out)
    data = world.training_set(cfg.n_singles, cfg.n_pairs, cfg.seed)
    tokenizer = arch.build_tokenizer(world.vocabulary(), out / "sd" / "tokenizer")
    clip = arch.make_clip(tokenizer, seed=cfg.seed).train()  # initialised here: the global RNG is not thread-safe
    vae = arch.make_vae(cfg.seed).train()
    unet, text = arch.make_unet(cfg.seed).train(), arch.make_text_encoder(tokenizer, cfg.seed).train()
    threads, stop, clip_result = torch.get_num_threads(), threading.Event(), {}

    def run_clip() -> None:
        try:
            clip_result.update(_train_clip(clip, tokenizer, data, out / "clip", cfg, progress, stop))
        except BaseException as err:  # handed to the main thread
            clip_result["error"] = err

    worker = threading.Thread(target=run_clip, name="clip-training", daemon=True)
    torch.set_num_threads(1)
    start = time.perf_counter()
    worker.start()
    try:
        sd = _train_sd(vae, unet, text, tokenizer, data, out / "sd", cfg, progress, stop)
    except BaseException:
        stop.set()
        raise
    finally:
        worker.join()
        torch.set_num_threads(threads)
    if "error" in clip_result:
        raise clip_result["error"]
    info = {"config": asdict(cfg), "format": FORMAT, "scaling_factor": sd["scaling_factor"], "threads": threads,
            "seconds": {**sd["seconds"], "clip": clip_result["seconds"], "total": time.perf_counter() - start},
            "losses": {**sd["losses"], "clip": clip_result["losses"]}}
    (out / DONE_FILE).write_text(json.dumps(info), encoding="utf-8")
    return out


def _train_sd(vae: Any, unet: Any, text: Any, tokenizer: Any, data: world.MiniatureSet, out: Path,
              cfg: MiniatureConfig, progress: bool, stop: threading.Event) -> dict[str, Any]:
    """Stable Diffusion's recipe in small: the autoencoder, then the UNet and text encoder on its latents."""
    g = torch.Generator().manual_seed(cfg.seed)
    pixels = data.images.float() / 127.5 - 1  # (N, 3, 32, 32) in [-1, 1], as StableDiffusion.preprocess gives
    start = time.perf_counter()

    def vae_loss(step: int) -> torch.Tensor:
        x = pixels[torch.randint(len(pixels), (cfg.vae_batch,), generator=g)]
        post = vae.encode(x).latent_dist
        rec = vae.decode(post.sample(generator=g)).sample
        return F.mse_loss(rec, x) + cfg.kl_weight * post.kl().mean()

    vae_losses = _fit(list(vae.parameters()), vae_loss, cfg.vae_steps, cfg.vae_lr, "autoencoder", progress,
                      stop=stop)
    vae.eval().requires_grad_(False)
    with torch.inference_mode():
        means = torch.cat([vae.encode(pixels[s:s + 512]).latent_dist.mean for s in range(0, len(pixels), 512)])
    scaling = float(1 / means.std())
    vae.register_to_config(scaling_factor=scaling)
    latents = means * scaling
    seconds = {"autoencoder": time.perf_counter() - start}

    start = time.perf_counter()
    ema = [copy.deepcopy(m).eval().requires_grad_(False) for m in (unet, text)]
    params = [p for m in (unet, text) for p in m.parameters()]
    abar = torch.tensor(_alphas_cumprod(), dtype=torch.float32)
    captions = _Captions(data.items, tokenizer, cfg.seed, cfg.caption_dropout)

    def unet_loss(step: int) -> torch.Tensor:
        idx = torch.randint(len(latents), (cfg.unet_batch,), generator=g)
        t = torch.randint(len(abar), (cfg.unet_batch,), generator=g)
        noise = torch.randn((cfg.unet_batch, *latents.shape[1:]), generator=g)
        a = abar[t].view(-1, 1, 1, 1)
        z_t = a.sqrt() * latents[idx] + (1 - a).sqrt() * noise
        states = text(captions(idx)).last_hidden_state
        return F.mse_loss(unet(z_t, t, encoder_hidden_states=states).sample, noise)

    def update_ema(step: int) -> None:
        decay = min(cfg.ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for model, avg in zip((unet, text), ema):
                for p_avg, p in zip(avg.parameters(), model.parameters()):
                    p_avg.lerp_(p, 1 - decay)

    unet_losses = _fit(params, unet_loss, cfg.unet_steps, cfg.unet_lr, "UNet + text encoder", progress, update_ema,
                       stop=stop)
    arch.save_folder(out, ema[0], vae, ema[1], tokenizer)
    seconds["unet"] = time.perf_counter() - start
    return {"seconds": seconds, "scaling_factor": scaling, "losses": {"autoencoder": vae_losses, "unet": unet_losses}}


def _train_clip(clip: Any, tokenizer: Any, data: world.MiniatureSet, out: Path, cfg: MiniatureConfig,
                progress: bool, stop: threading.Event) -> dict[str, Any]:
    """CLIP's recipe in small: symmetric InfoNCE over batches of distinct images, on the same images and captions."""
    g = torch.Generator().manual_seed(cfg.seed + 1)
    start = time.perf_counter()
    processor = arch.make_clip_processor(tokenizer)
    mean = torch.tensor(processor.image_processor.image_mean).view(1, 3, 1, 1)
    std = torch.tensor(processor.image_processor.image_std).view(1, 3, 1, 1)
    pixels = (data.images.float() / 255 - mean) / std  # what the processor gives for a 32x32 image
    captions = _Captions(data.items, tokenizer, cfg.seed + 1)

    def clip_loss(step: int) -> torch.Tensor:
        idx = torch.randperm(len(pixels), generator=g)[:cfg.clip_batch]
        return clip(input_ids=captions(idx), pixel_values=pixels[idx], return_loss=True).loss

    losses = _fit(list(clip.parameters()), clip_loss, cfg.clip_steps, cfg.clip_lr, "CLIP", progress, stop=stop,
                  position=1)
    clip.eval().save_pretrained(out)
    processor.save_pretrained(out)
    return {"seconds": time.perf_counter() - start, "losses": losses}


def _alphas_cumprod() -> list[float]:
    from diffusers import DDPMScheduler

    return DDPMScheduler(**arch.SCHEDULER_CONFIG).alphas_cumprod.tolist()


def miniature_path(config: MiniatureConfig = MINIATURE_CONFIG, root: str | Path | None = None) -> Path:
    """Where miniature_models keeps the models for these settings (it may not exist yet)."""
    key = hashlib.sha256(json.dumps({**asdict(config), "format": FORMAT}, sort_keys=True).encode()).hexdigest()
    return (Path(root).expanduser() if root is not None else cache_dir()) / f"miniature-{key[:12]}"


def miniature_models(config: MiniatureConfig = MINIATURE_CONFIG, root: str | Path | None = None,
                     progress: bool = True) -> Path:
    """The folder holding sd/ and clip/ for these settings, trained (train_miniature) only if not already there.

    Written into a temporary folder and renamed into place when complete: an interrupted run leaves nothing that a
    later call could take for finished models."""
    return build_once(miniature_path(config, root), DONE_FILE, lambda tmp: train_miniature(tmp, config, progress))
