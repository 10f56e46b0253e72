"""Probabilities from errors, the fitted temperature, and the expected calibration error."""
import pytest
import torch

from diffclf_lite import cross_fitted_ece, expected_calibration_error, fit_temperature, probabilities, reliability_bins


def nll(errors, labels, tau):
    return -probabilities(errors, tau)[torch.arange(len(labels)), labels].log().mean().item()


def synthetic(tau_true, n=20000, c=5, seed=0):
    """Errors, and labels drawn from softmax(-errors / tau_true): tau_true is the right answer."""
    g = torch.Generator().manual_seed(seed)
    errors = 0.5 + 0.01 * torch.randn(n, c, generator=g, dtype=torch.float64)
    labels = torch.multinomial(torch.softmax(-errors / tau_true, 1), 1, generator=g)[:, 0]
    return errors, labels


def test_probabilities():
    e = torch.tensor([[1.0, 2.0, float("nan")]])
    p = probabilities(e, 0.5)
    assert p.sum().item() == pytest.approx(1.0) and p[0, 2] == 0
    assert p[0, 0] / p[0, 1] == pytest.approx(torch.e**2)
    with pytest.raises(ValueError, match="temperature must be a positive, finite number"):
        probabilities(e, 0.0)


@pytest.mark.parametrize("tau_true", [0.002, 0.01])
def test_fit_temperature_recovers_the_true_temperature(tau_true):
    errors, labels = synthetic(tau_true)
    tau = fit_temperature(errors, labels)
    assert tau == pytest.approx(tau_true, rel=0.1)
    assert nll(errors, labels, tau) <= min(nll(errors, labels, tau * 1.05), nll(errors, labels, tau / 1.05))


def test_fitted_temperature_calibrates():
    errors, labels = synthetic(0.005, seed=1)
    held_out, labels_2 = synthetic(0.005, seed=2)
    tau = fit_temperature(errors, labels)
    assert expected_calibration_error(probabilities(held_out, tau), labels_2) < 0.02
    assert expected_calibration_error(probabilities(held_out, 1.0), labels_2) > 0.3  # raw softmax: near uniform


def test_ece_hand_computed():
    probs = torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.6, 0.4]])
    labels = torch.tensor([0, 1, 0, 0])
    conf, acc, count = reliability_bins(probs, labels, n_bins=10)
    assert conf.tolist() == pytest.approx([0.6, 0.9]) and acc.tolist() == [1.0, 0.5] and count.tolist() == [2, 2]
    assert expected_calibration_error(probs, labels, n_bins=10) == pytest.approx(0.5 * 0.4 + 0.5 * 0.4)


def test_fit_temperature_bad_input():
    errors = torch.rand(4, 3)
    with pytest.raises(ValueError, match="one class index per sample"):
        fit_temperature(errors, torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\) for 3 classes, got 3"):
        fit_temperature(errors, torch.tensor([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="never evaluated"):
        fit_temperature(torch.tensor([[float("nan"), 1.0]]), torch.tensor([0]))
    with pytest.raises(ValueError, match="no signal"):
        fit_temperature(torch.tensor([[2.0, 1.0], [2.0, 1.0]]), torch.tensor([0, 0]))


def test_cross_fitted_ece_fits_on_one_half_and_tests_on_the_other():
    errors, labels = synthetic(0.005, n=4000, seed=3)
    n = len(labels) // 2
    by_hand = [expected_calibration_error(probabilities(errors[b], fit_temperature(errors[a], labels[a])), labels[b])
               for a, b in ((slice(0, n), slice(n, None)), (slice(n, None), slice(0, n)))]
    assert cross_fitted_ece(errors, labels) == pytest.approx(sum(by_hand) / 2)
    assert cross_fitted_ece(errors, labels) < 0.05
    with pytest.raises(ValueError, match="at least two samples"):
        cross_fitted_ece(errors[:1], labels[:1])
