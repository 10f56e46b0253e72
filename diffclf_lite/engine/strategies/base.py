"""Strategies decide which (timestep, class) pairs to evaluate next; they never call the model.

A strategy describes the plan it needs (`n_timesteps` grid points) and hands out one state for a batch of N samples.
The plan has S = n_timesteps * n_trials entries (entry j belongs to grid point j // n_trials).
Each round, the state's `next(errors)` looks at the errors so far, (N, S, C) with NaN where not yet evaluated, and
returns a request `(rows, classes)`: sample i is to evaluate every entry in rows[i] (S,) for every class in
classes[i] (C,); or None when every sample is done. `alive` (N, C) marks the classes still in the running; the
prediction is the alive class of least mean error.
"""
from __future__ import annotations

from typing import Any, Protocol

import torch

from ..checks import integer

__all__ = ["Strategy", "StrategyState", "Exhaustive", "Candidates", "weighted_mean"]

Request = tuple[torch.Tensor, torch.Tensor]  # rows (N, S) bool, classes (N, C) bool


def weighted_mean(errors: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Mean over the evaluated timesteps of each class, weighted by w_t: (..., S, C) -> (..., C); NaN if none."""
    seen = ~errors.isnan()
    w = weights.to(errors.dtype)[:, None] * seen
    return (errors.nan_to_num(0.0) * w).sum(-2) / w.sum(-2)  # 0/0 = NaN where nothing was evaluated


class StrategyState(Protocol):
    alive: torch.Tensor  # (N, C) bool

    def next(self, errors: torch.Tensor) -> Request | None: ...


class Strategy(Protocol):
    n_timesteps: int

    def start(self, n_samples: int, n_classes: int, weights: torch.Tensor, n_trials: int = 1) -> StrategyState: ...


class Exhaustive:
    """Evaluate every class at every timestep of the plan (Li et al. Alg. 1)."""

    def __init__(self, n_timesteps: int = 100) -> None:
        self.n_timesteps = integer(n_timesteps, "n_timesteps", 1)

    def start(self, n_samples: int, n_classes: int, weights: torch.Tensor, n_trials: int = 1) -> "_ExhaustiveState":
        return _ExhaustiveState(n_samples, self.n_timesteps * n_trials, n_classes)

    def __repr__(self) -> str:
        return f"Exhaustive(n_timesteps={self.n_timesteps})"


class _ExhaustiveState:
    def __init__(self, n_samples: int, n_entries: int, n_classes: int) -> None:
        self.alive = torch.ones(n_samples, n_classes, dtype=torch.bool)
        self._request: Request | None = (torch.ones(n_samples, n_entries, dtype=torch.bool), self.alive.clone())

    def next(self, errors: torch.Tensor) -> Request | None:
        request, self._request = self._request, None
        return request


class Candidates:
    """Any strategy, restricted to each sample's own candidate conditions: candidates (N, C) bool."""

    def __init__(self, strategy: Strategy, candidates: torch.Tensor) -> None:
        self.strategy, self.candidates = strategy, torch.as_tensor(candidates, dtype=torch.bool)
        self.n_timesteps = strategy.n_timesteps

    def start(self, n_samples: int, n_classes: int, weights: torch.Tensor, n_trials: int = 1) -> "_CandidatesState":
        if tuple(self.candidates.shape) != (n_samples, n_classes):
            raise ValueError(f"candidates must be shaped (samples, conditions) = ({n_samples}, {n_classes}), "
                             f"got {tuple(self.candidates.shape)}.")
        if bool((self.candidates.sum(1) < 1).any()):
            raise ValueError("every sample needs at least one candidate condition.")
        state = self.strategy.start(n_samples, n_classes, weights, n_trials)
        state.alive &= self.candidates  # the inner strategy never ranks or requests a non-candidate
        return _CandidatesState(state, self.candidates)

    def __repr__(self) -> str:
        return f"Candidates({self.strategy!r}, {int(self.candidates.sum(1).max())} per sample)"


class _CandidatesState:
    def __init__(self, inner: Any, candidates: torch.Tensor) -> None:
        self.inner, self.candidates = inner, candidates

    @property
    def alive(self) -> torch.Tensor:
        return self.inner.alive & self.candidates

    def next(self, errors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        request = self.inner.next(errors)
        if request is None:
            return None
        rows, classes = request
        classes = classes & self.candidates
        return rows & classes.any(1, keepdim=True), classes
