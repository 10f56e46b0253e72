"""diffclf-lite: a diffusion model is secretly a zero-shot classifier (Li et al., ICCV 2023), made practical.

One model contract (`EpsModel`), a shared (t, eps) Monte Carlo plan, batched error evaluation, and strategies
that decide which (timestep, class) pairs to spend network evaluations on.
"""
from .calibration import (cross_fitted_ece, expected_calibration_error, fit_temperature, probabilities,
                          reliability_bins)
from .binding import Candidates
from .classcond import ClassConditionalUNet, DiTClassifier
from .clip import CLIPClassifier, evaluate_clip
from .contract import EpsModel, check_model
from .devices import resolve_device
from .evaluate import merge
from .gmm import GaussianMixture
from .pruning import ProfiledRacing, Racing, SuccessiveElimination, grid_order, timestep_profile
from .profiles import default_device, get_profile, pick
from .schedule import alphas_cumprod_from_betas, beta_schedule, timestep_weights
from .scoring import (LOSSES, ClassificationResult, Plan, classify, evaluate_pairs, make_plan, replay,
                      timestep_grid)
from .strategies import PAPER_SCHEDULES, Exhaustive, Staged, weighted_mean
from .training import TrainConfig, digits_checkpoint, train_digits_model
from .winoground import winoground_scores

__version__ = "0.1.0"
__all__ = [
    "EpsModel", "check_model", "GaussianMixture", "beta_schedule", "alphas_cumprod_from_betas", "timestep_weights",
    "Plan", "timestep_grid", "make_plan", "evaluate_pairs", "classify", "ClassificationResult", "LOSSES",
    "Exhaustive", "Staged", "SuccessiveElimination", "Racing", "grid_order", "PAPER_SCHEDULES", "weighted_mean", "probabilities", "fit_temperature",
    "expected_calibration_error", "reliability_bins", "cross_fitted_ece", "get_profile", "pick", "default_device",
    "ClassConditionalUNet", "DiTClassifier", "TrainConfig", "train_digits_model", "digits_checkpoint", "resolve_device",
    "merge", "CLIPClassifier", "evaluate_clip", "winoground_scores", "Candidates", "ProfiledRacing", "timestep_profile",
    "replay",
]
