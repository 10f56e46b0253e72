"""An official saved noise file reproduces the official run's (t, eps) pairs: eval_prob_adaptive.py indexes its noise
by evaluation order, our plan by grid position; plan_from_official_noise reorders the file."""
from __future__ import annotations

import pytest
import torch

from diffclf_lite import Staged, alphas_cumprod_from_betas, beta_schedule, classify
from diffclf_lite.engine import official_noise_order, plan_from_official_noise

from conftest import known_model


def official_pairs(n_samples, n_trials, T=1000):
    """(t, noise row) of every evaluation of one class, as eval_prob_adaptive.py's loop builds ts and noise_idxs
    (diffusion-classifier/diffusion-classifier, eval_prob_adaptive.py), for a class that survives every stage."""
    max_n = max(n_samples)
    t_to_eval = list(range(T // max_n // 2, T, T // max_n))[:max_n]
    t_evaluated, pairs = set(), []
    for n in n_samples:
        curr = t_to_eval[len(t_to_eval) // n // 2::len(t_to_eval) // n][:n]
        curr = [t for t in curr if t not in t_evaluated]
        for t_idx, t in enumerate(curr, start=len(t_evaluated)):
            pairs += [(t, i) for i in range(n_trials * t_idx, n_trials * (t_idx + 1))]
        t_evaluated.update(curr)
    return pairs


@pytest.mark.parametrize("stages, n_trials", [((2, 8), 1), ((2, 4, 8), 2), ((25, 250), 1), ((20, 50, 100, 500), 1)])
def test_the_plan_pairs_each_timestep_with_the_official_noise_rows(stages, n_trials):
    abar = alphas_cumprod_from_betas(beta_schedule("scaled_linear", 1000))
    rows = max(stages) * n_trials + 3  # a saved file may hold more draws than a run uses
    noise = torch.arange(rows, dtype=torch.float32)[:, None] * torch.ones(1, 2)  # row i is the constant i
    plan = plan_from_official_noise(noise, stages, abar, n_trials)
    ours = sorted(zip(plan.timesteps.tolist(), plan.noise[:, 0].long().tolist()))
    assert ours == sorted(official_pairs(stages, n_trials))
    if len(stages) > 1:  # the later stages' timesteps get later rows: grid position is not evaluation order
        assert not torch.equal(official_noise_order(stages, n_trials), torch.arange(len(plan)))


def test_a_single_stage_keeps_the_grid_order_and_small_files_are_refused():
    assert torch.equal(official_noise_order(6, 2), torch.arange(12))
    # stages (2, 8): stage 1 evaluates grid points 2 and 6 first, so they hold rows 0 and 1
    assert official_noise_order((2, 8)).tolist() == [2, 3, 0, 4, 5, 6, 1, 7]
    abar = alphas_cumprod_from_betas(beta_schedule("linear", 1000))
    with pytest.raises(ValueError, match="need 16"):
        plan_from_official_noise(torch.zeros(10, 4), (2, 8), abar, n_trials=2)
    with pytest.raises(ValueError, match="growing"):
        official_noise_order((8, 2))


def test_classify_on_the_official_plan_and_exact_ties_go_to_the_lowest_class_index():
    offsets = torch.zeros(1000, 3)
    offsets[:, 1] = 0.1  # classes 0 and 2 tie exactly (error 0 everywhere); class 1 is worse
    model = known_model(offsets)
    x = model.x_ref[None]
    plan = plan_from_official_noise(torch.randn(8, 4), (2, 8), model.alphas_cumprod, dtype=x.dtype)
    result = classify(model, x, Staged([2, 8], [2, 1]), plan=plan)
    assert result.nfe.item() == 2 * 3 + 6 * 2  # stage 1: 2 timesteps x 3 classes; stage 2: 6 new ones x 2 kept
    assert torch.equal(result.timesteps, plan.timesteps)
    assert result.alive[0].tolist() == [True, False, False] and result.prediction.item() == 0
