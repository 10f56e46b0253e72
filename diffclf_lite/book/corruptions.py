"""Image corruptions at graded strengths, deterministic under a seed (in the spirit of ImageNet-C, Hendrycks &
Dietterich 2019), for chapter 3's miniature of Li et al.'s effective-robustness result (Table 4, ImageNet-A).

Every function takes images (N, C, H, W) in [-1, 1] and returns a new tensor of the same shape.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

__all__ = ["gaussian_noise", "gaussian_blur", "shift", "rotate", "occlude", "CORRUPTIONS", "corrupt"]


def _check(x: torch.Tensor) -> torch.Tensor:
    x = torch.as_tensor(x)
    if x.ndim != 4 or not x.is_floating_point():
        raise ValueError(f"corruptions take float images (N, C, H, W) in [-1, 1], got {x.dtype} {tuple(x.shape)}.")
    return x


def gaussian_noise(x: torch.Tensor, std: float, seed: int = 0) -> torch.Tensor:
    """clip(x + std * z, -1, 1), z ~ N(0, I): additive noise on the [-1, 1] scale, clipped like a real image."""
    x = _check(x)
    z = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float32)
    return (x + std * z.to(x)).clamp(-1, 1)


def gaussian_blur(x: torch.Tensor, sigma: float, seed: int = 0) -> torch.Tensor:
    """Separable Gaussian blur of std `sigma` pixels, kernel radius ceil(3 sigma), reflect padding (seed unused)."""
    x = _check(x)
    if sigma <= 0:
        return x.clone()
    r = min(math.ceil(3 * sigma), min(x.shape[-2:]) - 1)
    k = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=torch.float64) / sigma) ** 2)
    k = (k / k.sum()).to(x)
    C = x.shape[1]
    out = F.conv2d(F.pad(x, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1).expand(C, 1, 1, -1), groups=C)
    return F.conv2d(F.pad(out, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1).expand(C, 1, -1, 1), groups=C)


def _affine(x: torch.Tensor, angle: torch.Tensor, tx: torch.Tensor, ty: torch.Tensor) -> torch.Tensor:
    """Rotate by `angle` (radians) about the centre and translate by (tx, ty) pixels; border pixels extend."""
    N, _, H, W = x.shape
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.zeros(N, 2, 3, dtype=x.dtype)
    theta[:, 0, 0], theta[:, 0, 1], theta[:, 1, 0], theta[:, 1, 1] = cos, -sin, sin, cos
    theta[:, 0, 2], theta[:, 1, 2] = -2 * tx / W, -2 * ty / H  # output pixel p samples input p - shift
    grid = F.affine_grid(theta.to(x.device), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def shift(x: torch.Tensor, pixels: float, seed: int = 0) -> torch.Tensor:
    """Translate each image by `pixels` in a random direction (angle uniform), border pixels extend."""
    x = _check(x)
    phi = torch.rand(len(x), generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 2 * math.pi
    return _affine(x, torch.zeros(len(x)), pixels * torch.cos(phi), pixels * torch.sin(phi))


def rotate(x: torch.Tensor, degrees: float, seed: int = 0) -> torch.Tensor:
    """Rotate each image by +-`degrees` (random sign) about its centre, border pixels extend."""
    x = _check(x)
    sign = torch.randint(2, (len(x),), generator=torch.Generator().manual_seed(seed)) * 2 - 1
    z = torch.zeros(len(x))
    return _affine(x, sign * math.radians(degrees), z, z)


def occlude(x: torch.Tensor, fraction: float, seed: int = 0, value: float = 0.0) -> torch.Tensor:
    """Paint a square of side round(fraction * H) at a random position with `value` (0 = mid grey on [-1, 1])."""
    x = _check(x).clone()
    N, _, H, W = x.shape
    s = round(fraction * H)
    if not 0 <= s <= min(H, W):
        raise ValueError(f"fraction must lie in [0, 1], got {fraction}.")
    g = torch.Generator().manual_seed(seed)
    top, left = torch.randint(H - s + 1, (N,), generator=g), torch.randint(W - s + 1, (N,), generator=g)
    for i in range(N):
        x[i, :, top[i] : top[i] + s, left[i] : left[i] + s] = value
    return x


# name -> (function, strengths from mild to severe, unit) for 16x16 digits; the notebook may pass others.
CORRUPTIONS: dict[str, tuple[Callable[..., torch.Tensor], tuple[float, ...], str]] = {
    "gaussian_noise": (gaussian_noise, (0.2, 0.4, 0.8), "std on [-1, 1]"),
    "gaussian_blur": (gaussian_blur, (0.5, 1.0, 1.5), "sigma, pixels"),
    "shift": (shift, (1.0, 2.0, 3.0), "pixels"),
    "rotate": (rotate, (10.0, 20.0, 30.0), "degrees"),
    "occlude": (occlude, (0.25, 0.375, 0.5), "fraction of the side"),
}


def corrupt(x: torch.Tensor, name: str, strength: float, seed: int = 0) -> torch.Tensor:
    """Apply corruption `name` (a key of CORRUPTIONS) at `strength`; the same seed gives the same images."""
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; choose one of {sorted(CORRUPTIONS)}.")
    return CORRUPTIONS[name][0](x, strength, seed=seed)
