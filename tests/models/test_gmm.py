"""The Gaussian-mixture model's exact answers, checked against independent computations."""
import math

import pytest
import torch
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal

from diffclf_lite import GaussianMixture, evaluate_pairs, make_plan


def mixture():
    g = torch.Generator().manual_seed(0)
    means = torch.randn(3, 2, 4, generator=g, dtype=torch.float64) * 2  # C=3, K=2, D=4
    var = torch.rand(3, 2, 4, generator=g, dtype=torch.float64) + 0.3  # diagonal, per component
    w = torch.tensor([[0.3, 0.7], [0.5, 0.5], [0.9, 0.1]], dtype=torch.float64)
    return GaussianMixture(means, var, w, schedule="scaled_linear")


def torch_dist(gmm, c, abar=1.0):
    """p_t(x_t | c) as torch.distributions: components N(sqrt(abar) mu, abar var + 1 - abar)."""
    comps = Independent(Normal(math.sqrt(abar) * gmm.means[c], (abar * gmm.variances[c] + 1 - abar).sqrt()), 1)
    return MixtureSameFamily(Categorical(logits=gmm.log_weights[c]), comps)


def test_log_prob_matches_torch_distributions():
    gmm = mixture()
    x, _ = gmm.sample(5)
    expected = torch.stack([torch_dist(gmm, c).log_prob(x) for c in range(3)], dim=1)
    torch.testing.assert_close(gmm.log_prob(x), expected)
    torch.testing.assert_close(gmm.bayes_posterior(x).sum(1), torch.ones(len(x), dtype=torch.float64))


def test_expected_accuracy_is_the_mean_posterior_of_the_chosen_class():
    gmm = mixture()
    x, y = gmm.sample(4, seed=3)
    joint = torch.stack([torch_dist(gmm, c).log_prob(x) for c in range(3)], dim=1).exp()  # p(x | c), uniform prior
    posterior = joint / joint.sum(1, keepdim=True)
    bayes = posterior.argmax(1)
    by_hand = sum(posterior[i, int(bayes[i])].item() for i in range(len(x))) / len(x)
    assert gmm.expected_accuracy(x, bayes) == pytest.approx(by_hand)
    assert gmm.expected_accuracy(x, (bayes + 1) % 3) < by_hand  # no other rule beats Bayes' expected accuracy
    with pytest.raises(ValueError, match="one class index per sample"):
        gmm.expected_accuracy(x, bayes[:2])


@pytest.mark.parametrize("t", [0, 10, 250, 600, 999])
def test_eps_is_tweedie_score(t):
    """eps*(x_t, t, c) = -sqrt(1 - abar_t) grad log p_t(x_t | c) (Tweedie), for a multi-component diagonal mixture."""
    gmm = mixture()
    abar = gmm.alphas_cumprod[t].item()
    x_t = torch.randn(6, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(t)) * 2
    for c in range(3):
        xg = x_t.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(torch_dist(gmm, c, abar).log_prob(xg).sum(), xg)
        eps = gmm.eps(x_t, torch.full((6,), t), torch.full((6,), c))
        torch.testing.assert_close(eps, -math.sqrt(1 - abar) * grad)


def test_expected_error_matches_monte_carlo():
    """The closed-form E||eps - eps*||^2 agrees with the engine's Monte Carlo average within 4 standard errors."""
    gmm = GaussianMixture.random(3, 5, seed=2, class_specific_variance=True)
    x, _ = gmm.sample(2, seed=1)
    plan = make_plan(1, (5,), gmm.alphas_cumprod, seed=3, n_trials=4000)  # one timestep, many noise draws
    for t in [3, 300, 800]:
        plan_t = type(plan)(torch.full_like(plan.timesteps, t), plan.noise, plan.weights, plan.n_trials)
        exact = gmm.expected_error(x, torch.tensor([t]))[:, 0]  # (N, C)
        for i in range(len(x)):
            for c in range(3):
                n = len(plan_t)
                err = evaluate_pairs(gmm, x, plan_t, torch.full((n,), i), torch.arange(n), torch.full((n,), c))
                assert abs(err.mean() - exact[i, c]) < 4 * err.std() / math.sqrt(n), (t, i, c)


def test_sample_is_seeded_and_has_the_right_moments():
    gmm = GaussianMixture(torch.tensor([[0.0, 0.0], [5.0, -3.0]]), torch.tensor([1.0, 0.25]))
    x, y = gmm.sample(4000, seed=7)
    x2, _ = gmm.sample(4000, seed=7)
    assert torch.equal(x, x2) and x.shape == (8000, 2) and torch.equal(y.bincount(), torch.tensor([4000, 4000]))
    torch.testing.assert_close(x[y == 1].mean(0), torch.tensor([5.0, -3.0], dtype=torch.float64), atol=0.03, rtol=0)
    torch.testing.assert_close(x[y == 1].var(0), torch.tensor([0.25, 0.25], dtype=torch.float64), atol=0.02, rtol=0)


@pytest.mark.parametrize(
    "variances,expected",
    [
        (2.0, [[2.0, 2.0]] * 3),
        (torch.tensor([1.0, 2.0, 3.0]), [[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]]),
        (torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]), [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]),  # (C, D) diagonal
    ],
)
def test_variance_shapes(variances, expected):
    gmm = GaussianMixture(torch.zeros(3, 2), variances)
    torch.testing.assert_close(gmm.variances[:, 0], torch.tensor(expected, dtype=torch.float64))


def test_bad_arguments_are_explained():
    with pytest.raises(ValueError, match="do not fit means"):
        GaussianMixture(torch.zeros(3, 2), torch.ones(4))
    with pytest.raises(ValueError, match="positive"):
        GaussianMixture(torch.zeros(3, 2), torch.tensor([1.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match=r"shape \(C, D\) or \(C, K, D\)"):
        GaussianMixture(torch.zeros(3), 1.0)
    with pytest.raises(ValueError, match=r"expected points of shape \(N, 2\)"):
        GaussianMixture(torch.zeros(3, 2)).encode(torch.zeros(4, 3))
    with pytest.raises(ValueError, match="closed form"):
        mixture().expected_error(torch.zeros(1, 4), torch.tensor([5]))


def test_expected_accuracy_refuses_predictions_outside_the_classes():
    gmm = GaussianMixture.random(3, 2, seed=0)
    x, y = gmm.sample(2, seed=1)
    assert 0.0 <= gmm.expected_accuracy(x, y) <= 1.0
    with pytest.raises(ValueError, match=r"prediction must lie in \[0, 3\) for 3 classes, got 3"):  # was an IndexError
        gmm.expected_accuracy(x, torch.full((6,), 3))
    with pytest.raises(ValueError, match=r"prediction of shape \(5,\) do not match 6 samples"):
        gmm.expected_accuracy(x, y[:5])
