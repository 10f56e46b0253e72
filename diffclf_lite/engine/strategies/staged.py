"""The paper's staged pruning (Li et al. Alg. 2) and the schedules of its Table 6."""
from __future__ import annotations

from typing import Sequence

import torch

from ..checks import integer
from .base import Request, weighted_mean

__all__ = ["Staged", "PAPER_SCHEDULES"]


class Staged:
    """Li et al. Alg. 2 as the official code runs it: stage i evaluates an evenly strided sub-grid of
    n_samples[i] points of one grid of max(n_samples) timesteps (skipping timesteps already evaluated) for
    the surviving classes, then keeps the to_keep[i] classes of least mean error over all evaluations so far.

    Exact ties (equal mean errors, e.g. duplicate prompts) go to the lowest class index, here and in the final argmin.
    The official code keeps `torch.topk(-errors, k)` of its survivor list, which after the first stage is ordered by
    the previous ranking, not by class; topk does not document which of equal values it returns, so a tie may be
    broken differently there. With an official noise file (`plan_from_official_noise`) everything else agrees."""

    def __init__(self, n_samples: Sequence[int], to_keep: Sequence[int]) -> None:
        if isinstance(n_samples, (str, bytes)) or isinstance(to_keep, (str, bytes)):
            raise TypeError(f"n_samples and to_keep must be lists of whole numbers, got {n_samples!r} and {to_keep!r}.")
        n_samples = [integer(n, "each entry of n_samples") for n in n_samples]
        to_keep = [integer(k, "each entry of to_keep") for k in to_keep]
        if not n_samples or len(n_samples) != len(to_keep):
            raise ValueError(
                f"n_samples {n_samples} and to_keep {to_keep} must be non-empty and of the same length "
                "(one entry per stage)."
            )
        if min(n_samples) < 1 or min(to_keep) < 1:
            raise ValueError(f"every stage needs at least one sample and one kept class: {n_samples}, {to_keep}.")
        if any(b <= a for a, b in zip(n_samples, n_samples[1:])):
            raise ValueError(f"n_samples must grow from stage to stage (each stage refines the grid), got {n_samples}.")
        if any(b > a for a, b in zip(to_keep, to_keep[1:])):
            raise ValueError(f"to_keep must shrink (or stay) from stage to stage, got {to_keep}.")
        self.n_samples, self.to_keep = n_samples, to_keep
        self.n_timesteps = max(n_samples)

    def start(self, n_samples: int, n_classes: int, weights: torch.Tensor, n_trials: int = 1) -> "_StagedState":
        if self.to_keep[0] > n_classes:
            raise ValueError(
                f"the first stage keeps {self.to_keep[0]} classes but there are only {n_classes} candidates; "
                "lower to_keep or use Exhaustive."
            )
        return _StagedState(self, n_samples, n_classes, weights, n_trials)

    def stage_grid(self, stage: int) -> list[int]:
        """Grid positions of stage `stage`: the official code's `t_to_eval[stride // 2 :: stride][:n]`."""
        n, S = self.n_samples[stage], self.n_timesteps
        stride = S // n
        return list(range(stride // 2, S, stride))[:n]

    def __repr__(self) -> str:
        return f"Staged(n_samples={self.n_samples}, to_keep={self.to_keep})"


class _StagedState:
    def __init__(self, strategy: Staged, n_samples: int, n_classes: int, weights: torch.Tensor, n_trials: int) -> None:
        self.strategy, self.weights, self.n_trials, self.stage = strategy, weights, n_trials, 0
        self.alive = torch.ones(n_samples, n_classes, dtype=torch.bool)
        self.evaluated = torch.zeros(strategy.n_timesteps, dtype=torch.bool)  # all samples move in lockstep

    def next(self, errors: torch.Tensor) -> Request | None:
        s = self.strategy
        if self.stage > 0:  # prune after the previous stage's evaluations
            means = weighted_mean(errors, self.weights).masked_fill(~self.alive, float("inf"))  # (N, C)
            keep = torch.sort(means, dim=1, stable=True).indices[:, : s.to_keep[self.stage - 1]]
            self.alive = torch.zeros_like(self.alive).scatter_(1, keep, True)
        if self.stage == len(s.n_samples):
            return None
        rows = torch.zeros_like(self.evaluated)
        rows[s.stage_grid(self.stage)] = True
        rows &= ~self.evaluated  # timesteps already evaluated are reused, never evaluated again
        self.evaluated |= rows
        self.stage += 1
        entries = rows.repeat_interleave(self.n_trials)  # every noise draw of the chosen grid points
        return entries.expand(len(self.alive), -1), self.alive.clone()


# Li et al. Table 6 / official code: (evaluations per stage, classes kept per stage, loss).
PAPER_SCHEDULES: dict[str, tuple[tuple[int, ...], tuple[int, ...], str]] = {
    "cifar10": ((50, 500), (5, 1), "l1"),
    "stl10": ((100, 500), (5, 1), "l1"),
    "pets": ((25, 250), (5, 1), "l1"),
    "flowers102": ((20, 50, 100, 500), (20, 10, 5, 1), "l1"),
    "food101": ((20, 50, 100, 500), (20, 10, 5, 1), "l2"),
    "aircraft": ((20, 50, 100, 500), (20, 10, 5, 1), "l2"),
    "imagenet": ((50, 100, 500, 1000), (500, 50, 10, 1), "l2"),
    "objectnet": ((50, 100, 500, 1000), (25, 10, 5, 1), "l2"),
}
