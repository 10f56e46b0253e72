"""Class probabilities from mean errors, a fitted temperature, and the expected calibration error."""
from __future__ import annotations

import warnings

import torch

from .checks import class_labels, integer, positive, tensor

__all__ = ["probabilities", "fit_temperature", "expected_calibration_error", "reliability_bins", "cross_fitted_ece"]


def _logits(mean_errors: torch.Tensor) -> torch.Tensor:
    e = tensor(mean_errors, "mean_errors", torch.float64)
    if e.ndim != 2 or e.shape[1] < 1:
        raise ValueError(f"mean_errors must have shape (N, C), got {tuple(e.shape)}.")
    none = e.isnan().all(1)
    if bool(none.any()):
        raise ValueError(f"sample {int(none.nonzero()[0, 0])} has no evaluated class (every mean error is NaN): "
                         "its probabilities are undefined.")
    return (-e).nan_to_num(nan=float("-inf"))  # a class never evaluated gets probability 0


def probabilities(mean_errors: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """p(c_i | x) = exp(-E_i / tau) / sum_j exp(-E_j / tau) (Li et al. eq. 6, uniform prior), (N, C)."""
    temperature = positive(temperature, "temperature")
    return torch.softmax(_logits(mean_errors) / temperature, dim=1)


def fit_temperature(mean_errors: torch.Tensor, labels: torch.Tensor, max_doublings: int = 200) -> float:
    """The temperature minimising the held-out negative log-likelihood of `labels`.

    NLL(beta) = mean_i [beta E_{i,y_i} + logsumexp_j(-beta E_ij)] is convex in beta = 1 / tau, and its derivative
    E_{i,y_i} - E_{p_beta}[E_i] is monotone, so a bracket and bisection find the optimum exactly.
    """
    logits = _logits(mean_errors)
    if len(logits) == 0:
        raise ValueError("fit_temperature needs at least one sample, got mean_errors of shape (0, C).")
    y = class_labels(labels, logits.shape[1], len(logits))
    true = logits[torch.arange(len(y)), y]
    if not bool(torch.isfinite(true).all()):
        raise ValueError("the true class of some sample was never evaluated; fit on results where every class has errors.")
    finite = torch.isfinite(logits)
    centred = torch.where(finite, logits - true[:, None], logits)  # (N, C): E_true - E_j, -inf where unseen

    def slope(beta: float) -> float:  # d NLL / d beta
        p = torch.softmax(beta * centred, dim=1)
        return (p * centred.nan_to_num(neginf=0.0)).sum(1).mean().item()

    if slope(0.0) >= 0:
        raise ValueError("the errors carry no signal about the labels (no positive temperature lowers the NLL).")
    spread = centred[finite].abs().max().item()
    lo, hi = 0.0, 1.0 / spread
    for _ in range(max_doublings):
        if slope(hi) >= 0:
            break
        lo, hi = hi, 2 * hi
    else:
        warnings.warn("held-out samples are perfectly separated: the optimal temperature is 0; returning a tiny one.")
        return 1.0 / hi
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if slope(mid) < 0 else (lo, mid)
    return 2.0 / (lo + hi)


def reliability_bins(probs: torch.Tensor, labels: torch.Tensor, n_bins: int = 15):
    """Per confidence bin: (mean confidence, accuracy, count), from the top-1 probability; empty bins dropped."""
    probs = tensor(probs, "probs", torch.float64)
    if probs.ndim != 2 or probs.shape[0] < 1 or probs.shape[1] < 1:
        raise ValueError(f"probs must have shape (N, C) with N, C >= 1, got {tuple(probs.shape)}.")
    if not bool(((probs >= 0) & (probs <= 1)).all()):
        raise ValueError("probs must be probabilities in [0, 1] (e.g. from `probabilities`); got NaN or values outside.")
    labels = class_labels(labels, probs.shape[1], len(probs))
    n_bins = integer(n_bins, "n_bins", 1)
    conf, pred = probs.max(1)
    correct = (pred == labels).double()
    b = (conf * n_bins).clamp(max=n_bins - 1).long()
    count = torch.bincount(b, minlength=n_bins).double()
    keep = count > 0
    mean_conf = torch.bincount(b, conf, n_bins)[keep] / count[keep]
    acc = torch.bincount(b, correct, n_bins)[keep] / count[keep]
    return mean_conf, acc, count[keep]


def expected_calibration_error(probs: torch.Tensor, labels: torch.Tensor, n_bins: int = 15) -> float:
    """ECE = sum_b (n_b / N) |acc_b - conf_b| over equal-width confidence bins (Guo et al. 2017)."""
    conf, acc, count = reliability_bins(probs, labels, n_bins)
    return float((count / count.sum() * (acc - conf).abs()).sum())


def cross_fitted_ece(mean_errors: torch.Tensor, labels: torch.Tensor, n_bins: int = 15) -> float:
    """ECE of p(c|x) on each half of the samples with the temperature fitted on the other half, averaged."""
    labels = class_labels(labels, _logits(mean_errors).shape[1], len(mean_errors))
    n = len(labels) // 2
    if n < 1:
        raise ValueError("cross_fitted_ece needs at least two samples: one half fits the temperature, the other tests it.")
    halves = ((slice(0, n), slice(n, None)), (slice(n, None), slice(0, n)))
    return sum(
        expected_calibration_error(probabilities(mean_errors[b], fit_temperature(mean_errors[a], labels[a])), labels[b], n_bins)
        for a, b in halves
    ) / 2
