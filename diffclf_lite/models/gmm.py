"""An analytic Gaussian-mixture model behind the EpsModel contract: exact denoiser, exact log p(x | c)."""
from __future__ import annotations

import math

import torch

from ..engine import alphas_cumprod_from_betas, beta_schedule
from ..engine.checks import class_labels

__all__ = ["GaussianMixture"]


class GaussianMixture:
    """Class c has density sum_k pi_ck N(mu_ck, diag(var_ck)) in R^D; conditions are the classes.

    means: (C, D) for one component per class, or (C, K, D).
    variances: a scalar (shared isotropic), (C,) per-class isotropic, (C, K) per-component isotropic
      (or (C, D) per-class diagonal when `means` is (C, D)), or (C, K, D) diagonal.
    weights: (C, K) mixing weights pi_ck, each row normalised; uniform when omitted.
    The schedule is any DDPM / Stable Diffusion beta schedule, or explicit `alphas_cumprod`.
    """

    def __init__(
        self,
        means: torch.Tensor,
        variances: torch.Tensor | float = 1.0,
        weights: torch.Tensor | None = None,
        schedule: str = "linear",
        num_train_timesteps: int = 1000,
        alphas_cumprod: torch.Tensor | None = None,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float64,
    ) -> None:
        self.device, self.dtype = torch.device(device), dtype
        means = torch.as_tensor(means, dtype=dtype)
        one_component = means.ndim == 2
        if one_component:
            means = means[:, None, :]
        if means.ndim != 3 or means.shape[0] < 1 or means.shape[2] < 1:
            raise ValueError(f"means must have shape (C, D) or (C, K, D), got {tuple(means.shape)}.")
        C, K, D = means.shape
        var = torch.as_tensor(variances, dtype=dtype)
        if var.ndim == 1:
            var = var[:, None, None]  # (C,) per-class isotropic
        elif var.ndim == 2:
            var = var[:, None, :] if one_component else var[:, :, None]
        try:
            var = torch.broadcast_to(var, (C, K, D)).clone()
        except RuntimeError:
            raise ValueError(
                f"variances of shape {tuple(torch.as_tensor(variances).shape)} do not fit means of shape "
                f"{(C, D) if one_component else (C, K, D)}: use a scalar, (C,), (C, K) or (C, K, D)."
            ) from None
        if not bool((var > 0).all()):
            raise ValueError("variances must all be positive.")
        w = torch.full((C, K), 1.0 / K, dtype=dtype) if weights is None else torch.as_tensor(weights, dtype=dtype)
        if w.shape != (C, K) or not bool((w >= 0).all()) or not bool((w.sum(1) > 0).all()):
            raise ValueError(f"weights must be non-negative with shape (C, K) = {(C, K)} and no all-zero row.")
        w = w / w.sum(1, keepdim=True)
        if alphas_cumprod is None:
            alphas_cumprod = alphas_cumprod_from_betas(beta_schedule(schedule, num_train_timesteps))
        self.means = means.to(self.device)  # (C, K, D)
        self.variances = var.to(self.device)  # (C, K, D)
        self.log_weights = w.log().to(self.device)  # (C, K)
        self.alphas_cumprod = torch.as_tensor(alphas_cumprod, dtype=dtype).to(self.device)  # (T,)
        self.num_conditions, self.num_components, self.dim = C, K, D

    @classmethod
    def random(
        cls,
        num_classes: int,
        dim: int,
        components: int = 1,
        separation: float = 2.0,
        variance: float = 1.0,
        class_specific_variance: bool = False,
        seed: int = 0,
        **kwargs,
    ) -> "GaussianMixture":
        """A reproducible random mixture: means ~ N(0, separation^2 I); with `class_specific_variance`, each
        class gets its own isotropic variance, log-uniform in [variance / 4, variance * 4]."""
        g = torch.Generator().manual_seed(seed)
        means = separation * torch.randn(num_classes, components, dim, generator=g, dtype=torch.float64)
        if class_specific_variance:
            var = variance * 4.0 ** (2 * torch.rand(num_classes, generator=g, dtype=torch.float64) - 1)
        else:
            var = torch.tensor(variance, dtype=torch.float64)
        return cls(means, var, **kwargs)

    # -- the EpsModel contract -------------------------------------------------------------------------------
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """The mixture lives in data space: x0 is the points themselves, (N, D)."""
        x = torch.as_tensor(images, dtype=self.dtype, device=self.device)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"expected points of shape (N, {self.dim}), got {tuple(x.shape)}.")
        return x

    def eps(self, x_t: torch.Tensor, t: torch.Tensor, cond_index: torch.Tensor) -> torch.Tensor:
        """Exact eps*(x_t, t, c) = E[eps | x_t, c] = sum_k r_k sqrt(1 - abar) (x_t - sqrt(abar) mu_k) / s_k^2."""
        abar = self.alphas_cumprod[t].to(x_t.dtype)[:, None, None]  # (B, 1, 1)
        mu, var = self.means[cond_index].to(x_t.dtype), self.variances[cond_index].to(x_t.dtype)  # (B, K, D)
        s2 = abar * var + (1 - abar)  # (B, K, D): variance of x_t given component k
        diff = x_t[:, None, :] - abar.sqrt() * mu  # (B, K, D)
        logits = self.log_weights[cond_index].to(x_t.dtype) - 0.5 * (diff**2 / s2 + s2.log()).sum(-1)  # (B, K)
        resp = torch.softmax(logits, dim=-1)[:, :, None]  # (B, K, 1): posterior over components
        return (resp * (1 - abar).sqrt() * diff / s2).sum(1)  # (B, D)

    # -- exact answers ---------------------------------------------------------------------------------------
    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Exact log p(x | c) for every class, (N, C)."""
        x = self.encode(x)[:, None, None, :]  # (N, 1, 1, D)
        log_n = -0.5 * ((x - self.means) ** 2 / self.variances + self.variances.log() + math.log(2 * math.pi)).sum(-1)
        return torch.logsumexp(self.log_weights + log_n, dim=-1)  # (N, C)

    def bayes_posterior(self, x: torch.Tensor, prior: torch.Tensor | None = None) -> torch.Tensor:
        """Exact p(c | x) under `prior` (uniform by default), (N, C)."""
        logp = self.log_prob(x)
        if prior is not None:
            logp = logp + torch.as_tensor(prior, dtype=logp.dtype, device=logp.device).log()
        return torch.softmax(logp, dim=-1)

    def expected_accuracy(self, x: torch.Tensor, prediction: torch.Tensor) -> float:
        """The exact probability that `prediction` (N,) is the true class, averaged over the points x: accuracy
        without the noise of sampled labels (uniform prior)."""
        posterior = self.bayes_posterior(x).double()
        prediction = class_labels(prediction, self.num_conditions, len(posterior), name="prediction")
        return posterior.gather(1, prediction.to(posterior.device)[:, None]).mean().item()

    def expected_error(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Exact expectation of the engine's l2 loss, E_eps ||eps - eps*_c(x_t)||^2 / D, at timesteps t (S,),
        for one component per class: (N, S, C).

        With s^2 = abar var + 1 - abar:  mean_d (abar var_d / s_d^2)^2 + abar (1 - abar) (x_d - mu_d)^2 / s_d^4.
        """
        if self.num_components != 1:
            raise ValueError("expected_error has a closed form only for one component per class.")
        x = self.encode(x)[:, None, None, :]  # (N, 1, 1, D)
        abar = self.alphas_cumprod[torch.as_tensor(t, device=self.device)][None, :, None, None]  # (1, S, 1, 1)
        mu, var = self.means[:, 0][None, None], self.variances[:, 0][None, None]  # (1, 1, C, D)
        s2 = abar * var + 1 - abar
        return ((abar * var / s2) ** 2 + abar * (1 - abar) * (x - mu) ** 2 / s2**2).mean(-1)

    def sample(self, n_per_class: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw n_per_class points from every class: points (C * n, D) and labels (C * n,), seeded."""
        if n_per_class < 1:
            raise ValueError(f"n_per_class must be at least 1, got {n_per_class}.")
        g = torch.Generator().manual_seed(seed)
        C, K, D = self.means.shape
        labels = torch.arange(C).repeat_interleave(n_per_class)
        comp = torch.multinomial(self.log_weights.exp().cpu()[labels], 1, generator=g)[:, 0]
        z = torch.randn(len(labels), D, generator=g, dtype=self.dtype)
        mu, var = self.means.cpu()[labels, comp], self.variances.cpu()[labels, comp]
        return (mu + var.sqrt() * z).to(self.device), labels.to(self.device)
