"""Train a small class-conditional DDPM (Ho et al. 2020, Alg. 1) with diffusers' UNet2DModel (chapter 3's model).

Checkpoint folder layout (what `diffclf_lite.models.classcond.ClassConditionalUNet.from_pretrained` reads):
`config.json` + `diffusion_pytorch_model.safetensors` (the EMA UNet, `save_pretrained`), `scheduler_config.json`
(the DDPMScheduler whose alphas_cumprod the UNet was trained with) and `training.json` (these settings).
"""
from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["TrainConfig", "MODEL_PRESETS", "make_unet", "make_scheduler", "train", "TrainResult", "save_checkpoint"]

TRAINING_FILE = "training.json"
SCHEDULES = ("linear", "squaredcos_cap_v2")

# UNet2DModel sizes (DiT-style preset registry). Parameter counts are for 1 channel and 11 class embeddings.
MODEL_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(block_out_channels=(16, 32), down_block_types=("DownBlock2D", "DownBlock2D"),
                 up_block_types=("UpBlock2D", "UpBlock2D"), layers_per_block=1, norm_num_groups=8),  # ~0.16M
    "digits": dict(block_out_channels=(16, 32, 64, 64), layers_per_block=1, norm_num_groups=8,  # ~1.1M params
                   down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
                   up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D"), attention_head_dim=32),
    "cifar10": dict(block_out_channels=(32, 64, 128, 256), layers_per_block=2, norm_num_groups=32,  # ~16M params
                    down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
                    up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D"), attention_head_dim=32),
}


@dataclass
class TrainConfig:
    """Training settings; saved next to the weights as training.json."""

    steps: int = 600  # optimizer steps
    batch_size: int = 128
    lr: float = 2e-3  # AdamW peak learning rate (linear warm-up, then cosine decay to 10%)
    warmup_steps: int = 100
    weight_decay: float = 0.0
    ema_decay: float = 0.995  # EMA of the weights, the model that is saved
    schedule: str = "linear"  # DDPMScheduler beta_schedule: "linear" (DDPM) or "squaredcos_cap_v2" (cosine)
    num_train_timesteps: int = 1000
    label_dropout: float = 0.1  # P(label -> null class) for classifier-free guidance; 0 disables the null class
    preset: str = "digits"
    seed: int = 0
    mixed_precision: str | None = None  # "fp16" or "bf16": autocast on CUDA (fp16 with a GradScaler); ignored on CPU
    extra: dict[str, Any] = field(default_factory=dict)  # free-form notes (data set, split, ...)

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}.")
        if self.preset not in MODEL_PRESETS:
            raise ValueError(f"preset must be one of {sorted(MODEL_PRESETS)}, got {self.preset!r}.")
        if self.mixed_precision not in (None, "fp16", "bf16"):
            raise ValueError(f"mixed_precision must be None, 'fp16' or 'bf16', got {self.mixed_precision!r}.")
        if self.steps < 1 or self.batch_size < 1 or not 0 <= self.label_dropout < 1 or not 0 <= self.ema_decay < 1:
            raise ValueError(f"need steps >= 1, batch_size >= 1, 0 <= label_dropout < 1, 0 <= ema_decay < 1: {self}.")


def make_unet(preset: str, num_classes: int, sample_size: int, in_channels: int = 1, null_class: bool = True,
              seed: int = 0) -> Any:
    """A UNet2DModel with a class embedding table (num_classes + 1 rows when a null class for guidance is reserved)."""
    from diffusers import UNet2DModel  # lazy: diffusers is an extra

    if preset not in MODEL_PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(MODEL_PRESETS)}.")
    torch.manual_seed(seed)
    return UNet2DModel(sample_size=sample_size, in_channels=in_channels, out_channels=in_channels,
                       class_embed_type=None, num_class_embeds=num_classes + int(null_class), **MODEL_PRESETS[preset])


def make_scheduler(schedule: str = "linear", num_train_timesteps: int = 1000) -> Any:
    """The DDPMScheduler that defines alphas_cumprod for training, classification and sampling alike."""
    from diffusers import DDPMScheduler

    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}.")
    return DDPMScheduler(num_train_timesteps=num_train_timesteps, beta_schedule=schedule, prediction_type="epsilon")


@dataclass
class TrainResult:
    model: Any  # the EMA UNet2DModel (eval mode): the one to classify and sample with
    losses: list[float]  # per-step training loss (of the raw weights)
    seconds: float
    config: TrainConfig
    num_classes: int


def _lr_at(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + torch.cos(torch.tensor(progress * torch.pi)).item()))


def train(images: torch.Tensor, labels: torch.Tensor, config: TrainConfig, num_classes: int | None = None,
          device: str | torch.device = "cpu", progress: bool = True) -> TrainResult:
    """DDPM training (Ho et al. Alg. 1): t ~ U{0..T-1}, eps ~ N(0, I), minimise ||eps - eps_theta(x_t, t, y)||^2.

    images (N, C, H, W) in [-1, 1], labels (N,) in [0, num_classes). All randomness comes from one CPU generator
    seeded with config.seed, so two runs on the CPU give identical weights.
    """
    from tqdm.auto import tqdm

    images, labels = torch.as_tensor(images, dtype=torch.float32), torch.as_tensor(labels, dtype=torch.long)
    if images.ndim != 4 or images.shape[-1] != images.shape[-2] or len(images) != len(labels) or len(images) == 0:
        raise ValueError(f"need square images (N, C, H, W) and labels (N,), got {tuple(images.shape)} and "
                         f"{tuple(labels.shape)}.")
    if images.min() < -1.001 or images.max() > 1.001:
        raise ValueError("training images must be scaled to [-1, 1] (x * 2 - 1 for images in [0, 1]).")
    num_classes = int(labels.max()) + 1 if num_classes is None else int(num_classes)
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"labels must lie in [0, {num_classes}), got [{int(labels.min())}, {int(labels.max())}].")
    device = torch.device(device)
    cfg, null = config, num_classes  # the null class is the extra last embedding row
    unet = make_unet(cfg.preset, num_classes, images.shape[-1], images.shape[1], cfg.label_dropout > 0, cfg.seed)
    unet.to(device).train()
    ema = copy.deepcopy(unet).eval().requires_grad_(False)
    abar = make_scheduler(cfg.schedule, cfg.num_train_timesteps).alphas_cumprod.to(device)
    opt = torch.optim.AdamW(unet.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    g = torch.Generator().manual_seed(cfg.seed)
    data, targets = images.to(device), labels.to(device)
    amp = cfg.mixed_precision is not None and device.type == "cuda"
    amp_dtype = torch.float16 if cfg.mixed_precision == "fp16" else torch.bfloat16
    scaler = torch.amp.GradScaler("cuda", enabled=amp and amp_dtype == torch.float16)
    losses: list[float] = []
    start = time.perf_counter()
    bar = tqdm(range(cfg.steps), desc="training", disable=not progress, mininterval=1.0)
    for step in bar:
        idx = torch.randint(len(data), (cfg.batch_size,), generator=g)
        t = torch.randint(cfg.num_train_timesteps, (cfg.batch_size,), generator=g)
        noise = torch.randn((cfg.batch_size, *data.shape[1:]), generator=g)
        drop = torch.rand(cfg.batch_size, generator=g) < cfg.label_dropout
        x0, y = data[idx.to(device)], targets[idx.to(device)].masked_fill(drop.to(device), null)
        t, noise = t.to(device), noise.to(device)
        a = abar[t].view(-1, 1, 1, 1)
        x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise  # (B, C, H, W), DDPM eq. 4
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp):
            loss = F.mse_loss(unet(x_t, t, class_labels=y).sample.float(), noise)
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, cfg)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        scaler.step(opt)
        scaler.update()
        with torch.no_grad():
            decay = min(cfg.ema_decay, (1 + step) / (10 + step))  # short warm-up of the EMA
            for p_ema, p in zip(ema.parameters(), unet.parameters()):
                p_ema.lerp_(p, 1 - decay)
        losses.append(loss.item())
        if step % 25 == 0 or step == cfg.steps - 1:
            bar.set_postfix(loss=f"{sum(losses[-25:]) / len(losses[-25:]):.4f}")
    return TrainResult(ema, losses, time.perf_counter() - start, cfg, num_classes)


def save_checkpoint(out_dir: str | Path, result: TrainResult) -> Path:
    """Write the EMA UNet (safetensors + config.json), its DDPMScheduler config and training.json into out_dir."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = result.config
    result.model.save_pretrained(out, safe_serialization=True)
    make_scheduler(cfg.schedule, cfg.num_train_timesteps).save_pretrained(out)
    info = {"config": asdict(cfg), "num_classes": result.num_classes,
            "null_class": result.num_classes if cfg.label_dropout > 0 else None,
            "final_loss": sum(result.losses[-50:]) / len(result.losses[-50:]), "seconds": result.seconds,
            "losses": result.losses}
    (out / TRAINING_FILE).write_text(json.dumps(info, indent=2), encoding="utf-8")
    return out
