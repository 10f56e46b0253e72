"""The shared Monte Carlo plan S = {(t_k, eps_k)} of Li et al. eq. 5: one timestep grid and one set of noise draws,
used for every candidate class so that error differences between classes are stable."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from .checks import integer
from .schedule import timestep_weights

__all__ = ["Plan", "timestep_grid", "make_plan", "official_noise_order", "plan_from_official_noise"]


def timestep_grid(n: int, num_train_timesteps: int) -> torch.Tensor:
    """n evenly spaced timesteps as the official code lays them: start T // n // 2, stride T // n."""
    n = integer(n, "the number of timesteps n")
    if not 1 <= n <= num_train_timesteps:
        raise ValueError(f"the timestep grid needs 1 <= n <= {num_train_timesteps} points, got n = {n}.")
    step = num_train_timesteps // n
    return torch.arange(step // 2, num_train_timesteps, step)[:n]


@dataclass(frozen=True)
class Plan:
    """The shared Monte Carlo set S = {(t_k, eps_k)}: the noise draws of each timestep, used by every class.

    Entries are grouped by grid point: entry j belongs to grid point j // n_trials.
    """

    timesteps: torch.Tensor  # (S,) long, indices into alphas_cumprod, each grid point repeated n_trials times
    noise: torch.Tensor  # (S, *shape)
    weights: torch.Tensor  # (S,) w_t of the chosen weighting
    n_trials: int = 1

    def __len__(self) -> int:
        return len(self.timesteps)


def make_plan(
    n_timesteps: int,
    shape: tuple[int, ...],
    alphas_cumprod: torch.Tensor,
    seed: int = 0,
    weighting: str = "uniform",
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    n_trials: int = 1,
    antithetic: bool = False,
) -> Plan:
    """Evenly spaced timesteps with n_trials seeded noise draws each (drawn on the CPU: the same on every device).

    With `antithetic`, the draws of a timestep come in pairs (eps, -eps): the part of a paired error difference
    that is linear in eps cancels exactly.
    """
    n_timesteps, n_trials, seed = integer(n_timesteps, "n_timesteps"), integer(n_trials, "n_trials"), integer(seed, "seed")
    if isinstance(shape, (str, bytes)) or not hasattr(shape, "__iter__"):
        raise TypeError(f"shape must be a tuple of sizes such as (4, 64, 64), got {shape!r}.")
    shape = tuple(integer(s, "each entry of shape", 1) for s in shape)
    if n_trials < 1 or (antithetic and n_trials % 2):
        raise ValueError(f"n_trials must be a positive integer, and even when antithetic; got {n_trials}.")
    t = timestep_grid(n_timesteps, len(alphas_cumprod)).repeat_interleave(n_trials)
    g = torch.Generator().manual_seed(seed)
    if antithetic:
        z = torch.randn((n_timesteps, n_trials // 2, *shape), generator=g, dtype=torch.float32)
        noise = torch.stack([z, -z], dim=2).reshape(n_timesteps * n_trials, *shape)
    else:
        noise = torch.randn((n_timesteps * n_trials, *shape), generator=g, dtype=torch.float32)
    w = timestep_weights(alphas_cumprod.cpu(), weighting)[t]
    return Plan(t.to(device), noise.to(device=device, dtype=dtype), w.to(device), int(n_trials))


def official_noise_order(stages: int | Sequence[int], n_trials: int = 1) -> torch.Tensor:
    """Row of an official saved noise file for each of our plan entries (grid point g, draw r, in our order).

    eval_prob_adaptive.py numbers timesteps in the order it first evaluates them (stage by stage, each stage's new
    sub-grid points in ascending order: `enumerate(curr_t_to_eval, start=len(t_evaluated))`) and gives timestep
    number k the noise rows k * n_trials ... k * n_trials + n_trials - 1; we index noise by grid position instead.
    `stages`: the evaluations per stage (a Staged schedule's n_samples), or one int for an exhaustive grid.
    """
    stages = [int(stages)] if isinstance(stages, int) else [int(n) for n in stages]
    if not stages or min(stages) < 1 or any(b <= a for a, b in zip(stages, stages[1:])) or int(n_trials) < 1:
        raise ValueError(f"stages must be positive and growing (a Staged schedule's n_samples) and n_trials positive; "
                         f"got stages {stages}, n_trials {n_trials}.")
    S, rank, k = stages[-1], [-1] * stages[-1], 0
    for n in stages:
        stride = S // n
        for g in list(range(stride // 2, S, stride))[:n]:  # the official `t_to_eval[stride // 2 :: stride][:n]`
            if rank[g] < 0:
                rank[g], k = k, k + 1
    first = torch.tensor(rank, dtype=torch.long) * n_trials  # the last stage covers the whole grid: every rank is set
    return (first[:, None] + torch.arange(n_trials)).flatten()


def plan_from_official_noise(noise: torch.Tensor, stages: int | Sequence[int], alphas_cumprod: torch.Tensor,
                             n_trials: int = 1, weighting: str = "uniform", device: str | torch.device = "cpu",
                             dtype: torch.dtype = torch.float32) -> Plan:
    """The plan that pairs each timestep with the noise the official code gives it, from its saved noise file (e.g.
    scripts/save_noise.py's (1024, 4, 64, 64) tensor; load it with torch.load(path, weights_only=True)): with the same
    image latents, stages and loss, `classify` then evaluates exactly the (t, eps) pairs eval_prob_adaptive.py does."""
    order = official_noise_order(stages, n_trials)
    noise = torch.as_tensor(noise)
    if noise.ndim < 2 or len(noise) < len(order):
        raise ValueError(f"the noise file holds {len(noise) if noise.ndim else 0} draws shaped {tuple(noise.shape[1:])} "
                         f"but the stages {stages} with {n_trials} draws per timestep need {len(order)}; pass the file "
                         "the official run used (its rows are indexed by evaluation order).")
    n = len(order) // n_trials
    t = timestep_grid(n, len(alphas_cumprod)).repeat_interleave(n_trials)
    w = timestep_weights(alphas_cumprod.cpu(), weighting)[t]
    return Plan(t.to(device), noise[order].to(device=device, dtype=dtype), w.to(device), int(n_trials))
