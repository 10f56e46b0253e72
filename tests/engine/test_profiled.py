"""Profiled racing: the timestep profile, the grid-mean test, the indifference zone and calibration."""
import warnings

import numpy as np
import pytest
import torch
from scipy import stats

from conftest import known_model, noisy_offsets
from diffclf_lite import Exhaustive, GaussianMixture, classify, grid_order, timestep_grid
from diffclf_lite.engine.strategies import ProfiledRacing, density_order, timestep_profile


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
