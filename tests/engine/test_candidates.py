"""Per-sample candidate sets restrict every strategy: nothing outside them is evaluated or predicted."""
from __future__ import annotations

import pytest
import torch

import diffclf_lite as dc
from conftest import KnownErrorModel
from diffclf_lite.engine import Candidates


# ---- the engine restricted to per-image candidates ----
@pytest.mark.parametrize("strategy", [dc.Exhaustive(20), dc.Racing(20), dc.Staged([5, 20], [2, 1])])
def test_candidates_restrict_every_strategy(strategy) -> None:
    T, C = 1000, 6
    offsets = torch.linspace(0.1, 1.0, C).repeat(T, 1)  # class 0 is best overall, but never a candidate below
    model = KnownErrorModel(torch.zeros(4), offsets)
    cand = torch.zeros(3, C, dtype=torch.bool)
    cand[0, [2, 5]] = cand[1, [4, 3]] = cand[2, [1, 2]] = True
    res = dc.classify(model, torch.zeros(3, 4), Candidates(strategy, cand))
    assert res.prediction.tolist() == [2, 3, 1]
    assert bool(res.errors[~cand[:, None, :].expand_as(res.errors)].isnan().all())  # nothing else evaluated
    assert int(res.nfe.max()) <= 2 * strategy.n_timesteps
    with pytest.raises(ValueError, match="candidates must be shaped"):
        dc.classify(model, torch.zeros(2, 4), Candidates(strategy, cand))
