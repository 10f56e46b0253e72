"""Profiled racing (ours): successive elimination that visits the grid densest where paired differences vary most
(a profile measured once per model) and tests the *grid* mean that exhaustive evaluation would compute, not a mean
over an infinite population; with an indifference zone (`ProfiledRacing.calibrated`) it stops deciding between
classes that are nearly equally likely.
"""
from __future__ import annotations

import warnings

import torch

from ..calibration import fit_temperature
from .elimination import SuccessiveElimination, _EliminationState, _t_stat, grid_order
from .sequential import _unlabelled

__all__ = ["ProfiledRacing", "timestep_profile", "density_order"]


def timestep_profile(errors: torch.Tensor, smooth: int = 5) -> torch.Tensor:
    """How much paired error differences vary locally at each plan entry, (S,) with maximum 1, measured on
    exhaustive errors (N, S, C) of a few calibration images (e.g. training images): the root mean square, over
    images and rivals of each image's best class, of half the squared step between neighbouring entries, each image
    normalised to mean 1, smoothed over +-`smooth` entries."""
    errors = torch.as_tensor(errors, dtype=torch.float64)
    if errors.ndim != 3 or errors.shape[1] < 2 or bool(errors.isnan().any()):
        raise ValueError(f"timestep_profile needs complete exhaustive errors (N, S >= 2, C) without NaN, got shape "
                         f"{tuple(errors.shape)}; compute them with classify(model, x, Exhaustive(S)).errors.")
    N, S, C = errors.shape
    best = errors.mean(1).argmin(1)
    d = errors - errors.gather(2, best[:, None, None].expand(-1, S, 1))  # (N, S, C) paired differences
    local = _local_variance(d)
    local = local / local.mean((1, 2), keepdim=True).clamp(min=1e-300)  # every image counts the same
    prof = local.mean((0, 2)).sqrt()
    k = min(int(smooth), S - 1)
    padded = torch.nn.functional.pad(prof[None, None], (k, k), mode="replicate")
    prof = torch.nn.functional.avg_pool1d(padded, 2 * k + 1, stride=1)[0, 0]
    return prof / prof.max().clamp(min=1e-300)


def density_order(profile: torch.Tensor, floor: float = 0.1) -> torch.Tensor:
    """A visiting order of the grid whose every prefix is spread with density ~ max(profile, floor * max): the
    van der Corput sequence pushed through the inverse CDF of that density, first visits kept, the rest appended.
    A profile of zeros (differences that never vary) gives the plain stratified order."""
    profile = torch.as_tensor(profile, dtype=torch.float64)
    if profile.ndim != 1 or len(profile) == 0 or not bool((profile >= 0).all()) or not 0 < floor <= 1:
        raise ValueError("density_order needs a non-negative profile (S,) and 0 < floor <= 1 "
                         f"(got shape {tuple(profile.shape)}, floor {floor}).")
    if not float(profile.max()) > 0:
        return grid_order(len(profile), "stratified")
    q = profile.clamp(min=floor * float(profile.max()))
    cdf = torch.cumsum(q, 0) / q.sum()
    K = 1 << max(12, (len(q) * 64 - 1).bit_length())
    u = (grid_order(K, "stratified").double() + 0.5) / K
    hits = torch.searchsorted(cdf, u).clamp(max=len(q) - 1)
    first = torch.full((len(q),), K, dtype=torch.long).scatter_reduce_(0, hits, torch.arange(K), "amin")
    rest = grid_order(len(q), "stratified")
    tie = torch.empty(len(q), dtype=torch.long).scatter_(0, rest, torch.arange(len(q)))  # unvisited: stratified
    return torch.argsort(first * len(q) + tie)


def _local_variance(d: torch.Tensor) -> torch.Tensor:
    """Local noise variance at each row of d (n, R, A), rows in grid order: half the squared step to each
    neighbour, averaged (a smooth trend in t cancels; the successive-difference estimator of systematic sampling)."""
    step = (d[:, 1:] - d[:, :-1]).pow(2) / 2  # (n, R - 1, A)
    return torch.cat([step[:, :1], (step[:, 1:] + step[:, :-1]) / 2, step[:, -1:]], 1)


class ProfiledRacing(SuccessiveElimination):
    """Ours: pooled racing that (1) visits the grid with density ~ a measured `profile` of where paired differences
    vary (floored at `floor` of its maximum, so no region is skipped), (2) estimates the *grid* mean difference that
    exhaustive evaluation computes, each visited entry standing for the grid entries nearest to it, and (3) takes
    its variance from local (successive) differences, with each visited entry known exactly: as the visited entries
    fill the informative part of the grid, the uncertainty about the exhaustive decision goes to zero.
    (4) `indifference` delta (in units of the mean error, default 0) stops racing a rival once it is confidently no
    more than delta *better* than the leader: near ties end early, within delta of exhaustive evaluation's choice
    (with the test's confidence, drop by drop). `calibrated` sets delta to `tolerance` times the temperature fitted
    on labelled calibration images, so a pick within delta costs at most tanh(tolerance / 2) of expected accuracy
    on that image, in the model's calibrated probabilities. Without a profile the order is stratified. Measure one
    with `timestep_profile` on a few calibration images, never on the test images (or let `calibrated` do both).
    """

    def __init__(self, n_timesteps: int = 1000, profile: torch.Tensor | None = None, floor: float = 0.1,
                 min_rounds: int = 3, p_value: float = 5e-4, max_rounds: int | None = None,
                 indifference: float = 0.0) -> None:
        super().__init__(n_timesteps, min_rounds, p_value, max_rounds, "stratified", 0, pooled=True)
        if not indifference >= 0:
            raise ValueError(f"indifference must be >= 0 (a difference of mean errors), got {indifference}.")
        self.indifference = float(indifference)
        self.temperature: float | None = None  # set by `calibrated`
        if profile is not None:
            if len(profile) != n_timesteps:
                raise ValueError(f"the profile has {len(profile)} entries but the grid has {n_timesteps} timesteps; "
                                 "measure it on a plan of the same grid (n_trials = 1).")
            self.order = density_order(profile, floor)[: self.max_rounds]
            self._order_name = f"profile, floor {floor}"

    @classmethod
    def calibrated(cls, errors: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None = None,
                   tolerance: float = 0.25, **kwargs) -> "ProfiledRacing":
        """Profiled racing set up from the exhaustive errors (N, S, C) of labelled calibration images (never the
        test images): the profile from `timestep_profile`, the indifference zone `tolerance` x the temperature that
        `fit_temperature` finds for their mean errors (plan weights `weights`, default uniform: use the weights of
        the plan the strategy will run on). Calibration images the model separates perfectly give a temperature near
        0, hence no indifference zone: the safe side. The bound tanh(tolerance / 2) is in the model's calibrated
        probabilities, and holds for each drop with the confidence of the test, not with certainty."""
        for name in ("profile", "indifference"):
            if name in kwargs:
                raise TypeError(f"calibrated sets `{name}` itself from the calibration errors; pass {name} to "
                                "ProfiledRacing(...) directly to choose it by hand.")
        errors = torch.as_tensor(errors, dtype=torch.float64)
        profile = timestep_profile(errors)  # checks the shape and NaN
        if not tolerance >= 0:
            raise ValueError(f"tolerance must be >= 0 (a multiple of the fitted temperature), got {tolerance}.")
        with warnings.catch_warnings():  # perfectly separated calibration images: a tiny temperature is the answer
            warnings.filterwarnings("ignore", message="held-out samples are perfectly separated")
            temperature = fit_temperature(_unlabelled(errors, weights, "calibrated").mean(1), labels)
        strategy = cls(errors.shape[1], profile, indifference=tolerance * temperature, **kwargs)
        strategy.temperature = temperature
        return strategy

    def start(self, n_samples: int, n_classes: int, weights: torch.Tensor, n_trials: int = 1) -> "_ProfiledState":
        return _ProfiledState(self, n_samples, n_classes, weights, n_trials)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(n_timesteps={self.n_timesteps}, min_rounds={self.min_rounds}, "
                f"p_value={self.p_value}, max_rounds={self.max_rounds}, order={self._order_name!r}, "
                f"indifference={self.indifference:.3g})")


class _ProfiledState(_EliminationState):
    grid_sorted = True

    def _statistic(self, e: torch.Tensor, alive: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Nearest-entry estimate of the grid mean difference, its variance from pooled local variances."""
        G, R = len(self.weights), len(rows)
        mid = (rows[1:] + rows[:-1]).double() / 2
        edges = torch.cat([torch.tensor([-0.5], dtype=torch.float64), mid, torch.tensor([G - 0.5], dtype=torch.float64)])
        cell = edges[1:].ceil() - edges[:-1].ceil()  # (R,) grid entries nearest to each visited one (sum G)
        w = cell / G
        mean = (e * w[None, :, None]).sum(1).masked_fill(~alive, float("inf"))
        best = mean.argmin(1)
        d = e - e.gather(2, best[:, None, None].expand(-1, R, 1))  # (n, R, A) paired differences
        dm = (d * w[None, :, None]).sum(1)  # (n, A) estimate of the grid mean difference
        rivals = alive.clone().scatter_(1, best[:, None], False)
        A = rivals.sum(1).clamp(min=1)  # (n,)
        local = (_local_variance(d).nan_to_num(0.0) * rivals[:, None, :]).sum(2) / A[:, None]  # (n, R) pooled
        # an unvisited entry of cell i is estimated by entry i: its own noise plus entry i's, shared by the cell
        var = (local * ((cell - 1) + (cell - 1) ** 2)).sum(1, keepdim=True) / G**2  # (n, 1)
        df = (A * (R - 1.0))[:, None].expand_as(dm)
        # H0 "the rival beats the leader by delta or more": t for the grid mean difference dm against -delta
        return _t_stat(dm + self.s.indifference, var.sqrt().expand_as(dm)), df, best
