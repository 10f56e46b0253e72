"""Selection with a stated guarantee of the class of least mean error over the grid: Kim & Nelson's procedure KN
(`KimNelson`) and elimination by anytime-valid confidence sequences (`AnytimeElimination`). Both see the errors as a
simulation with common random numbers: each round evaluates one more grid point (visited in a random order, or drawn
by importance sampling), the same (t, eps) for every class alive; what matters is the variance of *paired differences*.
"""
from __future__ import annotations

import math

import torch

from ..checks import class_labels
from .base import Request

__all__ = ["KimNelson", "AnytimeElimination", "kn_constant", "t_mixture_half_width", "zero_shot_delta",
           "zero_shot_proposal", "outside_zone"]


def kn_constant(alpha: float, n_classes: int, n0: int) -> float:
    """h^2 = 2 eta (n0 - 1) of Procedure KN (Kim & Nelson 2001, eq. 1 with c = 1) for k = n_classes."""
    eta = ((2 * alpha / max(n_classes - 1, 1)) ** (-2 / (n0 - 1)) - 1) / 2
    return 2 * eta * (n0 - 1)


def _unlabelled(errors: torch.Tensor, weights: torch.Tensor | None, who: str) -> torch.Tensor:
    """The exhaustive errors (N, S, C) of unlabelled images, checked, times the plan's weights w_j / mean(w)."""
    errors = torch.as_tensor(errors, dtype=torch.float64)
    if errors.ndim != 3 or errors.shape[1] < 2 or errors.shape[2] < 2 or not bool(torch.isfinite(errors).all()):
        raise ValueError(f"{who} needs complete, finite exhaustive errors (N, S >= 2, C >= 2) without NaN, got shape "
                         f"{tuple(errors.shape)}; compute them with classify(model, x, Exhaustive(S)).errors.")
    S = errors.shape[1]
    weights = torch.ones(S, dtype=torch.float64) if weights is None else torch.as_tensor(weights).double()
    if weights.shape != (S,) or not bool((weights > 0).all()):
        raise ValueError(f"weights must be positive, one per plan entry ({S}), got shape {tuple(weights.shape)}.")
    return errors * (weights / weights.mean())[None, :, None]


def zero_shot_delta(errors: torch.Tensor, weights: torch.Tensor | None = None, kappa: float = 3.0) -> float:
    """An indifference zone from the exhaustive errors (N, S, C) of a few *unlabelled* images: `kappa` standard errors
    (median sd(paired differences) / sqrt(S)) of exhaustive scoring's own gap between its two best classes."""
    if not kappa > 0:
        raise ValueError(f"kappa must be > 0 (standard errors of the exhaustive estimate), got {kappa}.")
    e = _unlabelled(errors, weights, "zero_shot")
    S = e.shape[1]
    top2 = e.mean(1).topk(2, dim=1, largest=False).indices  # (N, 2) the two best classes of each image
    d = e.gather(2, top2[:, None, 1:].expand(-1, S, 1)) - e.gather(2, top2[:, None, :1].expand(-1, S, 1))
    return max(kappa * float((d[..., 0].std(1) / S**0.5).median()), 1e-12)


def zero_shot_proposal(errors: torch.Tensor, weights: torch.Tensor | None = None, mix: float = 0.1) -> torch.Tensor:
    """Importance-sampling probabilities q (S,) over the grid from the exhaustive errors (N, S, C) of a few
    *unlabelled* images: q_j proportional to the root mean square a_j^(1/2), over images and classes, of the paired
    difference d_j = w_j (e_j,c - e_j,b) against each image's own best class b, which minimises the mean second
    moment sum_j a_j / q_j of a round weighted by 1 / (S q_j); mixed with the uniform in proportion `mix` (defensive
    importance sampling, Hesterberg 1995, Technometrics 37(2)): no draw is weighted by more than 1 / mix."""
    if not 0 < mix <= 1:
        raise ValueError(f"mix must lie in (0, 1] (the uniform share that bounds the weights by 1 / mix), got {mix}.")
    e = _unlabelled(errors, weights, "zero_shot_proposal")
    S = e.shape[1]
    d = e - e.gather(2, e.mean(1).argmin(1)[:, None, None].expand(-1, S, 1))  # against each image's own best class
    rms = d.pow(2).mean((0, 2)).sqrt()  # (S,)
    uniform = torch.full((S,), 1.0 / S, dtype=torch.float64)
    if not float(rms.sum()) > 0:  # the classes never differ on these images: nothing to concentrate on
        return uniform
    return (1 - mix) * rms / rms.sum() + mix * uniform


def outside_zone(errors: torch.Tensor, weights: torch.Tensor, prediction: torch.Tensor, delta: float = 0.0,
                 kappa: float = 0.0) -> torch.Tensor:
    """The guarantee, checked on complete errors (N, S, C): (N,) True where the chosen class's grid mean exceeds the
    least one by more than max(delta, kappa s), s = sd_j(w_j (e_j,chosen - e_j,best)) / sqrt(S), exact on the grid."""
    e = _unlabelled(errors, weights, "outside_zone")  # w_j e_j / mean(w), checked: complete and finite
    rows, chosen = torch.arange(len(e)), class_labels(prediction, e.shape[2], len(e), "prediction")
    d = e[rows, :, chosen] - e[rows, :, e.mean(1).argmin(1)]  # (N, S) weighted differences against the best class
    zone = (kappa * (d.var(1, correction=0) / e.shape[1]).sqrt()).clamp(min=delta)
    return d.mean(1) > zone + 1e-12 * d.abs().mean(1)


class _Sequential:
    """What both procedures share: the grid, the level, the first screening round n0, the zone, `zero_shot`."""

    def __init__(self, n_timesteps: int, delta: float, alpha: float, n0: int, seed: int) -> None:
        if not 2 <= int(n0) <= int(n_timesteps):
            raise ValueError(f"need 2 <= n0 ({n0}) <= n_timesteps ({n_timesteps}): the first stage estimates variances "
                             "from n0 rounds of one grid point each.")
        if not (0 < alpha < 1 and delta >= 0):
            raise ValueError(f"need alpha in (0, 1), got {alpha}, and delta >= 0 (the indifference zone, in units of "
                             f"the mean error), got {delta}.")
        self.n_timesteps, self.delta, self.alpha, self.n0 = int(n_timesteps), float(delta), float(alpha), int(n0)
        self.seed = int(seed)

    @classmethod
    def zero_shot(cls, errors: torch.Tensor, weights: torch.Tensor | None = None, kappa: float = 3.0, **kwargs):
        """The procedure with `delta` from `zero_shot_delta` on the exhaustive errors (N, S, C) of unlabelled images."""
        return cls(torch.as_tensor(errors).shape[1], delta=zero_shot_delta(errors, weights, kappa), **kwargs)

    def start(self, n_samples: int, n_classes: int, weights: torch.Tensor, n_trials: int = 1) -> "_SequentialState":
        if n_trials != 1:
            raise ValueError(f"{type(self).__name__} takes one noise draw per timestep (n_trials = 1), got {n_trials}.")
        return self._state(self, n_samples, n_classes, weights)


class _SequentialState:
    def __init__(self, s: _Sequential, n_samples: int, n_classes: int, weights: torch.Tensor) -> None:
        self.s, self.round, self.k = s, 0, n_classes
        self.weights = weights.double() / weights.double().mean()
        self.alive = torch.ones(n_samples, n_classes, dtype=torch.bool)
        g = torch.Generator().manual_seed(s.seed)
        self.order = torch.rand(n_samples, s.n_timesteps, generator=g).argsort(1)  # (N, G): each sample's own order
        self.sums = torch.zeros(n_samples, n_classes, dtype=torch.float64)  # weighted errors summed over rounds

    def _collect(self, errors: torch.Tensor) -> torch.Tensor:
        """Add the last round's (weighted) errors of every alive class to the running sums; return them (N, C)."""
        j = self.order[:, self.round - 1]  # (N,)
        e = errors[torch.arange(len(j)), j] * self.weights[j][:, None]  # (N, C); NaN for classes not evaluated
        e = e.nan_to_num(0.0) * self.alive
        self.sums += e
        return e

    def next(self, errors: torch.Tensor) -> Request | None:
        if self.round > 0:
            self._collect(errors)
        racing = self.alive.sum(1) > 1
        if self.round >= self.s.n0 and bool(racing.any()):
            self._screen(racing.nonzero().flatten())
            racing = self.alive.sum(1) > 1
        if self.round == self.order.shape[1] or not bool(racing.any()):
            return None
        rows = torch.zeros(errors.shape[:2], dtype=torch.bool)
        i = racing.nonzero().flatten()
        rows[i, self.order[i, self.round]] = True
        self.round += 1
        return rows, self.alive & racing[:, None]


class KimNelson(_Sequential):
    """Procedure KN (Kim & Nelson 2001, ACM TOMACS 11(3)) on the timestep grid, each sample in its own random order
    without replacement: `n0` rounds, then i leaves when mean_i(r) - mean_l(r) > W_il(r) = max(0, delta / (2 r) *
    (h^2 S_il^2 / delta^2 - r)) for one of the `compare` alive classes l of least mean (fewer rivals only drop fewer),
    S_il^2 the variance of the paired differences over the first n0 rounds, h^2 = `kn_constant`. The theorem: for
    i.i.d. normal differences (any variances and correlations), if the best mean is at least `delta` below every
    other, it is chosen with probability >= 1 - `alpha`. Here the grid is sampled without replacement and the errors
    are not normal, and the question asked is whether the choice is within `delta` of the best: checked where the
    truth is known (the benchmark, its unit test)."""

    def __init__(self, n_timesteps: int = 500, delta: float = 1e-3, alpha: float = 0.05, n0: int = 20, seed: int = 0,
                 compare: int = 16) -> None:
        super().__init__(n_timesteps, delta, alpha, n0, seed)
        if not delta > 0:
            raise ValueError(f"KimNelson needs delta > 0 (the indifference zone, in units of the mean error), got "
                             f"{delta}; delta -> 0 makes KN visit the whole grid: use Exhaustive instead.")
        if int(compare) < 1:
            raise ValueError(f"compare must be at least 1, got {compare}.")
        self.compare = int(compare)

    def __repr__(self) -> str:
        return (f"KimNelson(n_timesteps={self.n_timesteps}, delta={self.delta:.3g}, alpha={self.alpha}, n0={self.n0}, "
                f"seed={self.seed}, compare={self.compare})")


class _KNState(_SequentialState):
    """KN's state: the errors of the first n0 rounds, from which every pair's variance is estimated once."""

    def __init__(self, s: _Sequential, n_samples: int, n_classes: int, weights: torch.Tensor) -> None:
        super().__init__(s, n_samples, n_classes, weights)
        self.first = torch.zeros(n_samples, s.n0, n_classes, dtype=torch.float64)  # first-stage rounds

    def _collect(self, errors: torch.Tensor) -> torch.Tensor:
        e = super()._collect(errors)
        if self.round <= self.s.n0:
            self.first[:, self.round - 1] = e
        return e

    def _pairs(self, idx: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """For the samples idx: means (n, C), the `compare` alive rivals l of least mean (n, m), the first-stage
        variances S_il^2 of the paired differences (n, C, m), and which pairs (i, l) are real (both alive, i != l)."""
        alive, mean = self.alive[idx], self.sums[idx] / self.round
        m = min(self.s.compare, alive.shape[1])
        rivals = mean.masked_fill(~alive, float("inf")).topk(m, dim=1, largest=False).indices  # (n, m)
        f = self.first[idx]
        f = f - f.mean(1, keepdim=True)  # (n, n0, C) centred first-stage errors
        fl = f.gather(2, rivals[:, None, :].expand(-1, f.shape[1], -1))  # (n, c, m)
        var = f.pow(2).sum(1) / (f.shape[1] - 1)  # (n, C)
        cov = torch.einsum("nrc,nrm->ncm", f, fl) / (f.shape[1] - 1)  # (n, C, m)
        s2 = (var[:, :, None] + var.gather(1, rivals)[:, None, :] - 2 * cov).clamp(min=0)  # S_il^2
        others = rivals[:, None, :] != torch.arange(alive.shape[1])[None, :, None]  # l != i
        real = alive.gather(1, rivals)[:, None, :] & others & alive[:, :, None]
        return mean, rivals, s2, real

    def _screen(self, idx: torch.Tensor) -> None:
        """Procedure KN's screening at round r: i leaves if mean_i - mean_l > W_il(r) for some l."""
        r, delta, h2 = self.round, self.s.delta, kn_constant(self.s.alpha, self.k, self.s.n0)
        mean, rivals, s2, real = self._pairs(idx)
        w = (delta / (2 * r) * (h2 * s2 / delta**2 - r)).clamp(min=0)  # (n, C, m)
        gap = mean[:, :, None] - mean.gather(1, rivals)[:, None, :]  # mean_i - mean_l
        self.alive[idx] &= ~((gap > w) & real).any(2)


KimNelson._state = _KNState


class AnytimeElimination(_Sequential):
    """Elimination by anytime-valid confidence sequences, with a stated guarantee of *good* selection: with
    probability at least 1 - `alpha` the chosen class's grid mean is within the zone z (below; z = 0: exhaustive
    scoring's choice) of the least one, whatever the gaps, for i.i.d. normal paired differences of any variances.
    - Per pair (i, l), a lower confidence sequence for mu_i - mu_l at level a = alpha / (k - 1), variance unknown:
      Lai's scale-invariant likelihood ratio (1976, Ann. Statist. 4(2)) mixed over effect sizes theta = mu / sigma
      ~ N(0, 1 / c2) is a test martingale M (Wang & Ramdas 2023, arXiv:2310.03722), and so is its half M+ over
      theta > 0. M = (M+ + M-) / 2 and M- <= 1 while the mean exceeds mu0 (the invariant likelihood is log-concave
      in theta), so there M >= (1 / a + 1) / 2 gives M+ >= 1 / a: by Ville's inequality the lower end of the
      two-sided sequence at level 2a / (1 + a) (`t_mixture_half_width`) holds at all rounds at once with probability
      1 - a; a union bound over the k - 1 rivals of the best class b makes all lower bounds on mu_b - mu_l true.
    - i leaves only when LCB(mu_i - mu_l) > 0 for one of the `compare` alive classes l of least mean: on that event
      b never leaves, whichever classes lead.
    - An early stop needs LCB(mu_i - mu_leader) > -z for every alive i, b included, so no chain of drops within the
      zone adds up; otherwise the survivors' grid means decide, exactly, once scored on the whole grid.
    The zone of a pair is max(`delta`, `kappa` s), s the estimate at that round of the standard error sd_j(d_j) /
    sqrt(S) with which exhaustive scoring itself measures mu_i - mu_l: no scale to set, and a gap the grid barely
    resolves gets a wider zone. `proposal` (S,), positive: importance sampling; each round draws grid point j with
    probability q_j, independently (a repeat costs no evaluation), weighted by 1 / (S q_j): an unbiased i.i.d. draw
    of each class's grid mean, as the theorem asks, that varies less where q follows the differences
    (`zero_shot_proposal`). Draws go on past S rounds up to 4S; the survivors then finish the grid. Without a
    proposal the grid is visited in a random order without replacement, which the theorem does not cover formally.
    Normality is assumed either way (the benchmark checks the rate). `c2` tunes the width for effect sizes near
    1 / sqrt(c2); `n0` (>= 2) is the first round screened; `compare` (>= 1) the leading classes i is tested against."""

    def __init__(self, n_timesteps: int = 500, delta: float = 0.0, alpha: float = 0.05, n0: int = 2, seed: int = 0,
                 c2: float = 2.0, proposal: torch.Tensor | None = None, compare: int = 3, kappa: float = 0.0) -> None:
        super().__init__(n_timesteps, delta, alpha, n0, seed)
        if not c2 > 0 or int(compare) < 1 or not 0 <= kappa < math.inf:
            raise ValueError(f"need c2 > 0 (the precision of the mixture over effect sizes mu / sigma), got {c2}, "
                             f"compare >= 1 (leading classes each class is tested against), got {compare}, and a "
                             f"finite kappa >= 0 (the zone in standard errors of exhaustive's own gap), got {kappa}.")
        self.c2, self.compare, self.kappa = float(c2), int(compare), float(kappa)
        if proposal is not None:
            proposal = torch.as_tensor(proposal, dtype=torch.float64)
            if proposal.shape != (self.n_timesteps,) or not bool((torch.isfinite(proposal) & (proposal > 0)).all()):
                raise ValueError(f"proposal must hold one positive, finite probability per grid point "
                                 f"({self.n_timesteps},), got shape {tuple(proposal.shape)}: a point of probability 0 "
                                 "is never drawn, which biases the estimate; use zero_shot_proposal(..., mix=0.1).")
            proposal = proposal / proposal.sum()
        self.proposal = proposal

    @classmethod
    def zero_shot(cls, errors: torch.Tensor, weights: torch.Tensor | None = None, kappa: float = 3.0,
                  mix: float = 0.1, alpha: float = 0.1, **kwargs):
        """The recommended setting. Zone: `kappa` standard errors of each exhaustive gap; proposal: `zero_shot_proposal`
        of `errors`; level `alpha` 0.1 (the measured rate of leaving the zone is far lower: benchmarks/pruning.py)."""
        proposal = kwargs.pop("proposal") if "proposal" in kwargs else zero_shot_proposal(errors, weights, mix)
        return cls(torch.as_tensor(errors).shape[1], kappa=kappa, alpha=alpha, proposal=proposal, **kwargs)

    def __repr__(self) -> str:
        q = self.proposal
        sampling = "uniform" if q is None else f"importance, max/min {float(q.max() / q.min()):.3g}"
        return (f"AnytimeElimination(n_timesteps={self.n_timesteps}, delta={self.delta:.3g}, alpha={self.alpha}, "
                f"n0={self.n0}, seed={self.seed}, c2={self.c2}, compare={self.compare}, kappa={self.kappa}, "
                f"sampling={sampling})")


def t_mixture_half_width(var: torch.Tensor, n: int, alpha: float, c2: float, one_sided: bool = False):
    """Half-width of Lai's (1976) two-sided confidence sequence for a normal mean of unknown variance after n i.i.d.
    draws of sample variance `var`: the mu where the mixture martingale M_n = sqrt(c2 / (n + c2)) (sum y^2 /
    (sum y^2 - (sum y)^2 / (n + c2)))^(n / 2), y = x - mu, is below 1 / alpha, i.e. mean +- sqrt(var B (n - 1) /
    (n (n - B))), B = (n + c2)(1 - (alpha^2 c2 / (n + c2))^(1 / n)); infinite while n <= B. `one_sided`: the width
    whose lower end alone holds at level alpha, the two-sided one at 2 alpha / (1 + alpha) (AnytimeElimination)."""
    alpha = 2 * alpha / (1 + alpha) if one_sided else alpha
    b = (n + c2) * -math.expm1(math.log(alpha**2 * c2 / (n + c2)) / n)
    if n <= b:
        return torch.full_like(var, float("inf"))
    return (var * (b * (n - 1) / (n * (n - b)))).sqrt()


class _AnytimeState(_SequentialState):
    """Per class sums of e, e^2 and, with each of the m leading classes l, e_i e_l (rebuilt when they change): O(Cm);
    for a zone on drawn rounds also those times S q_j, whose means estimate grid means (the zone's standard errors)."""

    def __init__(self, s: AnytimeElimination, n_samples: int, n_classes: int, weights: torch.Tensor) -> None:
        super().__init__(s, n_samples, n_classes, weights)
        if s.proposal is not None:  # i.i.d. draws from the proposal, each weighted by 1 / (S q_j)
            g = torch.Generator().manual_seed(s.seed)
            self.order = torch.multinomial(s.proposal.expand(n_samples, -1), 4 * s.n_timesteps, True, generator=g)
            self.weights = self.weights / (s.n_timesteps * s.proposal)
        self.scale = s.n_timesteps * s.proposal if s.proposal is not None else torch.ones(s.n_timesteps).double()
        self.completed = False  # the survivors of the last round were sent to be scored on the whole grid
        self.rivals = torch.zeros(n_samples, min(s.compare, n_classes), dtype=torch.long)  # leading l, last screen
        self.squares = torch.zeros_like(self.sums)  # sum of e^2
        self.cross = torch.zeros(n_samples, n_classes, self.rivals.shape[1], dtype=torch.float64)  # sum of e_i e_l
        self.weighted = s.kappa > 0 and s.proposal is not None  # sums of e^2 S q_j and e_i e_l S q_j needed
        if self.weighted:
            self.squares_q, self.cross_q = torch.zeros_like(self.squares), torch.zeros_like(self.cross)

    def _collect(self, errors: torch.Tensor) -> torch.Tensor:
        self.errors = errors  # a change of the leading classes reads earlier rounds back from it
        e = super()._collect(errors)
        el, q = e[:, :, None] * e.gather(1, self.rivals)[:, None, :], self.scale[self.order[:, self.round - 1]][:, None]
        self.squares, self.cross = self.squares + e * e, self.cross + el
        if self.weighted:
            self.squares_q, self.cross_q = self.squares_q + e * e * q, self.cross_q + el * q[..., None]
        return e

    def next(self, errors: torch.Tensor) -> Request | None:
        if self.completed:
            return None
        request, racing = super().next(errors), self.alive.sum(1) > 1
        if request is None and self.s.proposal is not None and self.round == self.order.shape[1] and racing.any():
            self.completed = True  # 4S draws with replacement need not cover the grid: the survivors finish it exactly
            return racing[:, None].expand(-1, errors.shape[1]).clone(), self.alive & racing[:, None]
        return request

    def _screen(self, idx: torch.Tensor) -> None:
        """Drop i if LCB(mu_i - mu_l) > 0 for a leading l; stop at the leader once LCB(mu_i - mu_leader) > -zone."""
        r, alive, C = self.round, self.alive[idx], self.k
        lead = (self.sums[idx] / r).masked_fill(~alive, float("inf")).topk(self.rivals.shape[1], 1, largest=False)[1]
        moved = (lead.sort(1).values != self.rivals[idx].sort(1).values).any(1)
        if bool(moved.any()):  # recompute sum e_i e_l over the rounds so far for the samples whose leading set moved
            m, rounds = idx[moved], self.order[idx[moved], :r]  # (m,), (m, r)
            f = (self.errors[m[:, None], rounds] * self.weights[rounds][..., None]).nan_to_num(0.0)  # (m, r, C)
            fl = f.gather(2, lead[moved][:, None, :].expand(-1, r, -1))
            self.cross[m] = torch.einsum("mrc,mrl->mcl", f, fl)
            if self.weighted:
                self.cross_q[m] = torch.einsum("mrc,mrl->mcl", f, fl * self.scale[rounds][..., None])
            self.rivals[m] = lead[moved]
        rivals, sums = self.rivals[idx], self.sums[idx]
        d = sums[:, :, None] - sums.gather(1, rivals)[:, None, :]  # (n, C, m) sums of the paired differences e_i - e_l
        dd, dq = (sq[idx][:, :, None] + sq[idx].gather(1, rivals)[:, None, :] - 2 * cross[idx]  # of their squares
                  for sq, cross in ((self.squares, self.cross), (self.squares_q, self.cross_q) if self.weighted
                                    else (self.squares, self.cross)))  # in order, S q_j = 1: the plain sums
        var = ((dd - d**2 / r) / (r - 1)).clamp(min=0)  # sample variance of each pair (i, l)
        half = t_mixture_half_width(var, r, self.s.alpha / max(C - 1, 1), self.s.c2, one_sided=True)
        gap = d / r  # mean_i - mean_l
        zone = (self.s.kappa * ((dq / r - gap**2).clamp(min=0) / self.s.n_timesteps).sqrt()).clamp(min=self.s.delta)
        alive = alive & ~((gap - half > 0) & alive.gather(1, rivals)[:, None, :]).any(2)
        col = (rivals == lead[:, :1]).long().argmax(1)[:, None, None].expand(-1, C, 1)  # the leader's column
        done = (((half - gap - zone).gather(2, col)[..., 0] < 0) | ~alive).scatter(1, lead[:, :1], True).all(1)
        alive[done] = False
        alive[done, lead[done, 0]] = True
        self.alive[idx] = alive


AnytimeElimination._state = _AnytimeState
