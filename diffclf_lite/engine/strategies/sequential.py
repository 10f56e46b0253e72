"""Selection with a stated guarantee, for the class of least mean error over the grid: Kim & Nelson's fully
sequential indifference-zone procedure (KN), and elimination by anytime-valid confidence sequences.

Both see the errors as Kim & Nelson's simulation with common random numbers: each round evaluates one more grid point,
the same (t, eps) for every class still alive, and what matters is the variance of each *paired difference* (KN
estimates it from the first n0 rounds; the confidence sequences from all rounds so far). Each sample visits the grid
in its own uniformly random order, without replacement, unless the confidence sequences are given a proposal.

- `KimNelson`: Procedure KN (Kim & Nelson 2001, "A fully sequential procedure for indifference-zone selection in
  simulation", ACM TOMACS 11(3)). Class i leaves when, for some class l,
  mean_i(r) - mean_l(r) > W_il(r) = max(0, delta / (2 r) * (h^2 S_il^2 / delta^2 - r)), S_il^2 the variance of the
  paired differences i - l over the first n0 rounds, h^2 = 2 eta (n0 - 1), eta = ((2 alpha / (k - 1))^(-2 / (n0 - 1))
  - 1) / 2. The triangle closes after h^2 S_il^2 / delta^2 rounds.
- `AnytimeElimination`: a two-sided confidence sequence for every paired mean difference with the leader (Lai 1976:
  the scale-invariant normal mixture, valid at every round at once for normal draws of any unknown variance) and a
  union bound over the k - 1 rivals of the best class. With a `proposal` (its zero-shot default, `zero_shot_proposal`)
  the grid points are drawn by importance sampling instead: i.i.d., where the classes' errors differ most.
"""
from __future__ import annotations

import math

import torch

from .base import Request

__all__ = ["KimNelson", "AnytimeElimination", "kn_constant", "t_mixture_half_width", "zero_shot_delta",
           "zero_shot_proposal"]


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
    """An indifference zone from the exhaustive errors (N, S, C) of a few *unlabelled* images: `kappa` standard
    errors of exhaustive scoring's own estimate of the gap between its two best classes on a typical image (median
    over the images of sd(paired differences) / sqrt(S)). No labels: a gap below that is one the grid itself barely
    resolves; labels would instead give a temperature, and delta in probability."""
    if not kappa > 0:
        raise ValueError(f"kappa must be > 0 (standard errors of the exhaustive estimate), got {kappa}.")
    e = _unlabelled(errors, weights, "zero_shot")
    S = e.shape[1]
    top2 = e.mean(1).topk(2, dim=1, largest=False).indices  # (N, 2) the two best classes of each image
    d = e.gather(2, top2[:, None, 1:].expand(-1, S, 1)) - e.gather(2, top2[:, None, :1].expand(-1, S, 1))
    return max(kappa * float((d[..., 0].std(1) / S**0.5).median()), 1e-12)


def zero_shot_proposal(errors: torch.Tensor, weights: torch.Tensor | None = None, mix: float = 0.1) -> torch.Tensor:
    """Importance-sampling probabilities q (S,) over the grid from the exhaustive errors (N, S, C) of a few
    *unlabelled* images: q_j proportional to the root mean square, over the images and their classes, of the
    paired difference d_j = w_j (e_j,c - e_j,b) against each image's own best class b (no labels), mixed with
    the uniform distribution in proportion `mix` ("defensive" importance sampling, Hesterberg 1995, Technometrics
    37(2)), so every grid point keeps probability >= mix / S and no draw is weighted by more than 1 / mix.

    Why this q: a round drawn from q and weighted by 1 / (S q_j) estimates a pair's grid mean without bias, with
    second moment sum_j d_j^2 / (S^2 q_j); averaged over images and pairs that is sum_j a_j / q_j with
    a_j = mean d_j^2, which over the distributions q is least at q_j proportional to sqrt(a_j) (Lagrange)."""
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


class _Sequential:
    """What both procedures share: the grid, the level, the first screening round n0, the zone, a zero-shot
    constructor."""

    def __init__(self, n_timesteps: int, delta: float, alpha: float, n0: int, seed: int) -> None:
        if not 2 <= int(n0) <= int(n_timesteps):
            raise ValueError(f"need 2 <= n0 ({n0}) <= n_timesteps ({n_timesteps}): the first stage estimates variances "
                             "from n0 rounds of one grid point each.")
        if not 0 < alpha < 1:
            raise ValueError(f"alpha must lie in (0, 1), got {alpha}.")
        if not delta >= 0:
            raise ValueError(f"delta must be >= 0 (the indifference zone, in units of the mean error), got {delta}.")
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
        if self.round == self.s.n_timesteps or not bool(racing.any()):
            return None
        rows = torch.zeros(errors.shape[:2], dtype=torch.bool)
        i = racing.nonzero().flatten()
        rows[i, self.order[i, self.round]] = True
        self.round += 1
        return rows, self.alive & racing[:, None]


class KimNelson(_Sequential):
    """Procedure KN of Kim & Nelson (2001) on the timestep grid: each sample visits the grid in its own uniformly
    random order (without replacement), `n0` rounds first, then screens every round; `compare` bounds the rivals l
    each class is screened against (the `compare` alive classes of least mean; screening against fewer classes only
    drops fewer, so it keeps the guarantee). `delta` (> 0) is the indifference zone in units of the mean error;
    `zero_shot` sets it from unlabelled images (`zero_shot_delta`).

    The guarantee KN proves: if the paired differences are i.i.d. normal (any variances and correlations) and the best
    class's mean is at least `delta` below every other's, the best class is chosen with probability >= 1 - `alpha`.
    What it means here, honestly:
    - "Best" is the mean over the fixed grid, which exhaustive scoring computes, not an expectation over infinitely
      many draws. Sampling the grid without replacement makes the running mean a finite-population estimate: its
      variance is smaller by the factor (G - r) / (G - 1) than KN assumes, and exhausting the grid gives exhaustive
      scoring's choice exactly. That should make the procedure more cautious, not less, but KN's proof (Brownian
      motion limits of i.i.d. normal sums) does not cover it formally, nor the non-normal errors of a network.
    - When several classes lie within `delta` of the best, KN's theorem says nothing; the question then asked is
      whether the chosen class is within `delta` of the best ("good selection"). Both readings, and the normality,
      are checked empirically where the truth is known (the pruning benchmark and its unit test), not assumed.
    `alpha` is the error probability per image, over the random visiting order.
    """

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
        """For the samples idx: means (n, C), the `compare` alive rivals l of least mean (n, m), the variances S_il^2
        of the paired differences (n, C, m) over the first-stage rounds, and which pairs (i, l) are real (both alive,
        i != l)."""
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
    probability at least 1 - `alpha` the chosen class's grid mean is within `delta` of the least one (delta = 0:
    it is the class exhaustive scoring chooses), whatever the gaps between the classes, when the paired differences
    are i.i.d. normal with any (unknown) variances. The proof, from three published pieces:
    - for each pair (i, l), a two-sided confidence sequence for mu_i - mu_l at level alpha / (k - 1) that needs no
      known variance: the scale-invariant likelihood ratio of Lai (1976, "On confidence sequences", Ann. Statist.
      4(2)), with Lai's flat mixture over the mean replaced by a normal one (effect sizes mu / sigma ~ N(0, 1 / c2);
      sigma integrated out under its right Haar measure), is a test martingale in the filtration of the
      scale-invariant statistics (Wang & Ramdas 2023, "Anytime-valid t-tests and confidence sequences for Gaussian
      means with unknown variance", arXiv:2310.03722), so by Ville's inequality it stays below (k - 1) / alpha at
      every round at once with probability >= 1 - alpha / (k - 1). No variance bound and no first stage: the sample
      variance of the paired differences enters the width directly (`t_mixture_half_width`).
      A union bound over the k - 1 rivals l of the best class b makes every statement about a pair (b, l) true at
      once with probability >= 1 - alpha;
    - a class i leaves only when the lower confidence bound of mu_i - mu_leader exceeds 0 (so on that event b never
      leaves: the leader, chosen from the data at every round, is covered by the union bound);
    - the procedure stops early only when the upper confidence bound of mu_leader - mu_i is below delta for every
      alive i (so on that event the leader is within delta of b; no chain of drops within delta can add up), and
      otherwise at the end of the grid, where the means are exhaustive scoring's exactly.
    What it does not cover, honestly: the paired differences of a network are not normal, and without a `proposal`
    the grid is sampled without replacement, not drawn i.i.d. (the running mean then varies less, by
    (G - r) / (G - 1), and the procedure should be cautious rather than bold, but the theorem is for i.i.d. draws);
    the benchmark checks the rate empirically.
    `proposal` (S,), positive: importance sampling of the grid. Each round draws grid point j with probability
    q_j, independently of the earlier rounds (a point drawn again costs no evaluation: its errors are known), and
    weights its errors by 1 / (S q_j), so every round is an unbiased draw of each class's grid mean and the draws
    are i.i.d., as the theorem asks (the without-replacement caveat above no longer applies; normality still is
    assumed). A proposal that puts its draws where the classes differ most makes the paired differences vary less:
    `zero_shot` takes it from unlabelled images (`zero_shot_proposal`). If S rounds pass without a decision, the
    surviving classes are scored on the whole grid and the least grid mean among them is chosen, exactly.
    Without a proposal, each sample visits the grid in its own uniformly random order, without replacement.
    `c2` sets where the width is tightest (effect sizes near 1 / sqrt(c2) are the ones it is tuned for); `n0` is
    the first round that screens (>= 2: one difference says nothing about its own variance).
    """

    def __init__(self, n_timesteps: int = 500, delta: float = 0.0, alpha: float = 0.05, n0: int = 2, seed: int = 0,
                 c2: float = 2.0, proposal: torch.Tensor | None = None) -> None:
        super().__init__(n_timesteps, delta, alpha, n0, seed)
        if not c2 > 0:
            raise ValueError(f"c2 must be > 0 (the precision of the mixture over effect sizes mu / sigma), got {c2}.")
        self.c2 = float(c2)
        if proposal is not None:
            proposal = torch.as_tensor(proposal, dtype=torch.float64)
            if proposal.shape != (self.n_timesteps,) or not bool((torch.isfinite(proposal) & (proposal > 0)).all()):
                raise ValueError(f"proposal must hold one positive, finite probability per grid point "
                                 f"({self.n_timesteps},), got shape {tuple(proposal.shape)}: a point of probability 0 "
                                 "would never be drawn and the estimate would be biased; mix in the uniform "
                                 "distribution (zero_shot_proposal(..., mix=0.1)).")
            proposal = proposal / proposal.sum()
        self.proposal = proposal

    @classmethod
    def zero_shot(cls, errors: torch.Tensor, weights: torch.Tensor | None = None, kappa: float = 3.0,
                  mix: float = 0.1, **kwargs):
        """The procedure with `delta` from `zero_shot_delta` and the importance-sampling `proposal` from
        `zero_shot_proposal` (uniform share `mix`), both on the exhaustive errors (N, S, C) of unlabelled images."""
        kwargs.setdefault("proposal", zero_shot_proposal(errors, weights, mix))
        return super().zero_shot(errors, weights, kappa, **kwargs)

    def __repr__(self) -> str:
        q = self.proposal
        sampling = "uniform" if q is None else f"importance, max/min {float(q.max() / q.min()):.3g}"
        return (f"AnytimeElimination(n_timesteps={self.n_timesteps}, delta={self.delta:.3g}, alpha={self.alpha}, "
                f"n0={self.n0}, seed={self.seed}, c2={self.c2}, sampling={sampling})")


def t_mixture_half_width(var: torch.Tensor, n: int, alpha: float, c2: float) -> torch.Tensor:
    """Half-width of Lai's (1976) two-sided confidence sequence for a normal mean with unknown variance, after n
    i.i.d. draws with sample variance `var`: the set of mu where the mixture martingale
    M_n = sqrt(c2 / (n + c2)) (sum y^2 / (sum y^2 - (sum y)^2 / (n + c2)))^(n / 2), y = x - mu, is below 1 / alpha.
    Solving for mu: mean +- sqrt(var B (n - 1) / (n (n - B))), B = (n + c2)(1 - (alpha^2 c2 / (n + c2))^(1 / n));
    infinite while n <= B (too few draws to exclude anything at this level)."""
    b = (n + c2) * -math.expm1(math.log(alpha**2 * c2 / (n + c2)) / n)
    if n <= b:
        return torch.full_like(var, float("inf"))
    return (var * (b * (n - 1) / (n * (n - b)))).sqrt()


class _AnytimeState(_SequentialState):
    """Running sums per class (sum, sum of squares) and, for the current leader L of each sample, sum e_i e_L: the
    sample variance of every pair (i, L) at O(C) memory. When a sample's leader changes, its cross sums are
    recomputed from the errors of its earlier rounds (alive classes were evaluated at every one)."""

    def __init__(self, s: AnytimeElimination, n_samples: int, n_classes: int, weights: torch.Tensor) -> None:
        super().__init__(s, n_samples, n_classes, weights)
        if s.proposal is not None:  # i.i.d. draws from the proposal, each weighted by 1 / (S q_j)
            g = torch.Generator().manual_seed(s.seed)
            self.order = torch.multinomial(s.proposal.expand(n_samples, -1), s.n_timesteps, replacement=True,
                                           generator=g)
            self.weights = self.weights / (s.n_timesteps * s.proposal)
        self.completed = False  # the survivors of S rounds were sent to be scored on the whole grid
        self.squares = torch.zeros(n_samples, n_classes, dtype=torch.float64)
        self.cross = torch.zeros(n_samples, n_classes, dtype=torch.float64)  # sum over rounds of e_i e_leader
        self.leader = torch.zeros(n_samples, dtype=torch.long)

    def _collect(self, errors: torch.Tensor) -> torch.Tensor:
        self.errors = errors  # a change of leader reads earlier rounds back from it
        e = super()._collect(errors)
        self.squares += e * e
        self.cross += e * e.gather(1, self.leader[:, None])
        return e

    def next(self, errors: torch.Tensor) -> Request | None:
        if self.completed:
            return None
        request = super().next(errors)
        if request is None and self.s.proposal is not None and self.round == self.s.n_timesteps:
            racing = self.alive.sum(1) > 1  # S draws with replacement need not cover the grid: finish it exactly
            if bool(racing.any()):
                self.completed = True
                return racing[:, None].expand(-1, errors.shape[1]).clone(), self.alive & racing[:, None]
        return request

    def _screen(self, idx: torch.Tensor) -> None:
        """Drop i if LCB(mu_i - mu_leader) > 0; stop at the leader once UCB(mu_leader - mu_i) < delta for all i."""
        r, alive = self.round, self.alive[idx]
        leader = (self.sums[idx] / r).masked_fill(~alive, float("inf")).argmin(1)  # (n,)
        moved = leader != self.leader[idx]
        if bool(moved.any()):  # recompute sum e_i e_leader over the rounds so far for the samples whose leader moved
            m, rounds = idx[moved], self.order[idx[moved], :r]  # (m,), (m, r)
            f = (self.errors[m[:, None], rounds] * self.weights[rounds][..., None]).nan_to_num(0.0)  # (m, r, C)
            self.cross[m] = (f * f.gather(2, leader[moved][:, None, None].expand(-1, r, 1))).sum(1)
            self.leader[m] = leader[moved]
        sums, squares = self.sums[idx], self.squares[idx]
        d = sums - sums.gather(1, leader[:, None])  # sum of the paired differences e_i - e_leader
        dd = squares + squares.gather(1, leader[:, None]) - 2 * self.cross[idx]  # sum of their squares
        var = ((dd - d**2 / r) / (r - 1)).clamp(min=0)  # (n, C) sample variance of each pair (i, leader)
        half = t_mixture_half_width(var, r, self.s.alpha / max(self.k - 1, 1), self.s.c2)
        gap = d / r  # mean_i - mean_leader
        alive = alive & ~(gap - half > 0)
        done = ((half - gap < self.s.delta) | ~alive).scatter(1, leader[:, None], True).all(1)
        alive[done] = False
        alive[done, leader[done]] = True
        self.alive[idx] = alive


AnytimeElimination._state = _AnytimeState
