"""The paper's staged strategy, as the official code runs it, on hand-computed cases."""
import pytest
import torch

from conftest import KnownErrorModel
from diffclf_lite import PAPER_SCHEDULES, Exhaustive, GaussianMixture, Staged, classify, timestep_grid

# Li et al.'s evaluations per image as the official code spends them (paper_facts.md), with class counts.
OFFICIAL_NFE = {"cifar10": (10, 2750), "stl10": (10, 3000), "pets": (37, 2050), "food101": (101, 5570),
                "flowers102": (102, 5590), "aircraft": (100, 5550), "objectnet": (113, 14400), "imagenet": (1000, 124500)}


def test_stage_grids_are_strided_subgrids():
    s = Staged([2, 8], [2, 1])
    assert s.n_timesteps == 8 and s.stage_grid(0) == [2, 6] and s.stage_grid(1) == list(range(8))
    assert Staged(*PAPER_SCHEDULES["cifar10"][:2]).stage_grid(0) == list(range(5, 500, 10))


def test_staged_hand_computed_case():
    """Grid of 8 timesteps, 3 classes: stage 1 evaluates grid points 2 and 6 for all classes (6 evaluations)
    and keeps 2; stage 2 evaluates the 6 remaining grid points for those 2 (12 evaluations): NFE 18.
    Class 0 looks best at grid points 2 and 6, class 2 second; class 1 is dropped. Over all 8 points class 2
    is best, so the ranking must use every evaluation so far, not only the last stage's."""
    t = timestep_grid(8, 1000)
    offsets = torch.ones(1000, 3)
    offsets[t[[2, 6]]] = torch.tensor([0.1, 0.5, 0.3])  # stage 1: class 0 < class 2 < class 1
    offsets[t[[0, 1, 3, 4, 5, 7]]] = torch.tensor([0.9, 0.0, 0.2])  # later: class 1 best but already dropped
    x = torch.randn(1, 4, dtype=torch.float64)
    model = KnownErrorModel(x[0], offsets)
    r = classify(model, x, Staged([2, 8], [2, 1]))
    assert r.nfe.item() == 18 == model.calls
    assert r.alive[0].tolist() == [False, False, True] and r.prediction.item() == 2
    evaluated = ~r.errors[0].isnan()
    assert evaluated[:, 1].nonzero().flatten().tolist() == [2, 6]  # class 1 only in stage 1
    assert evaluated[:, 0].all() and evaluated[:, 2].all()
    assert r.mean_errors[0, 2].item() == pytest.approx((2 * 0.3**2 + 6 * 0.2**2) / 8)


@pytest.mark.parametrize("name", sorted(PAPER_SCHEDULES))
def test_paper_schedules_spend_what_the_official_code_spends(name):
    n_classes, nfe = OFFICIAL_NFE[name]
    n_samples, to_keep, loss = PAPER_SCHEDULES[name]
    gmm = GaussianMixture.random(n_classes, 1, seed=0)  # cheap model: only the counting matters here
    r = classify(gmm, gmm.sample(1)[0][:1], Staged(n_samples, to_keep), loss=loss, batch_size=65536)
    assert r.nfe.item() == nfe and r.alive.sum().item() == 1


def test_staged_keeping_every_class_is_exhaustive():
    gmm = GaussianMixture.random(6, 4, seed=1, class_specific_variance=True)
    x, _ = gmm.sample(10, seed=3)
    ex = classify(gmm, x, Exhaustive(40), loss="huber", seed=9)
    st = classify(gmm, x, Staged([10, 20, 40], [6, 6, 6]), loss="huber", seed=9)
    torch.testing.assert_close(st.errors, ex.errors)
    assert torch.equal(st.prediction, ex.prediction) and torch.equal(st.nfe, ex.nfe)


def test_staged_with_several_noise_draws_per_timestep():
    gmm = GaussianMixture.random(5, 2, seed=1)
    x, _ = gmm.sample(2, seed=3)
    r = classify(gmm, x, Staged([5, 25], [2, 1]), n_trials=2, antithetic=True)
    assert r.nfe.tolist() == [2 * (5 * 5 + 2 * 20)] * 10


def test_bad_stages_are_explained():
    with pytest.raises(ValueError, match="must grow"):
        Staged([50, 50], [5, 1])
    with pytest.raises(ValueError, match="must shrink"):
        Staged([50, 500], [1, 5])
    with pytest.raises(ValueError, match="same length"):
        Staged([50, 500], [5])
    with pytest.raises(ValueError, match="at least one sample"):
        Staged([0, 500], [5, 1])
    gmm = GaussianMixture.random(3, 2)
    with pytest.raises(ValueError, match="keeps 5 classes but there are only 3"):
        classify(gmm, gmm.sample(1)[0], Staged([10, 100], [5, 1]))
