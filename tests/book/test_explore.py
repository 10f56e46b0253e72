"""Chapter 1 tools: closed-form error moments against Monte Carlo, unpaired plans, and the explorer's numbers."""
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from diffclf_lite import Exhaustive, GaussianMixture, Plan, classify, evaluate_pairs, make_plan  # noqa: E402
from diffclf_lite.book.explore import (WithModelError, denoising_view, difference_moments, exact_weighted_error,  # noqa: E402
                                       explorer, plot_denoising_view, unpaired_mean_errors)


def gmm2(**kw):
    return GaussianMixture.random(num_classes=4, dim=2, separation=1.5, class_specific_variance=True, seed=0, **kw)


def _errors(gmm, x, plan, c):
    """Per-entry l2 errors (N, S) of class c under `plan`."""
    N, S = len(x), len(plan)
    i, k = torch.arange(N).repeat_interleave(S), torch.arange(S).repeat(N)
    return evaluate_pairs(gmm, x, plan, i, k, torch.full_like(i, c), batch_size=1 << 17).view(N, S)


@pytest.mark.parametrize("t", [5, 150, 600, 950])
def test_difference_moments_match_monte_carlo(t):
    gmm = GaussianMixture.random(3, 3, seed=2, class_specific_variance=True)
    x, _ = gmm.sample(2, seed=1)
    ref = torch.tensor([0, 2, 1, 0, 2, 1])
    mean, var_p, var_a, var_i = difference_moments(gmm, x, torch.tensor([t]), ref)
    n = 20000
    noise_a = torch.randn(n, 3, generator=torch.Generator().manual_seed(t), dtype=torch.float64)
    noise_b = torch.randn(n, 3, generator=torch.Generator().manual_seed(t + 1), dtype=torch.float64)
    one = lambda z: Plan(torch.full((n,), t), z, torch.ones(n, dtype=torch.float64))  # noqa: E731
    ea = torch.stack([_errors(gmm, x, one(noise_a), c) for c in range(3)], -1)  # (N, n, C)
    eb = torch.stack([_errors(gmm, x, one(noise_b), c) for c in range(3)], -1)
    rows = torch.arange(len(x))
    paired = ea - ea[rows, :, ref][:, :, None]
    indep = eb - ea[rows, :, ref][:, :, None]
    ec = torch.stack([_errors(gmm, x, one(-noise_a), c) for c in range(3)], -1)  # the antithetic partners
    anti = 0.5 * (paired + ec - ec[rows, :, ref][:, :, None])
    torch.testing.assert_close(mean[:, 0], gmm.expected_error(x, torch.tensor([t]))[:, 0] -
                               gmm.expected_error(x, torch.tensor([t]))[rows, 0, ref][:, None])
    other = torch.ones_like(mean[:, 0], dtype=torch.bool)
    other[rows, ref] = False
    for mc, v in ((paired, var_p[:, 0]), (indep, var_i[:, 0]), (anti, var_a[:, 0])):
        se = (mc.var(1) / n).sqrt()
        assert bool(((mc.mean(1) - mean[:, 0]).abs() <= 5 * se + 1e-12)[other].all())
        # the variance of a sample variance is ~ 2 var^2 / n for near-Gaussian draws; allow heavy tails (x4)
        assert bool(((mc.var(1) - v).abs() <= 4 * 5 * v * math.sqrt(2 / n) + 1e-12)[other].all())
    assert bool((var_p[:, 0][~other] == 0).all()) and bool((var_i[:, 0][~other] > 0).all())


def test_equal_variances_paired_variance_is_linear_term_only():
    """With equal variances a_c is shared, so the chi-square part cancels: Var = 4 a^2 ||b_r - b_c||^2 / D^2."""
    gmm = GaussianMixture.random(3, 4, seed=1, variance=0.6)
    x, _ = gmm.sample(3, seed=0)
    t = torch.tensor([10, 400, 900])
    ref = torch.zeros(len(x), dtype=torch.long)
    _, var_p, var_a, _ = difference_moments(gmm, x, t, ref)
    assert bool((var_a == 0).all())  # equal variances: an antithetic pair leaves no randomness
    abar = gmm.alphas_cumprod[t][None, :, None]
    s2 = abar * 0.6 + 1 - abar
    a, k = abar * 0.6 / s2, (abar * (1 - abar)).sqrt() / s2
    mu = gmm.means[:, 0]
    dist = ((mu[None, :, :] - mu[0][None, None, :]) ** 2).sum(-1)[:, None, :]  # (1, 1, C) ||mu_c - mu_0||^2
    torch.testing.assert_close(var_p, (4 * a**2 * k**2 * dist / 16).expand_as(var_p))


def test_exact_weighted_error_and_the_elbo():
    gmm = gmm2()
    x, _ = gmm.sample(30, seed=3)
    w = torch.rand(1000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    direct = (gmm.expected_error(x, torch.arange(1000)) * w[None, :, None]).sum(1)
    torch.testing.assert_close(exact_weighted_error(gmm, x, w, chunk=7), direct)
    torch.testing.assert_close(exact_weighted_error(gmm, x, "uniform"), gmm.expected_error(x, torch.arange(1000)).sum(1))
    elbo = -gmm.dim * exact_weighted_error(gmm, x, "vlb")  # log p(x | c) up to a class-independent constant
    tv = 0.5 * (torch.softmax(elbo, 1) - gmm.bayes_posterior(x)).abs().sum(1)
    assert tv.max() < 0.02, tv.max()
    with pytest.raises(ValueError, match="explicit weights"):
        exact_weighted_error(gmm, x, torch.ones(10))


def test_unpaired_mean_errors_use_one_plan_per_class():
    gmm = gmm2()
    x, _ = gmm.sample(5, seed=1)
    C, n, seed = gmm.num_conditions, 16, 3
    un = unpaired_mean_errors(gmm, x, n, seed=seed)
    for c in range(C):
        plan = make_plan(n, (2,), gmm.alphas_cumprod, seed=seed * C + c + 1_000_003, dtype=torch.float64)
        r = classify(gmm, x, Exhaustive(n), plan=plan)
        torch.testing.assert_close(un[:, c], r.mean_errors[:, c])
    un2 = unpaired_mean_errors(gmm, x, n, seed=seed, n_trials=3, weighting="vlb")
    plan = make_plan(n, (2,), gmm.alphas_cumprod, seed=seed * C + 1_000_003, dtype=torch.float64, n_trials=3, weighting="vlb")
    torch.testing.assert_close(un2[:, 0], classify(gmm, x, Exhaustive(n), plan=plan).mean_errors[:, 0])
    paired = classify(gmm, x, Exhaustive(n), seed=seed).mean_errors
    assert not torch.allclose(un, paired)


def test_with_model_error_adds_a_fixed_offset():
    gmm = gmm2()
    m, m0 = WithModelError(gmm, 0.1, seed=4), WithModelError(gmm, 0.0)
    x_t = torch.randn(6, 2, dtype=torch.float64)
    t, c = torch.tensor([0, 1, 500, 500, 999, 3]), torch.tensor([0, 1, 2, 3, 0, 1])
    torch.testing.assert_close(m.eps(x_t, t, c) - gmm.eps(x_t, t, c), m.offsets[t, c])
    torch.testing.assert_close(m0.eps(x_t, t, c), gmm.eps(x_t, t, c))
    assert torch.equal(WithModelError(gmm, 0.1, seed=4).offsets, m.offsets)
    assert abs(m.offsets.std().item() - 0.1) < 0.01
    with pytest.raises(ValueError, match="non-negative"):
        WithModelError(gmm, -1.0)


def test_denoising_view_numbers_are_the_models():
    gmm = gmm2()
    x, _ = gmm.sample(1, seed=2)
    v = denoising_view(gmm, x[1], t=300, noise=5)
    a = gmm.alphas_cumprod[300].item()
    torch.testing.assert_close(v.x_t, a**0.5 * x[1] + (1 - a) ** 0.5 * v.noise)
    torch.testing.assert_close(v.eps_hat, gmm.eps(v.x_t.expand(4, -1), torch.full((4,), 300), torch.arange(4)))
    plan = Plan(torch.tensor([300]), v.noise[None], torch.ones(1, dtype=torch.float64))
    engine = classify(gmm, x[1:2], Exhaustive(1), plan=plan)
    torch.testing.assert_close(v.errors, engine.errors[0, 0])
    torch.testing.assert_close(v.expected, gmm.expected_error(x[1:2], torch.tensor([300]))[0, 0])
    torch.testing.assert_close(v.bayes, gmm.bayes_posterior(x[1:2])[0])
    with pytest.raises(ValueError, match="timestep index"):
        denoising_view(gmm, x[0], t=1000)
    with pytest.raises(ValueError, match="noise must have shape"):
        denoising_view(gmm, x[0], t=10, noise=torch.zeros(3))


def test_plot_shows_the_views_numbers():
    gmm = gmm2()
    x, _ = gmm.sample(10, seed=2)
    v = denoising_view(gmm, x[3], t=400, noise=1)
    fig = plot_denoising_view(gmm, v, x)
    assert isinstance(fig, matplotlib.figure.Figure) and len(fig.axes) == 2
    plane, bars = fig.axes
    heights = [p.get_height() for p in bars.patches]
    torch.testing.assert_close(torch.tensor(heights, dtype=torch.float64), v.errors)
    diamonds = torch.tensor(bars.collections[0].get_offsets()[:, 1], dtype=torch.float64)
    torch.testing.assert_close(diamonds, v.expected)
    arrows = {a.get_gid(): a for a in plane.texts}
    a = v.abar
    torch.testing.assert_close(torch.tensor(arrows["noise"].xy, dtype=torch.float64), v.x_t)
    torch.testing.assert_close(torch.tensor(arrows["noise"].xyann, dtype=torch.float64), a**0.5 * v.x)
    for c in range(4):
        end = torch.tensor(arrows[f"class-{c}"].xy, dtype=torch.float64)
        torch.testing.assert_close(end, v.x_t - (1 - a) ** 0.5 * v.eps_hat[c])
    assert len(plane.patches) == 4  # one noise-level circle per class
    plt.close(fig)
    with pytest.raises(ValueError, match="2-D mixture"):
        g3 = GaussianMixture.random(2, 3)
        plot_denoising_view(g3, denoising_view(g3, torch.zeros(3), 10))


def test_explorer_builds_and_redraws():
    gmm = gmm2()
    x, _ = gmm.sample(5, seed=2)
    w = explorer(gmm, x, index=2, t=100)
    sliders = {s.description: s for s in w.children[:-1]}
    assert set(sliders) == {"point", "timestep t", "noise seed"}
    assert sliders["point"].max == len(x) - 1 and sliders["timestep t"].max == 999
    sliders["timestep t"].value = 700  # triggers a redraw; errors would surface here
    assert w.kwargs == {"index": 2, "t": 700, "seed": 0}
    plt.close("all")
