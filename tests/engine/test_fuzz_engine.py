"""Property-based tests of the engine's public API (hypothesis): for any valid input the invariants hold (every
network evaluation counted, predictions in range and alive, batch-size invariance, replay equals the live run,
probabilities sum to 1), and invalid input gets a ValueError or TypeError with a message, never another exception.
Examples per test: see the hypothesis profiles in tests/conftest.py (HYPOTHESIS_PROFILE=slow for many)."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st

from conftest import KnownErrorModel, clear_error, rejects
from diffclf_lite import (Candidates, Exhaustive, GaussianMixture, ProfiledRacing, Racing, Staged, SuccessiveElimination,
                          classify, expected_calibration_error, fit_temperature, make_plan, probabilities,
                          reliability_bins, replay, timestep_grid)

JUNK = st.one_of(st.none(), st.booleans(), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=4),
                 st.integers(-3, 3), st.lists(st.integers(-3, 3), max_size=3), st.just(object()),
                 st.just(torch.tensor([1.5, float("nan")])), st.just(torch.zeros(2, 3, dtype=torch.bool)))


@st.composite
def problems(draw):
    """A known-error model (float64, row by row), images, a strategy of any kind and plan settings."""
    S, C, N = draw(st.integers(3, 24)), draw(st.integers(1, 5)), draw(st.integers(1, 4))
    n_trials = draw(st.sampled_from([1, 2]))
    seed = draw(st.integers(0, 2**16))
    g = torch.Generator().manual_seed(seed)
    offsets = (torch.rand(1000, C, generator=g, dtype=torch.float64) * draw(st.sampled_from([0.1, 1.0, 5.0])))
    model = KnownErrorModel(torch.zeros(3, dtype=torch.float64), offsets)
    images = 0.1 * torch.randn(N, 3, generator=g, dtype=torch.float64)
    kind = draw(st.sampled_from(["exhaustive", "staged", "elimination", "racing", "profiled"]))
    if kind == "exhaustive":
        strategy = Exhaustive(S)
    elif kind == "staged":
        sizes = sorted(draw(st.sets(st.integers(1, S - 1), max_size=2))) + [S]
        keep = sorted(draw(st.lists(st.integers(1, C), min_size=len(sizes), max_size=len(sizes))), reverse=True)
        strategy = Staged(sizes, keep)
    elif kind == "profiled":
        profile = torch.rand(S, generator=g, dtype=torch.float64) if draw(st.booleans()) else None
        strategy = ProfiledRacing(S, profile, min_rounds=3, p_value=draw(st.sampled_from([0.5, 0.05, 1e-3])))
    else:
        lo = draw(st.integers(2, S))
        hi = draw(st.integers(lo, S))
        cls = Racing if kind == "racing" else SuccessiveElimination
        kw = {} if kind == "racing" else {"order": draw(st.sampled_from(["random", "stratified", "sequential"]))}
        strategy = cls(S, min_rounds=lo, max_rounds=hi, p_value=draw(st.sampled_from([0.5, 0.05, 1e-3])), seed=seed, **kw)
    if draw(st.booleans()):
        cand = torch.rand(N, C, generator=g) < 0.6
        cand[torch.arange(N), torch.randint(0, C, (N,), generator=g)] = True
        strategy = Candidates(strategy, cand)
    return model, images, strategy, {"n_trials": n_trials, "seed": seed, "weighting": draw(st.sampled_from(["uniform", "vlb"])),
                                     "loss": draw(st.sampled_from(["l2", "l1", "huber"]))}


@given(problems(), st.integers(1, 50))
def test_classify_invariants(problem, batch_size):
    model, images, strategy, kw = problem
    res = classify(model, images, strategy, batch_size=batch_size, **kw)
    N, C = len(images), model.num_conditions
    evaluated = ~res.errors.isnan()
    assert model.calls == int(res.nfe.sum()) == int(evaluated.sum())  # every network evaluation counted, none twice
    assert torch.equal(res.nfe, evaluated.flatten(1).sum(1))
    assert res.prediction.shape == (N,) and bool(((res.prediction >= 0) & (res.prediction < C)).all())
    assert bool(res.alive[torch.arange(N), res.prediction].all())  # the prediction is a class still in the running
    if isinstance(strategy, Candidates):
        assert not bool((res.alive & ~strategy.candidates).any()) and not bool((evaluated.any(1) & ~strategy.candidates).any())
    assert bool((res.errors[evaluated] >= 0).all())
    probs = res.probabilities(0.5)
    torch.testing.assert_close(probs.sum(1), torch.ones(N, dtype=torch.float64))
    labels = torch.randint(0, C, (N,))
    assert 0.0 <= res.accuracy(labels) <= 1.0

    other = KnownErrorModel(model.x_ref, model.offsets)
    again = classify(other, images, strategy, batch_size=batch_size * 3 + 1, **kw)  # batch-size invariance (float64)
    assert torch.equal(again.errors.isnan(), res.errors.isnan()) and torch.equal(again.errors.nan_to_num(-1), res.errors.nan_to_num(-1))
    assert torch.equal(again.prediction, res.prediction) and torch.equal(again.nfe, res.nfe)

    full = classify(KnownErrorModel(model.x_ref, model.offsets), images, Exhaustive(strategy.n_timesteps), **kw)
    rep = replay(full.errors, strategy, full.weights, full.timesteps, kw["n_trials"])  # replay equals the live run
    assert torch.equal(rep.prediction, res.prediction) and torch.equal(rep.nfe, res.nfe) and torch.equal(rep.alive, res.alive)
    assert torch.equal(rep.errors.nan_to_num(-1), res.errors.nan_to_num(-1))


@given(st.integers(1, 40), st.integers(1, 4), st.integers(1, 3), st.integers(1, 6))
def test_gaussian_mixture_errors_do_not_depend_on_the_batch_size(S, C, N, batch_size):
    gmm = GaussianMixture.random(C, 2, seed=S)
    x, _ = gmm.sample(N, seed=C)
    a = classify(gmm, x, Exhaustive(S), batch_size=batch_size)
    b = classify(gmm, x, Exhaustive(S), batch_size=10_000)
    assert torch.equal(a.errors, b.errors) and int(a.nfe.sum()) == S * C * len(x)


@given(st.integers(1, 6), st.integers(1, 5), st.floats(1e-3, 1e3), st.integers(0, 2**16))
def test_probabilities_and_calibration(N, C, temperature, seed):
    g = torch.Generator().manual_seed(seed)
    errors = torch.rand(N, C, generator=g, dtype=torch.float64)
    errors[torch.rand(N, C, generator=g) < 0.2] = float("nan")  # classes never evaluated
    errors[:, 0] = errors[:, 0].nan_to_num(0.5)  # every sample has at least one evaluated class
    p = probabilities(errors, temperature)
    torch.testing.assert_close(p.sum(1), torch.ones(N, dtype=torch.float64))
    assert bool((p[errors.isnan()] == 0).all()) and bool(((p >= 0) & (p <= 1)).all())
    order = errors.nan_to_num(float("inf"))  # a smaller error never gets a smaller probability
    for i in range(N):
        for a in range(C):
            for b in range(C):
                if order[i, a] < order[i, b]:
                    assert p[i, a] >= p[i, b]
    labels = torch.randint(0, C, (N,), generator=g)
    ece = expected_calibration_error(p, labels, n_bins=1 + seed % 20)
    assert 0.0 <= ece <= 1.0
    conf, acc, count = reliability_bins(p, labels)
    assert int(count.sum()) == N and bool(((acc >= 0) & (acc <= 1)).all())
    complete = torch.rand(N, C, generator=g, dtype=torch.float64)
    clear_error(lambda: _positive(fit_temperature(complete, labels)))


def _positive(tau: float) -> None:
    assert tau > 0 and math.isfinite(tau)


# ---- invalid input: ValueError or TypeError with a message, never another exception, never a result ----
@given(JUNK)
def test_strategies_refuse_junk(value):
    assume(not (isinstance(value, int) and not isinstance(value, bool) and value >= 1))
    rejects(lambda: Exhaustive(value))
    clear_error(lambda: Staged(value, [1]))  # [1] is a valid list of stages
    rejects(lambda: Staged([value], [1]) if not isinstance(value, list) else Staged([1, 2], [1, 2] + value))
    rejects(lambda: SuccessiveElimination(value))
    rejects(lambda: Racing(20, min_rounds=value))
    rejects(lambda: timestep_grid(value, 1000))


@given(JUNK, JUNK)
def test_plans_refuse_junk(a, b):
    abar = torch.linspace(0.999, 0.01, 100)
    clear_error(lambda: make_plan(a, (2,), abar, n_trials=1))
    clear_error(lambda: make_plan(3, (2,), abar, seed=a, n_trials=b))
    clear_error(lambda: make_plan(3, (2,), abar, weighting=a))
    clear_error(lambda: make_plan(3, a, abar))


@given(JUNK, JUNK)
def test_classify_refuses_junk(images, setting):
    gmm = GaussianMixture.random(3, 2, seed=0)
    clear_error(lambda: classify(gmm, images, Exhaustive(3)))
    x, _ = gmm.sample(1)
    for name in ("loss", "weighting", "seed", "batch_size", "n_trials", "strategy", "plan"):
        clear_error(lambda: classify(gmm, x, **{name: setting}))


@given(st.lists(st.integers(0, 5), min_size=0, max_size=4), JUNK, st.booleans())
def test_replay_refuses_junk(shape, weights, nan):
    errors = torch.rand(*shape, dtype=torch.float64) if shape else torch.tensor(1.0)
    if nan and errors.numel():
        errors.view(-1)[0] = float("nan")
    clear_error(lambda: replay(errors, Exhaustive(max(1, shape[1]) if len(shape) > 1 else 1), torch.ones(shape[1] if len(shape) > 1 else 1)))
    clear_error(lambda: replay(torch.rand(2, 3, 2), Exhaustive(3), weights))


@given(JUNK, JUNK)
def test_probabilities_and_calibration_refuse_junk(values, other):
    clear_error(lambda: probabilities(values, 1.0))
    clear_error(lambda: probabilities(torch.rand(2, 3), other))
    clear_error(lambda: fit_temperature(values, other))
    clear_error(lambda: fit_temperature(torch.rand(3, 2), other))
    clear_error(lambda: expected_calibration_error(values, other))
    clear_error(lambda: expected_calibration_error(torch.full((3, 2), 0.5), other))
    clear_error(lambda: reliability_bins(torch.full((3, 2), 0.5), [0, 1, 1], other))


@given(JUNK)
def test_accuracy_refuses_junk(labels):
    gmm = GaussianMixture.random(3, 2, seed=0)
    x, _ = gmm.sample(1)
    res = classify(gmm, x, Exhaustive(3))
    clear_error(lambda: res.accuracy(labels))


# ---- regression examples of what the fuzzer found ----
def test_a_single_unevaluated_candidate_is_the_prediction():
    """Racing stops at once when a sample has one candidate: the prediction was class 0 even when 0 was not a
    candidate (every mean error NaN), and p(c | x) was NaN."""
    model = KnownErrorModel(torch.zeros(3, dtype=torch.float64), torch.rand(1000, 3, dtype=torch.float64))
    cand = torch.tensor([[False, True, False], [False, False, True]])
    res = classify(model, torch.zeros(2, 3, dtype=torch.float64), Candidates(Racing(3, max_rounds=2), cand))
    assert res.prediction.tolist() == [1, 2] and res.nfe.tolist() == [0, 0] and model.calls == 0
    assert res.probabilities().tolist() == [[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    one = classify(KnownErrorModel(torch.zeros(3, dtype=torch.float64), torch.rand(1000, 1, dtype=torch.float64)),
                   torch.zeros(1, 3, dtype=torch.float64), Racing(3, max_rounds=2))
    assert one.probabilities().tolist() == [[1.0]]
    with pytest.raises(ValueError, match="sample 0 has no evaluated class"):
        probabilities(one.mean_errors)


@pytest.mark.parametrize("kwargs,error,message", [
    ({"strategy": object()}, TypeError, "strategy must be a Strategy such as Exhaustive"),  # was AttributeError
    ({"strategy": torch.tensor([1.5, 0.0])}, TypeError, "strategy must be a Strategy"),  # was RuntimeError
    ({"plan": False}, TypeError, "plan must be a Plan"),  # was AttributeError
    ({"weighting": torch.tensor([1.0, 2.0])}, ValueError, "Unknown timestep weighting"),  # was RuntimeError
    ({"loss": ["l2"]}, ValueError, "Unknown loss"),  # was TypeError: unhashable type
])
def test_classify_settings_found_by_the_fuzzer(kwargs, error, message):
    gmm = GaussianMixture.random(3, 2, seed=0)
    with pytest.raises(error, match=message):
        classify(gmm, gmm.sample(1)[0], **kwargs)


def test_replay_and_probabilities_settings_found_by_the_fuzzer():
    with pytest.raises(TypeError, match="weights must be a tensor"):  # was RuntimeError: Could not infer dtype
        replay(torch.rand(2, 3, 2), Exhaustive(3), None)
    with pytest.raises(TypeError, match="temperature must be a positive number"):  # was RuntimeError: ambiguous
        probabilities(torch.rand(2, 3), torch.tensor([1.5, float("nan")]))
    with pytest.raises(ValueError, match="finite, without NaN"):
        replay(torch.full((1, 3, 2), float("inf")), Exhaustive(3), torch.ones(3))
