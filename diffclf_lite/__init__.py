"""diffclf-lite: a diffusion model is secretly a zero-shot classifier (Li et al., ICCV 2023), made practical.

The package in layers, each importing only the ones above it:

- `engine/`: the algorithm. One model contract (`EpsModel`), a shared (t, eps) Monte Carlo plan, batched error
  evaluation, and strategies that decide which (timestep, class) pairs to spend network evaluations on.
- `data/`: images, prompts and class names (datasets, digits, the miniature world, Winoground).
- `models/`: adapters behind the contract (Gaussian mixture, Stable Diffusion, class-conditional UNet and DiT,
  CLIP, the small caption-conditional models).
- `training/`: recipes for the small models the book trains on a CPU, cached per machine.
- `runs/`: whole datasets: evaluation, resumable records, the `diffclf` command line.
- `book/`: the chapters' own helpers (explorer, corruptions, baselines, alternatives, profiles, assignments).

The names below are the public API (`import diffclf_lite as dc; dc.classify(...)`).
"""
from .book.profiles import get_profile, pick
from .data.winoground import winoground_scores
from .engine import (LOSSES, PAPER_SCHEDULES, AnytimeElimination, Candidates, ClassificationResult, EpsModel,
                     Exhaustive, KimNelson, Plan, ProfiledRacing, Racing, Staged, SuccessiveElimination,
                     alphas_cumprod_from_betas, beta_schedule, check_model, classify, cross_fitted_ece, evaluate_pairs,
                     expected_calibration_error, fit_temperature, grid_order, make_plan, outside_zone, probabilities,
                     reliability_bins, replay, timestep_grid, timestep_profile, timestep_weights, weighted_mean,
                     zero_shot_proposal)
from .models.classcond import ClassConditionalUNet, DiTClassifier
from .models.clip import CLIPClassifier
from .models.devices import default_device, resolve_device
from .models.gmm import GaussianMixture
from .runs.evaluate import merge
from .runs.evaluate_clip import evaluate_clip
from .training import TrainConfig, digits_checkpoint, train_digits_model

__version__ = "0.2.0"
__all__ = [
    "EpsModel", "check_model", "GaussianMixture", "beta_schedule", "alphas_cumprod_from_betas", "timestep_weights",
    "Plan", "timestep_grid", "make_plan", "evaluate_pairs", "classify", "ClassificationResult", "LOSSES",
    "Exhaustive", "Staged", "SuccessiveElimination", "Racing", "grid_order", "PAPER_SCHEDULES", "weighted_mean",
    "probabilities", "fit_temperature", "expected_calibration_error", "reliability_bins", "cross_fitted_ece",
    "get_profile", "pick", "default_device", "ClassConditionalUNet", "DiTClassifier", "TrainConfig",
    "train_digits_model", "digits_checkpoint", "resolve_device", "merge", "CLIPClassifier", "evaluate_clip",
    "winoground_scores", "Candidates", "KimNelson", "AnytimeElimination", "ProfiledRacing", "timestep_profile",
    "replay", "zero_shot_proposal", "outside_zone",
]
