"""Chapter 1 tools on Gaussian mixtures: closed-form error moments, unpaired plans, and the denoising explorer.

Not imported by `diffclf_lite/__init__.py`; matplotlib and ipywidgets are imported inside the functions that draw.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

from ..engine import evaluate_pairs, make_plan, timestep_weights
from ..models.gmm import GaussianMixture

__all__ = [
    "DifferenceMoments", "difference_moments", "exact_weighted_error", "unpaired_mean_errors", "WithModelError",
    "DenoisingView", "denoising_view", "plot_denoising_view", "explorer",
]


def _one_component(gmm: GaussianMixture) -> None:
    if not isinstance(gmm, GaussianMixture) or gmm.num_components != 1:
        raise ValueError("closed forms need a GaussianMixture with one component per class (means of shape (C, D)).")


class DifferenceMoments(NamedTuple):
    mean: torch.Tensor  # (N, S, C) E[e_c - e_ref]
    paired: torch.Tensor  # (N, S, C) Var of one draw, the same eps for both classes
    antithetic: torch.Tensor  # (N, S, C) Var of the average over a shared antithetic pair (eps, -eps)
    independent: torch.Tensor  # (N, S, C) Var of one draw, an independent eps per class


def difference_moments(gmm: GaussianMixture, x: torch.Tensor, t: torch.Tensor, ref: torch.Tensor) -> DifferenceMoments:
    """Mean and variances of e_c - e_ref at timesteps t (l2 per dimension, the integrand of Li et al. eq. 5).

    e_c = mean_d (a_cd eps_d - b_cd)^2 with a = abar var / s^2, b = sqrt(abar (1 - abar)) (x - mu_c) / s^2, so
    paired (same eps): Var = sum_d 2 (a_r^2 - a_c^2)^2 + 4 (a_r b_r - a_c b_c)^2, over D^2 (an antithetic pair
    cancels the odd, linear part and keeps only the first term); independent eps per class:
    Var = sum_d 2 a_r^4 + 4 a_r^2 b_r^2 + 2 a_c^4 + 4 a_c^2 b_c^2, over D^2.
    """
    _one_component(gmm)
    x = gmm.encode(x)
    ref = torch.as_tensor(ref, dtype=torch.long, device=x.device)
    if ref.shape != (len(x),) or int(ref.min()) < 0 or int(ref.max()) >= gmm.num_conditions:
        raise ValueError(f"ref must hold one class index in [0, {gmm.num_conditions - 1}] per point, shape ({len(x)},).")
    abar = gmm.alphas_cumprod[torch.as_tensor(t, device=x.device)][None, :, None, None]  # (1, S, 1, 1)
    mu, var = gmm.means[:, 0][None, None], gmm.variances[:, 0][None, None]  # (1, 1, C, D)
    s2 = abar * var + 1 - abar
    a = (abar * var / s2).expand(len(x), -1, -1, -1)  # (N, S, C, D)
    b = (abar * (1 - abar)).sqrt() * (x[:, None, None, :] - mu) / s2  # (N, S, C, D)
    rows = torch.arange(len(x), device=x.device)
    a_r, b_r = a[rows, :, ref][:, :, None], b[rows, :, ref][:, :, None]  # (N, S, 1, D)
    D2 = gmm.dim**2
    mean = (a**2 - a_r**2 + b**2 - b_r**2).mean(-1)
    even = (2 * (a_r**2 - a**2) ** 2).sum(-1) / D2
    paired = even + (4 * (a_r * b_r - a * b) ** 2).sum(-1) / D2
    indep = (2 * a_r**4 + 4 * a_r**2 * b_r**2 + 2 * a**4 + 4 * a**2 * b**2).sum(-1) / D2
    return DifferenceMoments(mean, paired, even, indep)


def exact_weighted_error(
    gmm: GaussianMixture, x: torch.Tensor, weighting: str | torch.Tensor = "uniform", chunk: int = 256
) -> torch.Tensor:
    """sum_t w_t E_eps ||eps - eps*_c||^2 / D over all T timesteps, (N, C): the infinite-sample weighted score.

    `weighting` is 'uniform', 'vlb' or explicit positive weights (T,). With 'vlb', -D times this is the ELBO of
    log p(x | c) up to a class-independent constant (Ho et al. eq. 12 summed over t).
    """
    _one_component(gmm)
    x = gmm.encode(x)
    T = len(gmm.alphas_cumprod)
    if isinstance(weighting, str):
        w = timestep_weights(gmm.alphas_cumprod, weighting)
    else:
        w = torch.as_tensor(weighting, dtype=gmm.dtype, device=gmm.device)
        if w.shape != (T,) or not bool((w >= 0).all()):
            raise ValueError(f"explicit weights must be non-negative with shape ({T},), got {tuple(w.shape)}.")
    t = torch.arange(T, device=gmm.device)
    parts = [(gmm.expected_error(x[i : i + chunk], t) * w[None, :, None]).sum(1) for i in range(0, len(x), chunk)]
    return torch.cat(parts)


def unpaired_mean_errors(
    model: Any, images: Any, n_timesteps: int, seed: int = 0, weighting: str = "uniform", loss: str = "l2",
    batch_size: int = 8192, n_trials: int = 1,
) -> torch.Tensor:
    """Mean errors (N, C) where every class gets its *own* plan (own eps draws): the unpaired estimate."""
    x0 = model.encode(images)
    N, C = len(x0), int(model.num_conditions)
    out = torch.empty(N, C, dtype=torch.float64)
    for c in range(C):
        plan = make_plan(n_timesteps, tuple(x0.shape[1:]), model.alphas_cumprod, seed=seed * C + c + 1_000_003,
                         weighting=weighting, device=x0.device, dtype=x0.dtype, n_trials=n_trials)
        S = len(plan)
        i, k = torch.arange(N).repeat_interleave(S), torch.arange(S).repeat(N)
        err = evaluate_pairs(model, x0, plan, i.to(x0.device), k.to(x0.device), torch.full_like(i, c).to(x0.device),
                             loss, batch_size).double().cpu().view(N, S)
        w = plan.weights.double().cpu()
        out[:, c] = (err * w).sum(1) / w.sum()
    return out


class WithModelError:
    """An EpsModel that adds a fixed error delta * u[t, c] (u ~ N(0, I), seeded) to another model's prediction."""

    def __init__(self, model: Any, delta: float, seed: int = 0, shape: tuple[int, ...] | None = None) -> None:
        if not delta >= 0:
            raise ValueError(f"delta must be non-negative, got {delta}.")
        if shape is None and not hasattr(model, "dim"):
            raise ValueError("pass `shape`, the shape of one encoded sample (the model has no `dim` attribute).")
        self.model, self.delta = model, float(delta)
        self.alphas_cumprod, self.num_conditions, self.device = model.alphas_cumprod, model.num_conditions, model.device
        shape = (len(model.alphas_cumprod), int(model.num_conditions), *(shape or (int(model.dim),)))
        self.offsets = delta * torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)

    def encode(self, images: Any) -> torch.Tensor:
        return self.model.encode(images)

    def eps(self, x_t: torch.Tensor, t: torch.Tensor, cond_index: torch.Tensor) -> torch.Tensor:
        """eps_theta = eps* + delta u[t, c]: a class-dependent error that does not shrink with the noise level."""
        off = self.offsets.to(x_t.device)[t.to(x_t.device), cond_index.to(x_t.device)]
        return self.model.eps(x_t, t, cond_index) + off.to(x_t.dtype)


@dataclass
class DenoisingView:
    """One (x, t, eps) seen by every class: what the explorer draws."""

    x: torch.Tensor  # (D,) the clean point
    t: int
    abar: float
    noise: torch.Tensor  # (D,) eps
    x_t: torch.Tensor  # (D,) sqrt(abar) x + sqrt(1 - abar) eps
    eps_hat: torch.Tensor  # (C, D) eps*(x_t, t, c) for every class
    errors: torch.Tensor  # (C,) ||eps - eps_hat_c||^2 / D for this draw
    expected: torch.Tensor  # (C,) E_eps of that error (GaussianMixture.expected_error)
    bayes: torch.Tensor  # (C,) exact p(c | x)


def denoising_view(gmm: GaussianMixture, x: torch.Tensor, t: int, noise: torch.Tensor | int = 0) -> DenoisingView:
    """Noise x to x_t (DDPM eq. 4) and ask every class's exact denoiser for eps; `noise` is eps (D,) or a seed."""
    _one_component(gmm)
    x = gmm.encode(torch.as_tensor(x).reshape(1, -1))[0]
    T = len(gmm.alphas_cumprod)
    if not 0 <= int(t) < T:
        raise ValueError(f"t must be a timestep index in [0, {T - 1}], got {t}.")
    if isinstance(noise, int):
        noise = torch.randn(gmm.dim, generator=torch.Generator().manual_seed(noise), dtype=torch.float64)
    noise = torch.as_tensor(noise, dtype=gmm.dtype, device=gmm.device).reshape(-1)
    if noise.shape != (gmm.dim,):
        raise ValueError(f"noise must have shape ({gmm.dim},), got {tuple(noise.shape)}.")
    abar = float(gmm.alphas_cumprod[int(t)])
    x_t = abar**0.5 * x + (1 - abar) ** 0.5 * noise
    C = gmm.num_conditions
    eps_hat = gmm.eps(x_t.expand(C, -1), torch.full((C,), int(t)), torch.arange(C))
    errors = (eps_hat - noise).pow(2).mean(1)
    expected = gmm.expected_error(x[None], torch.tensor([int(t)]))[0, 0]
    return DenoisingView(x, int(t), abar, noise, x_t, eps_hat, errors, expected, gmm.bayes_posterior(x[None])[0])


def plot_denoising_view(gmm: GaussianMixture, view: DenoisingView, points: torch.Tensor | None = None):
    """Left: the plane at timestep t, with every class's step back to sqrt(abar) x; right: each class's error."""
    import matplotlib.pyplot as plt
    import seaborn as sns
    from matplotlib.patches import Circle

    if gmm.dim != 2:
        raise ValueError(f"the explorer draws the plane: it needs a 2-D mixture, this one has dim = {gmm.dim}.")
    C, a = gmm.num_conditions, view.abar
    colours = sns.color_palette("deep", C)
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(9, 4.8), gridspec_kw={"width_ratios": [1.15, 1]})  # <= 9 in: readable
    if points is not None:
        ax.scatter(a**0.5 * points[:, 0], a**0.5 * points[:, 1], s=4, c="0.8", zorder=0)
    s = (a * gmm.variances[:, 0, 0] + 1 - a).sqrt()
    for c in range(C):
        centre = (a**0.5 * gmm.means[c, 0]).tolist()
        ax.add_patch(Circle(centre, float(s[c]), fill=False, ec=colours[c], lw=1.5, label=f"class {c}"))
    start = (a**0.5 * view.x).tolist()
    ax.annotate("", xy=view.x_t.tolist(), xytext=start, gid="noise",
                arrowprops=dict(arrowstyle="->", color="0.3", lw=1.5, ls="--"))
    for c in range(C):
        end = (view.x_t - (1 - a) ** 0.5 * view.eps_hat[c]).tolist()
        ax.annotate("", xy=end, xytext=view.x_t.tolist(), gid=f"class-{c}",
                    arrowprops=dict(arrowstyle="->", color=colours[c], lw=2))
    ax.plot(*start, "k*", ms=14, label=r"$\sqrt{\bar\alpha_t}\,x$ (target)")
    ax.plot(*view.x_t.tolist(), "ko", ms=6, label=r"$x_t$")
    ax.set(aspect="equal", xlabel="first coordinate", ylabel="second coordinate")
    ax.set_title(rf"t = {view.t}, $\bar\alpha_t$ = {a:.3f}: circles 1 sd of $x_t$", fontsize=11)
    ax.autoscale_view()
    classes = list(range(C))
    bx.bar(classes, view.errors.tolist(), color=colours, label="this draw of $\\varepsilon$")
    bx.scatter(classes, view.expected.tolist(), color="k", marker="D", zorder=3, label="expected over $\\varepsilon$")
    best = int(view.errors.argmin())
    bx.set(xticks=classes, xlabel="class; exact p(c|x): " + ", ".join(f"{p:.2f}" for p in view.bayes.tolist()),
           ylabel=r"$\|\varepsilon - \hat\varepsilon_c\|^2 / D$")
    bx.set_title(f"error per class: least for class {best}", fontsize=11)
    bx.legend(fontsize=9)
    handles, labels = ax.get_legend_handles_labels()  # below the panels: no arrow hidden
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=9, handlelength=1.2, columnspacing=1)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return fig


def explorer(gmm: GaussianMixture, points: torch.Tensor, index: int = 0, t: int = 300, seed: int = 0):
    """An ipywidgets view: sliders for the point, the timestep and the noise seed, redrawing plot_denoising_view."""
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    points = gmm.encode(points)
    T = len(gmm.alphas_cumprod)

    def show(index: int, t: int, seed: int) -> None:
        plot_denoising_view(gmm, denoising_view(gmm, points[index], t, seed), points)
        plt.show()

    return widgets.interactive(
        show,
        index=widgets.IntSlider(value=index, min=0, max=len(points) - 1, description="point"),
        t=widgets.IntSlider(value=t, min=0, max=T - 1, step=10, description="timestep t"),
        seed=widgets.IntSlider(value=seed, min=0, max=99, description="noise seed"),
    )
