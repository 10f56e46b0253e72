"""Labels outside [0, C) and fractional counts are errors, never a quiet 0.0 or a rounded number."""
import numpy as np
import pytest
import torch

from diffclf_lite import (Exhaustive, GaussianMixture, Racing, Staged, SuccessiveElimination, classify, cross_fitted_ece,
                          expected_calibration_error, fit_temperature, make_plan, reliability_bins, timestep_grid)


@pytest.fixture(scope="module")
def result():
    gmm = GaussianMixture.random(3, 2, seed=0)
    x, y = gmm.sample(4, seed=1)
    return classify(gmm, x, Exhaustive(5)), y


@pytest.mark.parametrize("bad", [99, -1, 3])
def test_accuracy_refuses_labels_outside_the_classes(result, bad):
    res, y = result
    assert 0.0 <= res.accuracy(y) <= 1.0 and res.accuracy(y.tolist()) == res.accuracy(np.asarray(y))
    labels = y.clone()
    labels[5] = bad
    with pytest.raises(ValueError, match=rf"labels must lie in \[0, 3\) for 3 classes, got {bad} \(1 of 12"):
        res.accuracy(labels)


@pytest.mark.parametrize("labels,error,message", [
    (torch.tensor([0.0, 1.5] * 6), ValueError, "whole class indices"),
    (torch.tensor([True, False] * 6), TypeError, "integer class indices, got dtype torch.bool"),
    ("012012012012", TypeError, r"labels must be a tensor or a \(nested\) sequence of numbers, got str"),
    (torch.zeros(12, 1, dtype=torch.long), ValueError, r"labels of shape \(12, 1\) do not match 12 samples"),
])
def test_accuracy_refuses_labels_that_are_not_class_indices(result, labels, error, message):
    with pytest.raises(error, match=message):
        result[0].accuracy(labels)


@pytest.mark.parametrize("fn", [expected_calibration_error, reliability_bins])
@pytest.mark.parametrize("bad", [99, -1, 2])
def test_calibration_refuses_labels_outside_the_classes(fn, bad):
    probs = torch.tensor([[0.9, 0.1], [0.3, 0.7], [0.5, 0.5]])
    assert expected_calibration_error(probs, [0, 1, 1]) >= 0
    with pytest.raises(ValueError, match=rf"labels must lie in \[0, 2\) for 2 classes, got {bad}"):
        fn(probs, [0, bad, 1])
    with pytest.raises(ValueError, match=rf"labels must lie in \[0, 2\) for 2 classes, got {bad}"):
        cross_fitted_ece(torch.rand(4, 2), [0, 1, bad, 0])


def test_calibration_refuses_what_is_not_probabilities():
    with pytest.raises(ValueError, match=r"probs must have shape \(N, C\)"):
        expected_calibration_error(torch.rand(3), [0, 1, 1])
    with pytest.raises(ValueError, match="probabilities in \\[0, 1\\]"):
        expected_calibration_error(torch.tensor([[2.0, -1.0]]), [0])
    with pytest.raises(ValueError, match="n_bins must be at least 1"):
        expected_calibration_error(torch.tensor([[0.2, 0.8]]), [1], n_bins=0)
    with pytest.raises(ValueError, match="at least one sample"):
        fit_temperature(torch.zeros(0, 3), [])


@pytest.mark.parametrize("make,message", [
    (lambda: Exhaustive(2.7), r"n_timesteps must be a whole number \(an int\), got 2\.7"),
    (lambda: Exhaustive(True), "got True of type bool"),
    (lambda: Exhaustive("10"), "got '10' of type str"),
    (lambda: Staged([25, 250.5], [5, 1]), "each entry of n_samples must be a whole number"),
    (lambda: Staged([25, 250], [5, False]), "each entry of to_keep must be a whole number"),
    (lambda: Staged("25", [1]), "lists of whole numbers"),
    (lambda: SuccessiveElimination(100, min_rounds=2.5), "min_rounds must be a whole number"),
    (lambda: Racing(100.0), "n_timesteps must be a whole number"),
    (lambda: make_plan(4, (2,), torch.linspace(0.99, 0.01, 100), n_trials=1.5), "n_trials must be a whole number"),
    (lambda: timestep_grid(2.5, 1000), "n must be a whole number"),
])
def test_counts_are_whole_numbers_not_rounded(make, message):
    with pytest.raises(TypeError, match=message):
        make()
    assert Exhaustive(np.int64(7)).n_timesteps == 7 and Exhaustive(torch.tensor(3)).n_timesteps == 3
