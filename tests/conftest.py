"""Test models that follow the EpsModel contract with errors we know in advance."""
from __future__ import annotations

import torch
from torch import nn

from diffclf_lite import alphas_cumprod_from_betas, beta_schedule


class KnownErrorModel:
    """Recovers the true noise of its one reference image and adds offset[t, c]: the l2 error is offset[t, c]^2."""

    def __init__(self, x_ref: torch.Tensor, offsets: torch.Tensor, num_train_timesteps: int = 1000) -> None:
        self.alphas_cumprod = alphas_cumprod_from_betas(beta_schedule("linear", num_train_timesteps))
        self.x_ref, self.offsets = x_ref.double(), offsets.double()  # (D,), (T, C)
        self.num_conditions, self.device = offsets.shape[1], torch.device("cpu")
        self.calls = 0

    def encode(self, images):
        return torch.as_tensor(images, dtype=torch.float64)

    def eps(self, x_t, t, cond_index):
        self.calls += len(t)
        abar = self.alphas_cumprod[t][:, None]
        true_eps = (x_t - abar.sqrt() * self.x_ref) / (1 - abar).sqrt()
        return true_eps + self.offsets[t, cond_index][:, None]


class TinyConvEps(nn.Module):
    """A small class-conditional conv net on (N, 1, 8, 8) images, in float32: a neural model for engine tests."""

    def __init__(self, num_classes: int = 3, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.embed = nn.Embedding(num_classes, 8)
        self.conv1, self.conv2 = nn.Conv2d(1, 8, 3, padding=1), nn.Conv2d(8, 1, 3, padding=1)
        self.alphas_cumprod = alphas_cumprod_from_betas(beta_schedule("scaled_linear", 1000)).float()
        self.num_conditions, self.device = num_classes, torch.device("cpu")
        self.eval()

    def encode(self, images):
        return torch.as_tensor(images, dtype=torch.float32)

    def eps(self, x_t, t, cond_index):
        h = self.conv1(x_t) + self.embed(cond_index)[:, :, None, None] + (t.float() / 1000)[:, None, None, None]
        return self.conv2(torch.nn.functional.silu(h))
