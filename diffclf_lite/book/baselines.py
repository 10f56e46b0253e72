"""A discriminative baseline for chapter 3: a small CNN trained with cross-entropy on the same images and labels.

Li et al. Table 4 compare the diffusion classifier with ResNets of similar size trained discriminatively; this is
the miniature: a CNN with about as many parameters as the digits UNet, trained with the same optimizer, batch
size and number of steps.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SmallCNN", "train_cnn", "CNNResult", "predict"]


class SmallCNN(nn.Module):
    """conv-conv-pool-conv-conv-pool-MLP with GroupNorm; width 40 gives ~1.2M parameters at 16x16."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, resolution: int = 16, width: int = 40,
                 dropout: float = 0.3) -> None:
        super().__init__()
        if resolution % 4:
            raise ValueError(f"resolution must be a multiple of 4 (two 2x poolings), got {resolution}.")
        w = width

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(8, cout), nn.SiLU())

        self.features = nn.Sequential(block(in_channels, w), block(w, 2 * w), nn.MaxPool2d(2),
                                      block(2 * w, 4 * w), block(4 * w, 4 * w), nn.MaxPool2d(2))
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(4 * w * (resolution // 4) ** 2, 8 * w),
                                  nn.SiLU(), nn.Dropout(dropout), nn.Linear(8 * w, num_classes))
        self.in_channels, self.resolution = in_channels, resolution

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))  # (N, num_classes) logits


@dataclass
class CNNResult:
    model: SmallCNN  # eval mode
    losses: list[float]
    seconds: float


def train_cnn(images: torch.Tensor, labels: torch.Tensor, steps: int = 1000, batch_size: int = 128,
              lr: float = 2e-3, weight_decay: float = 0.05, seed: int = 0, width: int = 40, num_classes: int | None = None,
              device: str | torch.device = "cpu", progress: bool = True) -> CNNResult:
    """Cross-entropy training with AdamW (linear warm-up, cosine decay), batches drawn by a seeded CPU generator."""
    from tqdm.auto import tqdm

    x, y = torch.as_tensor(images, dtype=torch.float32), torch.as_tensor(labels, dtype=torch.long)
    if x.ndim != 4 or len(x) != len(y) or len(x) == 0:
        raise ValueError(f"need images (N, C, H, W) and labels (N,), got {tuple(x.shape)} and {tuple(y.shape)}.")
    num_classes = int(y.max()) + 1 if num_classes is None else num_classes
    if y.min() < 0 or y.max() >= num_classes:
        raise ValueError(f"labels must lie in [0, {num_classes}), got [{int(y.min())}, {int(y.max())}].")
    torch.manual_seed(seed)
    device = torch.device(device)
    model = SmallCNN(x.shape[1], num_classes, x.shape[-1], width).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    warmup = min(100, steps // 10 + 1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup) * (
        0.1 + 0.45 * (1 + torch.cos(torch.tensor(torch.pi * s / steps)).item())))
    g = torch.Generator().manual_seed(seed)
    x, y = x.to(device), y.to(device)
    losses: list[float] = []
    start = time.perf_counter()
    for _ in tqdm(range(steps), desc="training CNN", disable=not progress, mininterval=1.0):
        idx = torch.randint(len(x), (batch_size,), generator=g).to(device)
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    return CNNResult(model.eval(), losses, time.perf_counter() - start)


@torch.no_grad()
def predict(model: SmallCNN, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Predicted labels (N,) of images (N, C, H, W) in [-1, 1]."""
    x = torch.as_tensor(images, dtype=torch.float32)
    if x.ndim != 4 or x.shape[1] != model.in_channels or x.shape[-1] != model.resolution:
        raise ValueError(f"expected images (N, {model.in_channels}, {model.resolution}, {model.resolution}), "
                         f"got {tuple(x.shape)}.")
    dev = next(model.parameters()).device
    return torch.cat([model(x[i : i + batch_size].to(dev)).argmax(1).cpu() for i in range(0, len(x), batch_size)])
