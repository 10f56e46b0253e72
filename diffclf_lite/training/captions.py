"""Training on the CPU, on the same captioned scenes: the caption-conditional diffusion model (DDPM, Ho et al.
Alg. 1, text encoder trained jointly) and the contrastive model (CLIP's symmetric InfoNCE)."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

from ..models.captioned import (CaptionDiffusion, ContrastiveModel, build_tokenizer, make_text_encoder, make_text_unet,
                                tokenize)
from .ddpm import _lr_at, make_scheduler

__all__ = ["BindingConfig", "BindingRun", "train_caption_diffusion", "train_contrastive"]


@dataclass
class BindingConfig:
    """One config for both models (nanoGPT style); the defaults are the chapter's cpu preset."""

    steps: int = 600
    batch_size: int = 64
    lr: float = 1e-3
    warmup_steps: int = 50
    weight_decay: float = 0.0
    seed: int = 0
    preset: str = "small"  # UNet2DConditionModel size (models.captioned.UNET_PRESETS)
    text_width: int = 64
    text_layers: int = 2
    schedule: str = "linear"  # DDPM beta schedule

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 2 or self.lr <= 0:
            raise ValueError(f"need steps >= 1, batch_size >= 2 and lr > 0, got {self.steps}, {self.batch_size}, "
                             f"{self.lr}.")


@dataclass
class BindingRun:
    model: Any  # CaptionDiffusion or ContrastiveModel, in eval mode
    losses: list[float]  # per-step training loss
    seconds: float
    parameters: int  # trainable parameters, text encoder included


def _check_data(images: torch.Tensor, captions: Sequence[str]) -> torch.Tensor:
    x = torch.as_tensor(images)
    if x.ndim != 4 or x.shape[1] != 3 or len(x) != len(captions) or len(x) < 2:
        raise ValueError(f"need at least 2 RGB images (N, 3, H, W) and one caption each, got {tuple(x.shape)} and "
                         f"{len(captions)} captions.")
    return x.float() / 127.5 - 1 if x.dtype == torch.uint8 else x.float()  # [-1, 1]


def _fit(params: list[torch.nn.Parameter], step_loss: Callable[[torch.Generator], torch.Tensor], cfg: BindingConfig,
         desc: str, progress: bool) -> tuple[list[float], float]:
    """AdamW with warm-up and cosine decay, gradient clipping at 1; all randomness from one seeded CPU generator."""
    from tqdm.auto import tqdm

    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    g = torch.Generator().manual_seed(cfg.seed)
    losses: list[float] = []
    start = time.perf_counter()
    for step in tqdm(range(cfg.steps), desc=desc, disable=not progress, mininterval=1.0):
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, cfg)
        loss = step_loss(g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        losses.append(loss.item())
    return losses, time.perf_counter() - start


def train_caption_diffusion(images: torch.Tensor, captions: Sequence[str], cfg: BindingConfig,
                            device: str | torch.device = "cpu", progress: bool = True) -> BindingRun:
    """DDPM on pixels, eps_theta(x_t, t, text_encoder(caption)), UNet and text encoder trained jointly."""
    device = torch.device(device)
    data = _check_data(images, captions).to(device)
    tok = build_tokenizer()
    ids = tokenize(tok, list(captions)).to(device)  # (N, L)
    text = make_text_encoder(len(tok), cfg.text_width, cfg.text_layers, cfg.seed).to(device).train()
    unet = make_text_unet(cfg.preset, data.shape[-1], cfg.text_width, cfg.seed).to(device).train()
    sched = make_scheduler(cfg.schedule)
    abar = sched.alphas_cumprod.to(device)
    params = [p for m in (unet, text) for p in m.parameters()]

    def step_loss(g: torch.Generator) -> torch.Tensor:
        idx = torch.randint(len(data), (cfg.batch_size,), generator=g).to(device)
        t = torch.randint(len(abar), (cfg.batch_size,), generator=g).to(device)
        noise = torch.randn((cfg.batch_size, *data.shape[1:]), generator=g).to(device)
        a = abar[t].view(-1, 1, 1, 1)
        x_t = a.sqrt() * data[idx] + (1 - a).sqrt() * noise  # (B, 3, H, W), DDPM eq. 4
        states = text(ids[idx]).last_hidden_state  # (B, L, D)
        return F.mse_loss(unet(x_t, t, encoder_hidden_states=states).sample, noise)

    losses, seconds = _fit(params, step_loss, cfg, "diffusion", progress)
    model = CaptionDiffusion(unet, text, tok, sched, device=device)
    return BindingRun(model, losses, seconds, sum(p.numel() for p in params))


def train_contrastive(images: torch.Tensor, captions: Sequence[str], cfg: BindingConfig,
                      device: str | torch.device = "cpu", progress: bool = True) -> BindingRun:
    """CLIP-style training: symmetric InfoNCE over batches of distinct scenes (Radford et al. 2021, Fig. 3)."""
    device = torch.device(device)
    data = _check_data(images, captions).to(device)
    tok = build_tokenizer()
    ids = tokenize(tok, list(captions)).to(device)
    if cfg.batch_size > len(data):
        raise ValueError(f"batch_size {cfg.batch_size} exceeds the {len(data)} training scenes.")
    model = ContrastiveModel(len(tok), cfg.text_width, cfg.text_layers, image_size=data.shape[-1],
                             seed=cfg.seed).to(device).train()

    def step_loss(g: torch.Generator) -> torch.Tensor:
        idx = torch.randperm(len(data), generator=g)[: cfg.batch_size].to(device)  # no repeats within a batch
        return model.loss(data[idx], ids[idx])

    losses, seconds = _fit(list(model.parameters()), step_loss, cfg, "contrastive", progress)
    return BindingRun(model.eval(), losses, seconds, sum(p.numel() for p in model.parameters()))
