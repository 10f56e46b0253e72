"""Noise schedules (DDPM / Stable Diffusion) and the timestep weights of the diffusion ELBO."""
from __future__ import annotations

import math

import torch

__all__ = ["beta_schedule", "alphas_cumprod_from_betas", "timestep_weights", "SCHEDULES", "WEIGHTINGS"]

SCHEDULES = ("linear", "scaled_linear", "cosine")
WEIGHTINGS = ("uniform", "vlb", "clark_jaini")


def beta_schedule(
    name: str = "linear",
    num_train_timesteps: int = 1000,
    beta_start: float | None = None,
    beta_end: float | None = None,
) -> torch.Tensor:
    """Betas (T,) in float64: DDPM's `linear` (Ho et al. 2020), SD's `scaled_linear`, or `cosine` (Nichol & Dhariwal)."""
    if num_train_timesteps < 2:
        raise ValueError(f"num_train_timesteps must be at least 2, got {num_train_timesteps}.")
    T = num_train_timesteps
    if name == "linear":  # DDPM: beta_1 = 1e-4 ... beta_T = 0.02
        return torch.linspace(beta_start or 1e-4, beta_end or 0.02, T, dtype=torch.float64)
    if name == "scaled_linear":  # Stable Diffusion 1.x/2.x: linear in sqrt(beta), 0.00085 ... 0.012
        b0, b1 = beta_start or 0.00085, beta_end or 0.012
        return torch.linspace(b0**0.5, b1**0.5, T, dtype=torch.float64) ** 2
    if name == "cosine":  # Improved DDPM eq. 17, betas clipped at 0.999
        s = 0.008
        f = lambda t: math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
        return torch.tensor([min(1 - f(i + 1) / f(i), 0.999) for i in range(T)], dtype=torch.float64)
    raise ValueError(f"Unknown beta schedule {name!r}; choose one of {SCHEDULES}.")


def alphas_cumprod_from_betas(betas: torch.Tensor) -> torch.Tensor:
    """alpha-bar_t = prod_{s<=t} (1 - beta_s), DDPM eq. 4 notation; index 0 is t = 1."""
    return torch.cumprod(1.0 - betas.double(), dim=0)


def timestep_weights(alphas_cumprod: torch.Tensor, weighting: str = "uniform") -> torch.Tensor:
    """Weights w_t (T,) for sum_t w_t ||eps - eps_hat||^2: `uniform` (Li et al., w_t = 1), `vlb` (DDPM bound) or
    `clark_jaini` (Clark & Jaini 2023: w_t = exp(-7 t) on the x-prediction error, t in (0, 1]; since
    x - x_hat = sqrt((1 - abar_t) / abar_t) (eps_hat - eps), that is exp(-7 t) (1 - abar_t) / abar_t on eps errors).

    `vlb` is the discrete ELBO term L_{t-1} = beta_t^2 / (2 sigma_t^2 alpha_t (1 - abar_t)) ||eps - eps_hat||^2
    (Ho et al. 2020, eq. 12) with sigma_t^2 = posterior variance beta-tilde_t, which simplifies to
    (SNR(t-1) / SNR(t) - 1) / 2.  At t = 1 beta-tilde vanishes, so sigma_1^2 = beta_1 is used (w_1 = 1 / (2 alpha_1)),
    which stands in for the reconstruction term L_0.
    """
    if not isinstance(weighting, str) or weighting not in WEIGHTINGS:
        raise ValueError(f"Unknown timestep weighting {weighting!r}; choose one of {WEIGHTINGS}.")
    abar = alphas_cumprod.double()
    if weighting == "uniform":
        return torch.ones_like(abar)
    if weighting == "clark_jaini":
        t = torch.arange(1, len(abar) + 1, dtype=torch.float64) / len(abar)
        return torch.exp(-7 * t) * (1 - abar) / abar
    alphas = torch.cat([abar[:1], abar[1:] / abar[:-1]])
    betas = 1.0 - alphas
    w = torch.empty_like(abar)
    w[0] = 1.0 / (2.0 * alphas[0])
    w[1:] = betas[1:] / (2.0 * alphas[1:] * (1.0 - abar[:-1]))
    return w
