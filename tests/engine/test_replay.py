"""Replaying a strategy on precomputed errors gives the live run's decisions and NFE."""
import pytest
import torch

from diffclf_lite import Exhaustive, GaussianMixture, Racing, SuccessiveElimination, classify
from diffclf_lite.engine.scoring import replay
from diffclf_lite.engine.strategies import ProfiledRacing, Staged, timestep_profile


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
