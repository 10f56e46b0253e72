"""Successive elimination (Clark & Jaini) and our pooled racing: the statistics, checked against scipy."""
import warnings

import numpy as np
import pytest
import torch
from scipy import stats

from conftest import KnownErrorModel
from diffclf_lite import Exhaustive, GaussianMixture, Racing, SuccessiveElimination, classify, grid_order, timestep_grid


def test_grid_orders():
    s = grid_order(16, "stratified")
    assert sorted(s.tolist()) == list(range(16)) and s[:4].tolist() == [0, 8, 4, 12]  # each prefix spreads out
    assert sorted(grid_order(1000, "stratified").tolist()) == list(range(1000))
    assert torch.equal(grid_order(50, "random", seed=3), grid_order(50, "random", seed=3))
    assert sorted(grid_order(50, "random").tolist()) == list(range(50))
    with pytest.raises(ValueError, match="Unknown grid order"):
        grid_order(5, "backwards")


def known_model(offsets):
    return KnownErrorModel(torch.zeros(4, dtype=torch.float64), offsets.double())


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


def noisy_offsets(seed, S, means, noise):
    """Offsets (l2 error = offset^2) of len(means) classes on a grid of S timesteps: means + Gaussian noise."""
    g = torch.Generator().manual_seed(seed)
    t = timestep_grid(S, 1000)
    offsets = torch.zeros(1000, len(means), dtype=torch.float64)
    offsets[t] = (torch.tensor(means) + noise * torch.randn(S, len(means), generator=g)).double()
    return t, offsets


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


# --- replay and profiled racing ---------------------------------------------------------------------------------

from diffclf_lite.pruning import ProfiledRacing, density_order, timestep_profile  # noqa: E402
from diffclf_lite.scoring import replay  # noqa: E402
from diffclf_lite.strategies import Staged  # noqa: E402


def test_replay_gives_the_live_decisions_and_nfe():
    """Strategies replayed on exhaustive errors decide exactly as when they call the model themselves."""
    gmm = GaussianMixture.random(10, 8, separation=1.0, seed=2, class_specific_variance=True)
    x, _ = gmm.sample(3, seed=3)
    ex = classify(gmm, x, Exhaustive(100), batch_size=65536, seed=4)
    profile = timestep_profile(classify(gmm, gmm.sample(1, seed=5)[0], Exhaustive(100), seed=6).errors)
    for strategy in (Exhaustive(100), Staged([10, 100], [5, 1]), SuccessiveElimination(100), Racing(100),
                     ProfiledRacing(100), ProfiledRacing(100, profile)):
        live = classify(gmm, x, strategy, batch_size=65536, seed=4)
        again = replay(ex.errors, strategy, ex.weights, ex.timesteps)
        assert torch.equal(live.prediction, again.prediction) and torch.equal(live.nfe, again.nfe), strategy
        assert torch.equal(live.alive, again.alive) and torch.equal(live.errors.isnan(), again.errors.isnan())
        assert torch.allclose(live.mean_errors, again.mean_errors, equal_nan=True)
    assert live.nfe.double().mean() < ex.nfe.double().mean() / 3  # and the profiled run really saved evaluations


def test_replay_rejects_incomplete_or_mismatched_errors():
    e = torch.rand(2, 10, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="plan entries"):
        replay(e, Exhaustive(12), torch.ones(10))
    e[0, 1, 2] = float("nan")
    with pytest.raises(ValueError, match="complete error tensor"):
        replay(e, Exhaustive(10), torch.ones(10))


def test_profile_finds_where_differences_vary_and_the_order_follows_it():
    g = torch.Generator().manual_seed(0)
    S = 200
    scale = torch.zeros(S, dtype=torch.float64)
    scale[40:80] = 1.0  # paired differences vary only between entries 40 and 80
    errors = torch.rand(4, S, 1, generator=g, dtype=torch.float64).expand(-1, -1, 3).clone()
    errors[:, :, 1:] += 2 + scale[None, :, None] * torch.randn(4, S, 2, generator=g, dtype=torch.float64)
    prof = timestep_profile(errors, smooth=2)
    assert prof.argmax().item() in range(40, 80) and prof[:30].max() < 0.05 and prof[90:].max() < 0.05
    order = density_order(prof, floor=0.1)
    assert sorted(order.tolist()) == list(range(S))
    first = order[:60]  # density 1 inside, 0.1 outside: 40 / (40 + 16) of the early visits fall inside
    inside = ((first >= 40) & (first < 80)).double().mean().item()
    assert 0.6 < inside < 0.85, inside
    assert ((first < 40).any() and (first >= 80).any())  # the floor: no region is skipped
    with pytest.raises(ValueError, match="floor"):
        density_order(prof, floor=0)
    with pytest.raises(ValueError, match="Exhaustive"):
        timestep_profile(torch.rand(3, 5))


@pytest.mark.parametrize("indifference", [0.0, 0.05])
def test_profiled_racing_tests_the_grid_mean_with_nearest_entry_weights(indifference):
    """One drop decision recomputed by hand: nearest-entry weights, pooled local variances, (A)(R - 1) df, and the
    indifference zone shifting the null hypothesis from 'no worse' to 'no more than delta better'."""
    S, C, R = 16, 4, 4
    t, offsets = noisy_offsets(3, S, [1.0, 1.02, 1.4, 1.15], 0.04)
    s = ProfiledRacing(S, min_rounds=R, max_rounds=R, p_value=2e-3, indifference=indifference)
    r = classify(known_model(offsets), torch.zeros(1, 4), s)
    rows = sorted(s.order[:R].tolist())  # stratified: 0, 4, 8, 12
    e = (offsets[t[rows]] ** 2).numpy()
    cell = np.array([2, 4, 4, 6])  # grid entries nearest to 0, 4, 8, 12 (ties go right)
    assert rows == [0, 4, 8, 12]
    d = e[:, 1:] - e[:, :1]  # class 0 is best
    dm = (cell[:, None] / S * d).sum(0)
    step = np.diff(d, axis=0) ** 2 / 2
    local = np.concatenate([step[:1], (step[1:] + step[:-1]) / 2, step[-1:]]).mean(1)  # pooled over rivals
    var = (local * ((cell - 1) + (cell - 1) ** 2)).sum() / S**2
    p = stats.t.sf((dm + indifference) / np.sqrt(var), df=(C - 1) * (R - 1))
    assert r.alive[0].tolist() == [True] + (p >= 2e-3).tolist()
    p_no_zone = stats.t.sf(dm / np.sqrt(var), df=(C - 1) * (R - 1))
    assert 0 < (p_no_zone < 2e-3).sum() < C - 1  # without a zone the close rival stays
    if indifference:
        assert (p < 2e-3).all()  # within the zone it goes too


def test_profiled_racing_ends_at_the_exhaustive_decision():
    """A near tie races over the whole grid; then the estimate is the exhaustive mean, known exactly, and decides."""
    g = torch.Generator().manual_seed(4)
    S = 60
    t = timestep_grid(S, 1000)
    offsets = torch.zeros(1000, 3, dtype=torch.float64)
    base = 1 + 0.05 * torch.randn(S, generator=g, dtype=torch.float64)
    offsets[t] = torch.stack([base, base + 2e-4 + 0.01 * torch.randn(S, generator=g, dtype=torch.float64), base + 1], 1)
    for sign in (1, -1):  # the tie goes either way: the winner is exhaustive's
        off = offsets.clone()
        off[t, 1] = base + sign * (off[t, 1] - base)
        ex = classify(known_model(off), torch.zeros(1, 4), Exhaustive(S))
        r = classify(known_model(off), torch.zeros(1, 4), ProfiledRacing(S))
        assert (~r.errors.isnan()).any(2).sum().item() >= S - 5  # raced over (nearly) the whole grid
        assert r.alive[0].sum() == 1 and r.prediction.item() == ex.prediction.item()
        assert r.nfe.item() < 2 * S + 3 * 3  # the far class went after the first test rounds
    with pytest.raises(ValueError, match="profile has 5 entries"):
        ProfiledRacing(60, torch.ones(5))


def near_tie(seed=4, S=60, gap=2e-4):
    """Two classes tied within `gap` (offsets; l2 error = offset^2), their differences noisy, and a far third."""
    g = torch.Generator().manual_seed(seed)
    t = timestep_grid(S, 1000)
    offsets = torch.zeros(1000, 3, dtype=torch.float64)
    base = 1 + 0.05 * torch.randn(S, generator=g, dtype=torch.float64)
    offsets[t] = torch.stack([base, base + gap + 0.01 * torch.randn(S, generator=g, dtype=torch.float64), base + 1], 1)
    return offsets


def test_the_indifference_zone_ends_a_near_tie_early_within_delta():
    S = 60
    model = known_model(near_tie(S=S))
    ex = classify(model, torch.zeros(1, 4), Exhaustive(S))
    gap = (ex.mean_errors[0, 1] - ex.mean_errors[0, 0]).abs().item()
    plain = classify(model, torch.zeros(1, 4), ProfiledRacing(S))
    delta = 0.01  # paired differences vary by ~0.02 per entry: the zone is about the noise of 4 entries' mean
    assert gap < delta
    zone = classify(model, torch.zeros(1, 4), ProfiledRacing(S, indifference=delta))
    assert zone.alive[0].sum() == 1 and zone.nfe.item() < plain.nfe.item() / 2
    assert ex.mean_errors[0, zone.prediction.item()].item() <= ex.mean_errors[0].min().item() + delta
    # identical classes are within any zone: decided at the first test instead of racing to the end
    same = classify(known_model(torch.ones(1000, 3, dtype=torch.float64)), torch.zeros(1, 4),
                    ProfiledRacing(S, min_rounds=3, indifference=1e-9))
    assert same.alive[0].sum() == 1 and same.nfe.item() == 3 * 3
    # a rival better than the leader by more than the zone is never dropped on the zone's account
    far = near_tie(S=S, gap=-0.05)  # class 1 better by ~0.1 in l2 error
    r = classify(known_model(far), torch.zeros(1, 4), ProfiledRacing(S, indifference=0.02))
    assert r.prediction.item() == 1
    with pytest.raises(ValueError, match="indifference"):
        ProfiledRacing(S, indifference=-1.0)


def test_calibrated_takes_profile_and_temperature_from_labelled_calibration_errors():
    from diffclf_lite import fit_temperature

    gmm = GaussianMixture.random(4, 2, separation=0.5, seed=1)
    x, y = gmm.sample(10, seed=2)
    errors = classify(gmm, x, Exhaustive(40), seed=3).errors
    s = ProfiledRacing.calibrated(errors, y, tolerance=0.3)
    temperature = fit_temperature(errors.mean(1), y)
    assert s.temperature == pytest.approx(temperature) and s.indifference == pytest.approx(0.3 * temperature)
    assert torch.equal(s.order, density_order(timestep_profile(errors), 0.1))
    weights = torch.linspace(1, 2, 40, dtype=torch.float64)  # the zone is in units of the weighted mean error
    weighted = ProfiledRacing.calibrated(errors, y, weights, tolerance=1.0)
    assert weighted.temperature == pytest.approx(fit_temperature((errors * weights[:, None]).sum(1) / weights.sum(), y))
    assert ProfiledRacing(40).temperature is None  # only `calibrated` fits one
    with pytest.raises(TypeError, match="sets `indifference` itself"):
        ProfiledRacing.calibrated(errors, y, indifference=0.1)
    with pytest.raises(ValueError, match="positive"):
        ProfiledRacing.calibrated(errors, y, -weights)
    with pytest.raises(ValueError, match="tolerance"):
        ProfiledRacing.calibrated(errors, y, tolerance=-0.1)
    with pytest.raises(ValueError, match="weights"):
        ProfiledRacing.calibrated(errors, y, torch.ones(3))
    # calibration images separated perfectly: a temperature near 0, hence no zone to speak of, and no warning
    separated = torch.rand(4, 40, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    separated[:2, :, 1] += 2.0
    separated[2:, :, 0] += 2.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        zone = ProfiledRacing.calibrated(separated, torch.tensor([0, 0, 1, 1])).indifference
    gaps = (separated.mean(1)[:, 0] - separated.mean(1)[:, 1]).abs()  # about 2
    assert zone < 1e-3 * gaps.min().item()
    assert torch.equal(density_order(torch.zeros(16)), grid_order(16, "stratified"))  # no variation: uniform

