"""The scoring engine: batched eps-prediction errors of (sample, class) pairs on a shared (t, eps) plan, driven
by a strategy (`classify`) or replayed on errors computed before (`replay`).

Li et al. eq. 5: log p(x | c) ~ -E_{t,eps} ||eps - eps_theta(sqrt(abar_t) x + sqrt(1 - abar_t) eps, t, c)||^2,
estimated with the *same* (t, eps) pairs for every class so that error differences between classes are stable.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F

from .calibration import probabilities
from .checks import class_labels, integer, tensor
from .contract import check_encoded, check_eps_output, check_model
from .plan import Plan, make_plan
from .strategies.base import Exhaustive, Strategy, weighted_mean

__all__ = ["LOSSES", "evaluate_pairs", "classify", "ClassificationResult", "replay"]

LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "l2": lambda pred, eps: (pred - eps).pow(2).flatten(1).mean(1),
    "l1": lambda pred, eps: (pred - eps).abs().flatten(1).mean(1),
    "huber": lambda pred, eps: F.huber_loss(pred, eps, reduction="none", delta=1.0).flatten(1).mean(1),
}


def evaluate_pairs(model: Any, x0: torch.Tensor, plan: Plan, sample_idx: torch.Tensor, step_idx: torch.Tensor,
                   cond_idx: torch.Tensor, loss: str = "l2", batch_size: int = 256,
                   autocast_dtype: torch.dtype | None = None) -> torch.Tensor:
    """Unweighted errors (P,) of the pairs (x0[sample_idx], plan entry step_idx, condition cond_idx), in batches.

    Everything stays on the model's device: no host synchronisation per batch, no loop over classes.
    What `eps` returns is checked per batch from its metadata (shape, dtype, device; TypeError or ValueError naming the
    model), and its finiteness once per call through the errors: a ValueError names the first NaN or inf pair.

    `batch_size` changes only how the pairs are grouped, never which pairs, timesteps or noise: a model that computes
    each row on its own (the Gaussian mixture, in float64) gives bit-identical errors for every batch size. Neural
    nets in float32 do not, on the CPU as on a GPU: convolution and matrix kernels (oneDNN, BLAS, cuDNN) choose their
    blocking and summation order by the batch shape, so an error can change in its last bits (measured on the CPU:
    up to 2.4e-7 relative, two float32 roundings). Only a near tie between two classes can change a prediction.
    """
    if not isinstance(loss, str) or loss not in LOSSES:
        raise ValueError(f"Unknown loss {loss!r}; choose one of {sorted(LOSSES)}.")
    batch_size = integer(batch_size, "batch_size", 1)
    loss_fn, dev = LOSSES[loss], x0.device
    abar = model.alphas_cumprod.to(device=dev, dtype=torch.float64)
    sqrt_a, sqrt_1ma = abar.sqrt().to(x0.dtype), (1 - abar).sqrt().to(x0.dtype)
    view = (-1,) + (1,) * (x0.ndim - 1)
    out = torch.empty(len(sample_idx), dtype=torch.float32 if x0.dtype != torch.float64 else x0.dtype, device=dev)
    use_amp = autocast_dtype is not None
    with torch.inference_mode(), torch.autocast(dev.type, dtype=autocast_dtype, enabled=use_amp):
        for s in range(0, len(sample_idx), batch_size):
            i, k, c = sample_idx[s : s + batch_size], step_idx[s : s + batch_size], cond_idx[s : s + batch_size]
            t, noise = plan.timesteps[k], plan.noise[k]
            x_t = sqrt_a[t].view(view) * x0[i] + sqrt_1ma[t].view(view) * noise  # (B, *shape)
            pred = model.eps(x_t, t, c)
            check_eps_output(model, pred, x_t)  # shape, dtype, device: metadata only, no host sync
            out[s : s + batch_size] = loss_fn(pred.to(out.dtype), noise.to(out.dtype))
    bad = ~torch.isfinite(out)
    if bool(bad.any()):  # one check after the whole round
        j = int(bad.nonzero()[0, 0])
        raise ValueError(
            f"{type(model).__name__}.eps returned NaN or inf for sample {int(sample_idx[j])}, timestep {int(plan.timesteps[step_idx[j]])}, "
            f"condition {int(cond_idx[j])} ({int(bad.sum())} of {len(out)} pairs in this round). Check the inputs "
            "for NaN and the model's dtype (fp16 can overflow: try bfloat16 or float32)."
        )
    return out


@dataclass
class ClassificationResult:
    """What a classification run returns: every number a chapter or benchmark needs, on the CPU."""

    prediction: torch.Tensor  # (N,) long: the alive class of least mean error
    mean_errors: torch.Tensor  # (N, C) weighted mean error per class over what was evaluated (NaN if nothing)
    errors: torch.Tensor  # (N, S, C) raw per-pair errors, NaN where a pair was not evaluated
    nfe: torch.Tensor  # (N,) long: network evaluations really spent on each sample
    alive: torch.Tensor  # (N, C) bool: classes still in the running when the strategy stopped
    timesteps: torch.Tensor  # (S,)
    weights: torch.Tensor  # (S,)

    def probabilities(self, temperature: float = 1.0) -> torch.Tensor:
        """p(c | x) = softmax(-mean_error / temperature) (Li et al. eq. 6 with a temperature), (N, C). A sample with no
        class evaluated (a strategy that stopped with one candidate left) has p = 1 on that class."""
        none = self.mean_errors.isnan().all(1)
        if not bool(none.any()):
            return probabilities(self.mean_errors, temperature)
        errors = self.mean_errors.clone()
        errors[none] = torch.where(self.alive[none], 0.0, float("nan")).to(errors.dtype)  # uniform over the alive
        return probabilities(errors, temperature)

    def accuracy(self, labels: torch.Tensor) -> float:
        """Fraction of samples whose prediction is their label; labels must be class indices in [0, C)."""
        labels = class_labels(labels, self.mean_errors.shape[1], len(self.prediction))
        return (self.prediction == labels).double().mean().item()


def _pairs(rows: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """(sample, entry, class) triples (P, 3) of a request: for each sample i, rows[i] x classes[i]."""
    sr = rows.nonzero()  # (Q, 2): sample, entry
    k = classes.sum(1)[sr[:, 0]]  # classes requested by each (sample, entry)
    cls = classes.nonzero()[:, 1]  # class indices, grouped by sample in order
    first = torch.cumsum(classes.sum(1), 0) - classes.sum(1)  # where each sample's classes start in `cls`
    group_start = torch.cumsum(k, 0) - k
    within = torch.arange(int(k.sum())) - group_start.repeat_interleave(k)
    c = cls[first[sr[:, 0]].repeat_interleave(k) + within]
    return torch.cat([sr.repeat_interleave(k, dim=0), c[:, None]], dim=1)


def classify(model: Any, images: Any, strategy: Strategy | None = None, loss: str = "l2", weighting: str = "uniform",
             seed: int = 0, batch_size: int = 256, plan: Plan | None = None, n_trials: int = 1, antithetic: bool = False,
             autocast_dtype: torch.dtype | None = None) -> ClassificationResult:
    """Classify a batch of images with `model` (any EpsModel), the strategy deciding what to evaluate.

    All samples advance together: each round gathers every sample's requested pairs into one batched evaluation.
    """
    check_model(model)
    strategy = Exhaustive() if strategy is None else _check_strategy(strategy)
    if plan is not None and not isinstance(plan, Plan):
        raise TypeError(f"plan must be a Plan (from make_plan), got {type(plan).__name__}.")
    if not isinstance(loss, str) or loss not in LOSSES:  # before the model spends anything
        raise ValueError(f"Unknown loss {loss!r}; choose one of {sorted(LOSSES)}.")
    x0 = model.encode(images)
    check_encoded(model, x0, images)
    N, C = len(x0), int(model.num_conditions)
    if N == 0:
        raise ValueError("no images to classify: got an empty batch.")
    if plan is None:
        plan = make_plan(
            strategy.n_timesteps, tuple(x0.shape[1:]), model.alphas_cumprod, seed, weighting, x0.device, x0.dtype,
            n_trials, antithetic,
        )
    if tuple(plan.noise.shape[1:]) != tuple(x0.shape[1:]) or len(plan) != strategy.n_timesteps * plan.n_trials:
        raise ValueError(
            f"the plan ({len(plan) // plan.n_trials} timesteps x {plan.n_trials} noise draws shaped "
            f"{tuple(plan.noise.shape[1:])}) does not fit the strategy ({strategy.n_timesteps} timesteps) "
            f"and the encoded images {tuple(x0.shape[1:])}."
        )

    def evaluate(idx: torch.Tensor) -> torch.Tensor:
        dev_idx = idx.to(x0.device)
        err = evaluate_pairs(model, x0, plan, dev_idx[:, 0], dev_idx[:, 1], dev_idx[:, 2], loss, batch_size, autocast_dtype)
        return err.double().cpu()  # one transfer per round

    return _run(strategy, evaluate, (N, len(plan), C), plan.timesteps.cpu(), plan.weights.cpu(), plan.n_trials)


def _check_strategy(strategy: Any) -> Strategy:
    """A strategy has `n_timesteps` (a whole number) and `start`; anything else is a TypeError naming what it got."""
    if not (callable(getattr(strategy, "start", None)) and hasattr(strategy, "n_timesteps")):
        raise TypeError(f"strategy must be a Strategy such as Exhaustive(100), Staged(...) or Racing(...), got "
                        f"{type(strategy).__name__}.")
    integer(strategy.n_timesteps, "strategy.n_timesteps", 1)
    return strategy


def _run(strategy: Strategy, evaluate: Callable[[torch.Tensor], torch.Tensor], shape: tuple[int, int, int],
         timesteps: torch.Tensor, weights: torch.Tensor, n_trials: int) -> ClassificationResult:
    """Drive a strategy: each round, `evaluate` returns the errors (P,) of the requested (sample, entry, class) triples."""
    N, _, C = shape
    errors = torch.full(shape, float("nan"), dtype=torch.float64)
    state = strategy.start(N, C, weights, n_trials)
    while (request := state.next(errors)) is not None:
        idx = _pairs(*request)
        idx = idx[errors[idx[:, 0], idx[:, 1], idx[:, 2]].isnan()]  # never evaluate a pair twice
        if len(idx) == 0:
            continue
        errors[idx[:, 0], idx[:, 1], idx[:, 2]] = evaluate(idx)
    mean_errors = weighted_mean(errors, weights.double())
    alive = state.alive.clone()
    # the alive class of least mean error; an alive class never evaluated (a strategy may stop with one candidate
    # left, unevaluated) ranks after every evaluated one but before every dropped one, so it wins only when alone
    unseen = torch.finfo(mean_errors.dtype).max
    prediction = mean_errors.nan_to_num(nan=unseen).masked_fill(~alive, float("inf")).argmin(1)
    nfe = (~errors.isnan()).flatten(1).sum(1)
    return ClassificationResult(prediction, mean_errors, errors, nfe, alive, timesteps, weights)


def replay(errors: torch.Tensor, strategy: Strategy, weights: torch.Tensor, timesteps: torch.Tensor | None = None,
           n_trials: int = 1) -> ClassificationResult:
    """Run `strategy` on precomputed errors (N, S, C) of a whole plan instead of a model: the same decisions and the
    same NFE (counted pair by pair) as `classify` with a model that gives these errors. Exhaustive errors computed
    once thus serve every strategy. `weights` (S,) are the plan's w_t (e.g. `make_plan(...).weights`)."""
    strategy = _check_strategy(strategy)
    errors = tensor(errors, "errors", torch.float64)
    if errors.ndim != 3 or 0 in errors.shape or not bool(torch.isfinite(errors).all()):
        raise ValueError(f"replay needs a complete error tensor (N, S, C), finite, without NaN, got shape {tuple(errors.shape)}"
                         f"{' with NaN' if errors.ndim == 3 else ''}; compute it with classify(model, x, Exhaustive(S)).")
    N, S, C = errors.shape
    weights = tensor(weights, "weights", torch.float64)
    n_trials = integer(n_trials, "n_trials", 1)
    if weights.shape != (S,) or S != strategy.n_timesteps * n_trials:
        raise ValueError(f"the errors hold {S} plan entries but the weights have shape {tuple(weights.shape)} and the "
                         f"strategy needs {strategy.n_timesteps} timesteps x {n_trials} noise draws; use the same plan for "
                         "all three.")
    timesteps = torch.full((S,), -1, dtype=torch.long) if timesteps is None else tensor(timesteps, "timesteps")
    return _run(strategy, lambda idx: errors[idx[:, 0], idx[:, 1], idx[:, 2]], (N, S, C), timesteps, weights, n_trials)
