"""Successive elimination (Clark & Jaini) and our pooled racing: the statistics, checked against scipy."""
import numpy as np
import pytest
import torch
from scipy import stats

from conftest import known_model, noisy_offsets
from diffclf_lite import Exhaustive, GaussianMixture, Racing, SuccessiveElimination, classify, grid_order, timestep_grid


def test_grid_orders():
    s = grid_order(16, "stratified")
    assert sorted(s.tolist()) == list(range(16)) and s[:4].tolist() == [0, 8, 4, 12]  # each prefix spreads out
    assert sorted(grid_order(1000, "stratified").tolist()) == list(range(1000))
    assert torch.equal(grid_order(50, "random", seed=3), grid_order(50, "random", seed=3))
    assert sorted(grid_order(50, "random").tolist()) == list(range(50))
    with pytest.raises(ValueError, match="Unknown grid order"):
        grid_order(5, "backwards")


def test_elimination_drop_matches_scipy_paired_t_test():
    """At min_rounds, class k is dropped iff scipy's one-sided paired t-test against the best gives p < p_value."""
    g = torch.Generator().manual_seed(0)
    S, C = 20, 5
    t = timestep_grid(S, 1000)
    offsets = torch.zeros(1000, C, dtype=torch.float64)
    # l2 error = offset^2: class 0 best, the others worse by different, noisy margins
    offsets[t] = (torch.tensor([1.0, 1.05, 1.3, 1.02, 2.0]) + 0.05 * torch.randn(S, C, generator=g)).double()
    s = SuccessiveElimination(S, min_rounds=8, max_rounds=8, order="sequential")
    r = classify(known_model(offsets), torch.zeros(1, 4), s)
    e = (offsets[t[:8]] ** 2).numpy()
    expected = [k == 0 or stats.ttest_rel(e[:, k], e[:, 0], alternative="greater").pvalue >= 2e-3 for k in range(C)]
    assert r.alive[0].tolist() == expected and sum(expected) not in (1, C)  # a real mix of kept and dropped
    assert r.nfe.item() == 8 * C


def test_pooled_test_uses_the_pooled_variance():
    S, C, R = 10, 4, 3
    t, offsets = noisy_offsets(1, S, [1.0, 1.01, 1.5, 1.12], 0.03)
    r = classify(known_model(offsets), torch.zeros(1, 4),
                 SuccessiveElimination(S, min_rounds=R, max_rounds=R, order="sequential", pooled=True))
    e = (offsets[t[:R]] ** 2).numpy()
    d = e[:, 1:] - e[:, :1]  # rivals against the best (class 0)
    pooled_sd = np.sqrt(d.var(0, ddof=1).mean())
    p = stats.t.sf(d.mean(0) / (pooled_sd / np.sqrt(R)), df=(C - 1) * (R - 1))
    assert r.alive[0].tolist() == [True] + (p >= 2e-3).tolist()
    assert 0 < (p < 2e-3).sum() < C - 1  # the pooled test drops some but not all rivals after 3 rounds


def test_identical_classes_are_never_dropped_and_the_cap_holds():
    offsets = torch.ones(1000, 3, dtype=torch.float64)
    r = classify(known_model(offsets), torch.zeros(2, 4), SuccessiveElimination(50, min_rounds=5, max_rounds=30))
    assert r.alive.all() and r.nfe.tolist() == [30 * 3, 30 * 3]


def test_one_clear_winner_stops_early():
    offsets = torch.ones(1000, 6, dtype=torch.float64) * torch.tensor([1.0, 2, 2, 2, 2, 2]).double()
    offsets += 0.01 * torch.randn(1000, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    r = classify(known_model(offsets), torch.zeros(1, 4), SuccessiveElimination(100, min_rounds=20))
    assert r.prediction.item() == 0 and r.alive[0].sum() == 1 and r.nfe.item() == 20 * 6
    racing = classify(known_model(offsets), torch.zeros(1, 4), Racing(100))
    assert racing.prediction.item() == 0 and racing.nfe.item() == 2 * 6  # pooled: decided after 2 rounds


def test_elimination_agrees_with_exhaustive_for_less():
    gmm = GaussianMixture.random(10, 8, separation=1.0, seed=0, class_specific_variance=True)
    x, y = gmm.sample(8, seed=1)
    ex = classify(gmm, x, Exhaustive(200), batch_size=65536)
    for strategy in (SuccessiveElimination(200), Racing(200)):
        r = classify(gmm, x, strategy, batch_size=65536)
        assert (r.prediction == ex.prediction).double().mean() >= 0.97, strategy
        assert r.nfe.double().mean() < ex.nfe.double().mean() / 4, strategy
        rounds = (~r.errors.isnan()).sum(1).max(1).values  # rounds each sample raced
        assert torch.equal(r.alive.sum(1) > 1, rounds == strategy.max_rounds)  # undecided only at the cap


def test_bad_arguments():
    with pytest.raises(ValueError, match="min_rounds"):
        SuccessiveElimination(100, min_rounds=1)
    with pytest.raises(ValueError, match="max_rounds"):
        SuccessiveElimination(100, min_rounds=20, max_rounds=10)
    with pytest.raises(ValueError, match="n_timesteps"):
        SuccessiveElimination(10, min_rounds=20)
    with pytest.raises(ValueError, match="p_value"):
        SuccessiveElimination(100, p_value=0)
