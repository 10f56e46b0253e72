"""The engine: the whole diffusion-classifier algorithm, and nothing else of the package (a test checks that it
imports nothing outside this folder). Read it in this order:

- `contract`: the one model contract (`EpsModel`) every adapter implements.
- `schedule`: noise schedules and the timestep weights of the ELBO.
- `plan`: the shared (t, eps) Monte Carlo plan (Li et al. eq. 5).
- `scoring`: batched errors of (sample, class) pairs, and `classify` / `replay` driving a strategy.
- `strategies/`: which pairs to evaluate next (exhaustive, staged, elimination, racing).
- `calibration`: class probabilities, a fitted temperature, calibration error.
- `checks`: the argument checks they share (whole-number counts, class labels, tensors from user input).
"""
from .calibration import cross_fitted_ece, expected_calibration_error, fit_temperature, probabilities, reliability_bins
from .contract import EpsModel, check_model
from .plan import Plan, make_plan, official_noise_order, plan_from_official_noise, timestep_grid
from .schedule import alphas_cumprod_from_betas, beta_schedule, timestep_weights
from .scoring import LOSSES, ClassificationResult, classify, evaluate_pairs, replay
from .strategies import (PAPER_SCHEDULES, AnytimeElimination, Candidates, Exhaustive, KimNelson, ProfiledRacing, Racing,
                         Staged, Strategy, SuccessiveElimination, density_order, grid_order, outside_zone,
                         timestep_profile, weighted_mean, zero_shot_proposal)

__all__ = [
    "EpsModel", "check_model", "beta_schedule", "alphas_cumprod_from_betas", "timestep_weights", "Plan",
    "timestep_grid", "make_plan", "official_noise_order", "plan_from_official_noise", "LOSSES", "evaluate_pairs",
    "classify", "ClassificationResult", "replay",
    "Strategy", "weighted_mean", "Exhaustive", "Candidates", "Staged", "PAPER_SCHEDULES", "SuccessiveElimination",
    "Racing", "grid_order", "KimNelson", "AnytimeElimination", "ProfiledRacing", "timestep_profile", "density_order",
    "zero_shot_proposal", "outside_zone", "probabilities", "fit_temperature", "expected_calibration_error",
    "reliability_bins", "cross_fitted_ece",
]
