"""Selection with a stated guarantee (Kim & Nelson; confidence sequences): the boundary, the constants, and the
guarantee itself, checked where the truth is known: exhaustive scoring's choice on the same grid."""
import pytest
import torch

from conftest import known_model
from diffclf_lite import (AnytimeElimination, Candidates, Exhaustive, GaussianMixture, KimNelson, Racing, classify,
                          outside_zone, replay, timestep_grid)
from diffclf_lite.engine.strategies.sequential import (kn_constant, t_mixture_half_width, zero_shot_delta,
                                                      zero_shot_proposal)


@pytest.fixture(scope="module")
def hard_mixture():
    """Exhaustive errors of 600 points of an overlapping 10-class mixture on a grid of 100 timesteps."""
    gmm = GaussianMixture.random(10, 8, separation=1.0, class_specific_variance=True, seed=3)
    x, _ = gmm.sample(60, seed=4)
    return classify(gmm, x, Exhaustive(100), seed=5, batch_size=65536)


def error_rate(ex, strategy):
    """Fraction of images whose chosen class is not within the strategy's zone of exhaustive scoring's choice."""
    r = replay(ex.errors, strategy, ex.weights)
    zone = {"delta": getattr(strategy, "delta", 0.0), "kappa": getattr(strategy, "kappa", 0.0)}
    return outside_zone(ex.errors, ex.weights, r.prediction, **zone).double().mean().item(), r


def test_zone_check_uses_the_exact_standard_error_of_the_gap_on_the_grid():
    """A chosen class 0.1 worse on average, its differences +-1 around that over 4 grid points (standard error of
    the grid mean 1 / sqrt(4) = 0.5): inside a zone of 1 standard error or of delta 0.2, outside one of 0.15 s."""
    errors = torch.zeros(1, 4, 2, dtype=torch.float64)
    errors[0, :, 1] = 0.1 + torch.tensor([1.0, -1.0, 1.0, -1.0])
    chosen, w = torch.tensor([1]), torch.ones(4)
    assert not outside_zone(errors, w, chosen, 0.0, 1.0) and not outside_zone(errors, w, chosen, 0.2, 0.0)
    assert outside_zone(errors, w, chosen, 0.0, 0.15) and not outside_zone(errors, w, torch.tensor([0]))
    assert not outside_zone(errors, 7 * w, chosen, 0.0, 1.0)  # the weights count relative to their mean
    with pytest.raises(ValueError, match="complete, finite exhaustive errors"):  # a pruned run's errors hold NaN
        outside_zone(errors.where(torch.arange(4)[None, :, None] < 3, float("nan")), w, chosen)
    with pytest.raises(ValueError, match="prediction must lie in"):
        outside_zone(errors, w, torch.tensor([2]))


@pytest.mark.parametrize("sigma", [0.01, 1.0, 30.0])
def test_t_mixture_confidence_sequence_holds_its_level_whatever_the_variance(sigma):
    """Normal draws of an unknown variance: the true mean leaves Lai's confidence sequence at some round of 500 with
    probability at most alpha, and not far less (a wrong constant would show either way); the width does not depend
    on sigma's units (scale invariance)."""
    x = sigma * torch.randn(4000, 500, generator=torch.Generator().manual_seed(0), dtype=torch.float64) + 3.0
    n = torch.arange(1, 501, dtype=torch.float64)
    mean = x.cumsum(1) / n
    var = ((x**2).cumsum(1) - n * mean**2) / (n - 1).clamp(min=1)
    for alpha in (0.05, 0.2):
        half = torch.stack([t_mixture_half_width(var[:, r - 1], r, alpha, 2.0) for r in range(2, 501)], 1)
        missed = ((mean[:, 1:] - 3.0).abs() > half).any(1).double().mean().item()
        assert alpha / 3 < missed <= alpha, (alpha, missed)
    v = torch.tensor([4.0])
    assert t_mixture_half_width(v, 2, 0.05, 2.0).isinf().all()  # two draws exclude nothing at this level
    assert t_mixture_half_width(100 * v, 50, 0.05, 2.0) == pytest.approx(10 * t_mixture_half_width(v, 50, 0.05, 2.0))
    assert t_mixture_half_width(v, 200, 0.05, 2.0) < t_mixture_half_width(v, 50, 0.05, 2.0)


def invariant_mixture(y: torch.Tensor, c2: float, half: str = "both") -> float:
    """Lai's mixture computed from its definition, by quadrature: the likelihood ratio of the scale-invariant
    statistic u = y / |y| under effect size theta (density prop. to exp(-n theta^2 / 2) int s^(n-1) exp(-s^2 / 2 +
    s theta sum u) ds), averaged over theta ~ N(0, 1 / c2), or over its negative half (renormalised)."""
    n, b = len(y), float(y.sum() / y.norm())
    s = torch.linspace(1e-6, 60, 6001, dtype=torch.float64)
    theta = torch.linspace(-12, 12, 1200, dtype=torch.float64)  # no point at 0: two mirror halves

    def log_density(t: torch.Tensor) -> torch.Tensor:
        return -n * t**2 / 2 + torch.logsumexp((n - 1) * s.log() - s**2 / 2 + s * t[:, None] * b, 1)

    ratio = (log_density(theta) - log_density(torch.zeros(1))).exp()
    prior = (c2 / (2 * torch.pi)) ** 0.5 * (-c2 * theta**2 / 2).exp() * (theta[1] - theta[0])
    keep = theta < 0 if half == "negative" else torch.ones_like(theta, dtype=torch.bool)
    return float((ratio * prior)[keep].sum() / prior[keep].sum())


def test_one_sided_bound_is_the_positive_half_of_lais_mixture():
    """The closed form of t_mixture_half_width's martingale is the mixture of invariant likelihood ratios (checked by
    quadrature); its negative half stays <= 1 while the mean exceeds mu0, so M >= (1/a + 1) / 2 implies M+ >= 1/a; and
    the lower end of the one-sided sequence misses from below with probability at most a, not far less."""
    g = torch.Generator().manual_seed(1)
    for n, shift, c2 in [(5, 0.4, 2.0), (12, 0.3, 2.0), (20, 0.8, 1.0), (30, -0.5, 0.5)]:
        y = torch.randn(n, generator=g, dtype=torch.float64) + shift
        closed = (c2 / (n + c2)) ** 0.5 * (y.pow(2).sum() / (y.pow(2).sum() - y.sum() ** 2 / (n + c2))) ** (n / 2)
        assert invariant_mixture(y, c2) == pytest.approx(float(closed), rel=1e-6)
        negative, positive = invariant_mixture(y, c2, "negative"), invariant_mixture(-y, c2, "negative")  # M-, M+
        assert (positive + negative) / 2 == pytest.approx(float(closed), rel=1e-6)
        wrong_side, right_side = (negative, positive) if y.mean() > 0 else (positive, negative)
        assert wrong_side <= 1 + 1e-9 and right_side > wrong_side, (n, shift, negative, positive)
    x = torch.randn(4000, 500, generator=torch.Generator().manual_seed(2), dtype=torch.float64) + 3.0
    n = torch.arange(1, 501, dtype=torch.float64)
    mean = x.cumsum(1) / n
    var = ((x**2).cumsum(1) - n * mean**2) / (n - 1).clamp(min=1)
    for a in (0.05, 0.2):
        half = torch.stack([t_mixture_half_width(var[:, r - 1], r, a, 2.0, one_sided=True) for r in range(2, 501)], 1)
        above = (mean[:, 1:] - half > 3.0).any(1).double().mean().item()
        assert a / 3 < above <= a, (a, above)


def test_kn_constant_is_kim_and_nelsons_eta():
    eta = ((2 * 0.05 / 9) ** (-2 / 19) - 1) / 2  # Kim & Nelson 2001, eq. 1: k = 10, n0 = 20, alpha = 0.05
    assert kn_constant(0.05, 10, 20) == pytest.approx(2 * eta * 19)
    assert kn_constant(0.01, 10, 20) > kn_constant(0.05, 10, 20) > kn_constant(0.05, 2, 20)  # stricter, fewer rivals


@pytest.mark.parametrize("alpha", [0.05, 0.2])
def test_guarantee_holds_where_naive_racing_breaks_its_level(hard_mixture, alpha):
    """Empirical rate of choices not within delta of exhaustive's <= alpha for both procedures, exact and with the
    zero-shot zone; racing with the same p threshold per test exceeds it (so this check can fail)."""
    cal = hard_mixture.errors[:30]  # their labels are never used
    for strategy in (AnytimeElimination(100, alpha=alpha), AnytimeElimination.zero_shot(cal, alpha=alpha),
                     AnytimeElimination(100, alpha=alpha, proposal=zero_shot_proposal(cal)),
                     AnytimeElimination.zero_shot(cal, alpha=alpha, proposal=None), KimNelson.zero_shot(cal, alpha=alpha)):
        rate, r = error_rate(hard_mixture, strategy)
        assert rate <= alpha, (strategy, rate)
        assert r.nfe.double().mean() < 0.9 * 100 * 10  # and it does prune
    naive, _ = error_rate(hard_mixture, Racing(100, p_value=alpha))
    assert naive > alpha


def test_exact_selection_runs_to_the_grid_end_on_a_tie_and_matches_exhaustive():
    """Two classes tied on average never separate: with delta = 0 the whole grid is visited and the choice is
    exhaustive scoring's; a zone wider than the gap stops early, within delta."""
    S, C = 40, 3
    t = timestep_grid(S, 1000)
    g = torch.Generator().manual_seed(1)
    offsets = torch.zeros(1000, C, dtype=torch.float64)
    noise = 0.05 * torch.randn(S, generator=g, dtype=torch.float64)
    offsets[t] = torch.stack([1 + noise, 1.0001 - noise.flip(0), 3 + noise], 1)  # 0 and 1 nearly tied, 2 hopeless
    model, x = known_model(offsets), torch.zeros(1, 4)
    ex = classify(model, x, Exhaustive(S))
    exact = classify(model, x, AnytimeElimination(S))
    hopeless_rounds = exact.nfe.item() - 2 * S  # class 2 (a constant 2 above class 0) leaves within a few rounds
    assert 2 <= hopeless_rounds <= 8 and exact.prediction.item() == ex.prediction.item()
    zone = classify(model, x, AnytimeElimination(S, delta=0.5))
    assert zone.nfe.item() < exact.nfe.item() and zone.alive.sum().item() == 1
    # drawn with replacement, 4S rounds need not cover the grid: the two survivors are then scored on all of it
    proposal = torch.linspace(1, 10, S, dtype=torch.float64)
    drawn = classify(model, x, AnytimeElimination(S, proposal=proposal))
    assert drawn.prediction.item() == ex.prediction.item() and drawn.alive[0, :2].all()
    assert not bool(drawn.errors[0, :, :2].isnan().any()) and drawn.nfe.item() < 3 * S


def test_sequential_strategies_replay_as_they_run_and_respect_candidates(hard_mixture):
    gmm = GaussianMixture.random(5, 4, separation=1.0, seed=0)
    x, _ = gmm.sample(6, seed=1)
    cand = torch.ones(30, 5, dtype=torch.bool)
    cand[:, 4] = False
    for s in (AnytimeElimination(50, n0=5), AnytimeElimination(50, n0=5, proposal=torch.linspace(1, 2, 50)),
              KimNelson(50, delta=0.05, n0=5), Candidates(KimNelson(50, n0=5), cand)):  # the last is checked below
        live = classify(gmm, x, s, seed=2)
        again = replay(classify(gmm, x, Exhaustive(50), seed=2).errors, s, live.weights)
        assert torch.equal(live.nfe, again.nfe) and torch.equal(live.prediction, again.prediction)
    assert not bool(live.errors[:, :, 4].isnan().logical_not().any()) and bool((live.prediction != 4).all())


def test_zero_shot_zones_are_standard_errors_of_the_exhaustive_gap(hard_mixture):
    """Kim & Nelson's one zone for all images comes from unlabelled images; the confidence sequences' zone is kappa
    standard errors of each image's own gap, measured as the run goes, and needs no images beforehand."""
    e = hard_mixture.errors[:30]
    assert zero_shot_delta(e, kappa=6.0) == pytest.approx(2 * zero_shot_delta(e, kappa=3.0))
    assert KimNelson.zero_shot(e).delta == pytest.approx(zero_shot_delta(e))
    cs = AnytimeElimination.zero_shot(e, kappa=2.5)
    assert (cs.delta, cs.kappa) == (0.0, 2.5) and torch.allclose(cs.proposal, zero_shot_proposal(e))
    assert (cs.alpha, AnytimeElimination.zero_shot(e, alpha=0.05).alpha) == (0.1, 0.05)  # the recommended level
    assert AnytimeElimination.zero_shot(e, proposal=None).proposal is None  # in order, the proposal not used


@pytest.mark.parametrize("drawn", [False, True])
def test_zone_standard_errors_estimate_the_grid_sd_of_each_paired_difference(hard_mixture, drawn):
    """The sums behind the zone: visiting the whole grid in order, the plain sums give the grid second moment of each
    pair's weighted difference exactly; importance-sampled rounds, each weighted by S q_j, give it unbiased. One
    image, 4,000 independent runs of 30 rounds (screening starts after them)."""
    one = hard_mixture.errors[7:8].expand(4000, -1, -1)
    w, S = hard_mixture.weights.double(), one.shape[1]
    proposal = zero_shot_proposal(hard_mixture.errors[:30]) if drawn else None
    state = AnytimeElimination(S, n0=S, proposal=proposal, kappa=3.0).start(len(one), one.shape[2], w)
    r = 30 if drawn else S
    for _ in range(r + 1):  # the last call collects round r
        state.next(one)
    lead = state.rivals[0, 0]
    d = (one[0] - one[0, :, lead : lead + 1]) * (w / w.mean())[:, None]  # (S, C) against rival `lead`
    sq, cross = (state.squares_q, state.cross_q) if drawn else (state.squares, state.cross)
    second = (sq + sq[:, lead : lead + 1] - 2 * cross[..., 0]) / r  # (4000, C)
    assert bool((state.rivals[:, 0] == lead).all())  # all runs read the same pairs (the rivals start at class 0)
    if not drawn:
        assert torch.allclose(second[0], d.pow(2).mean(0)) and torch.allclose(second, second[:1].expand_as(second))
    else:
        se = second.std(0) / len(second) ** 0.5
        assert bool(((second.mean(0) - d.pow(2).mean(0)).abs() <= 4 * se + 1e-12).all())
        assert bool((second.std(0)[d.pow(2).mean(0) > 0] > 0).all())  # the draws really differ between runs


def test_zone_follows_the_scale_of_each_images_own_errors():
    """The zone is kappa standard errors of the image's own gap, so it follows the scale of its errors: an image
    whose differences are ten times as large (gap and noise alike) is decided the same way at the same cost, where
    one fixed zone for both stops the quiet image sooner than the loud one."""
    S, t = 100, timestep_grid(100, 1000)
    noise = torch.randn(S, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    runs = {}
    for scale in (0.1, 1.0):
        offsets = torch.zeros(1000, 2, dtype=torch.float64)
        offsets[t] = (20 + scale * (noise + torch.tensor([0.0, 0.15]))).sqrt()  # l2 error = offset^2; gap ~1 SE
        model, x = known_model(offsets), torch.zeros(1, 4)
        runs[scale] = [classify(model, x, AnytimeElimination(S, **zone)) for zone in ({"kappa": 10.0}, {"delta": 0.2})]
    (quiet, quiet_fixed), (loud, loud_fixed) = runs[0.1], runs[1.0]
    assert quiet.nfe.item() == loud.nfe.item() < 2 * S and quiet.prediction.item() == loud.prediction.item()
    assert quiet_fixed.nfe.item() < loud_fixed.nfe.item()


def test_zero_shot_proposal_is_the_root_mean_square_paired_difference():
    """q_j proportional to the root mean square over images and classes of d_j against each image's own best class
    (no labels), mixed with the uniform distribution; worked by hand on two images, three grid points."""
    e = torch.tensor([[[1.0, 1.0], [1.0, 3.0], [1.0, 1.0]],  # image 1: class 0 best, d(class 1) = (0, 2, 0)
                      [[1.0, 1.0], [1.0, 1.0], [4.0, 1.0]]], dtype=torch.float64)  # image 2: class 1 best, (0, 0, 3)
    rms = torch.tensor([0.0, 1.0, 1.5], dtype=torch.float64)  # sqrt(mean of d^2 over 2 images x 2 classes)
    q = zero_shot_proposal(e, mix=0.1)
    assert torch.allclose(q, 0.9 * rms / rms.sum() + 0.1 / 3) and q.sum().item() == pytest.approx(1.0)
    assert torch.allclose(zero_shot_proposal(e[:, :, [0, 0]]), torch.full((3,), 1 / 3, dtype=torch.float64))
    assert torch.allclose(AnytimeElimination.zero_shot(e).proposal, q)


def test_importance_sampled_rounds_estimate_the_grid_mean_with_less_variance(hard_mixture):
    """Each round drawn from the proposal and weighted by 1 / (S q_j) is an unbiased draw of every class's grid mean
    (checked by simulation to 4 standard errors); on images other than the calibration ones, the zero-shot proposal
    makes the paired differences against the best class vary less than uniform draws do (computed exactly)."""
    errors, weights = hard_mixture.errors, hard_mixture.weights
    q = zero_shot_proposal(errors[:30])
    one = errors[30:31].expand(4000, -1, -1)
    state = AnytimeElimination(100, n0=100, proposal=q).start(4000, 10, weights)  # n0 = S: nothing is screened
    for _ in range(6):
        state.next(one)
    draws = state.sums / 5  # five rounds collected (the sixth request is not yet answered)
    se = draws.std(0) / 4000**0.5
    assert ((draws.mean(0) - errors[30].mean(0)).abs() < 4 * se).all()
    held = errors[30:]
    d = held - held.gather(2, held.mean(1).argmin(1)[:, None, None].expand(-1, 100, 1))
    mu = d.mean(1)
    var_is = (d.pow(2) / (100 * q)[None, :, None]).mean(1) - mu**2
    var_uniform = d.var(1, unbiased=False)
    rivals = mu > 0
    assert (var_is[rivals] / var_uniform[rivals]).median() < 0.8


def test_bad_settings_say_what_to_do():
    with pytest.raises(ValueError, match="n0"):
        AnytimeElimination(10, n0=20)
    with pytest.raises(ValueError, match="alpha"):
        KimNelson(100, alpha=1.5)
    with pytest.raises(ValueError, match="use Exhaustive"):
        KimNelson(100, delta=0.0)
    with pytest.raises(ValueError, match="delta >= 0"):
        AnytimeElimination(100, delta=-1.0)
    with pytest.raises(ValueError, match="without NaN"):
        zero_shot_delta(torch.full((2, 5, 3), float("nan")))
    with pytest.raises(ValueError, match="need c2 > 0"):
        AnytimeElimination(100, c2=0.0)
    with pytest.raises(ValueError, match="compare >= 1"):
        AnytimeElimination(100, compare=0)
    with pytest.raises(ValueError, match="proposal must hold one positive"):
        AnytimeElimination(3, proposal=torch.tensor([0.5, 0.5, 0.0]))
    with pytest.raises(ValueError, match="proposal must hold one positive"):
        AnytimeElimination(3, proposal=torch.ones(4))
    with pytest.raises(ValueError, match="mix must lie in"):
        zero_shot_proposal(torch.ones(2, 5, 3), mix=0.0)
    with pytest.raises(ValueError, match="n_trials = 1"):
        AnytimeElimination(10, n0=2).start(1, 3, torch.ones(20), n_trials=2)


def test_pair_sums_follow_the_leading_classes_when_they_move(hard_mixture):
    """The running sums behind each pair (i, l), l one of the three leading classes, equal the sums recomputed from
    the rounds visited, after the leading classes of some samples have changed (the cross sums are then rebuilt)."""
    errors, weights = hard_mixture.errors[:200], hard_mixture.weights
    state = AnytimeElimination(100).start(len(errors), errors.shape[2], weights)
    first = None
    for _ in range(30):
        if state.next(errors) is None:
            break
        if state.round == 3:
            first = state.rivals.sort(1).values.clone()
    racing = state.alive.sum(1) > 1
    moved = racing & (state.rivals.sort(1).values != first).any(1)
    assert int(moved.sum()) >= 3 and int(racing.sum()) >= 20 and state.rivals.shape[1] == 3  # moved sets are covered
    r = state.round - 1  # rounds collected so far (the last request is not yet answered)
    rounds = state.order[:, :r]
    e = errors[torch.arange(len(errors))[:, None], rounds] * (weights / weights.mean())[rounds][..., None]
    e = e * state.alive[:, None, :]  # classes that left stop accruing; compare the alive ones only
    lead = e.gather(2, state.rivals[:, None, :].expand(-1, r, -1))  # (N, r, 3)
    both = (state.alive[:, :, None] & state.alive.gather(1, state.rivals)[:, None, :])[racing]
    assert torch.allclose(state.cross[racing][both], torch.einsum("nrc,nrl->ncl", e, lead)[racing][both])
    assert torch.allclose(state.sums[racing][state.alive[racing]], e.sum(1)[racing][state.alive[racing]])


def test_draws_go_on_past_the_grid_size_and_never_cost_more_than_finishing_the_grid(hard_mixture):
    """Confidence sequences hold at every round, so importance-sampled draws go on past S rounds (repeats are free)
    instead of scoring the survivors on the whole grid at round S: per image, never more evaluations than that; fewer
    in total; and still within its zone of exhaustive scoring's choice at the stated rate."""
    errors, weights = hard_mixture.errors[30:], hard_mixture.weights
    strategy = AnytimeElimination.zero_shot(hard_mixture.errors[:30], hard_mixture.weights, kappa=1.0, alpha=0.05)

    def run(S_rounds_only: bool) -> tuple[torch.Tensor, int, int]:
        state = strategy.start(len(errors), errors.shape[2], weights)
        if S_rounds_only:
            state.order = state.order[:, :100]  # the same draws, cut at S rounds
        seen = torch.full_like(errors, float("nan"))
        while (request := state.next(seen)) is not None:
            pairs = request[0][:, :, None] & request[1][:, None, :]
            seen[pairs] = errors[pairs]
        grid_mean = hard_mixture.mean_errors[30:]  # survivors scored on the whole grid: the alive one of least mean
        wrong = int(outside_zone(errors, weights, grid_mean.masked_fill(~state.alive, float("inf")).argmin(1),
                                 kappa=strategy.kappa).sum())
        return (~seen.isnan()).flatten(1).sum(1), state.round, wrong

    long, rounds, wrong = run(False)
    short, short_rounds, _ = run(True)
    assert rounds > 100 >= short_rounds and bool((long <= short).all()) and int(long.sum()) < int(short.sum())
    assert wrong <= 0.05 * len(errors)
