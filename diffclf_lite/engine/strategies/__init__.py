"""Strategies decide which (timestep, class) pairs to evaluate next; they never call the model (see `base`).

- `base`: the strategy protocol, `Exhaustive` (Li et al. Alg. 1) and `Candidates` (per-sample candidate sets).
- `staged`: the paper's staged pruning (Li et al. Alg. 2) and its Table 6 schedules.
- `elimination`: paired-test elimination (Clark & Jaini 2023) and `Racing`.
- `profiled`: `ProfiledRacing`, elimination that tests the grid mean exhaustive scoring would compute.
- `sequential`: `KimNelson` (Kim & Nelson's fully sequential indifference-zone selection) and `AnytimeElimination`
  (confidence sequences, optionally over an importance-sampled grid): elimination with a stated guarantee.
"""
from .base import Candidates, Exhaustive, Strategy, StrategyState, weighted_mean
from .elimination import Racing, SuccessiveElimination, grid_order
from .profiled import ProfiledRacing, density_order, timestep_profile
from .sequential import (AnytimeElimination, KimNelson, kn_constant, outside_zone, t_mixture_half_width,
                         zero_shot_delta, zero_shot_proposal)
from .staged import PAPER_SCHEDULES, Staged

__all__ = ["Strategy", "StrategyState", "weighted_mean", "Exhaustive", "Candidates", "Staged", "PAPER_SCHEDULES",
           "SuccessiveElimination", "Racing", "grid_order", "ProfiledRacing", "timestep_profile", "density_order",
           "KimNelson", "AnytimeElimination", "kn_constant", "t_mixture_half_width", "zero_shot_delta",
           "zero_shot_proposal", "outside_zone"]
