"""The model contract at the boundary: what `eps` and `encode` return is checked, never broadcast or half-used."""
import pytest
import torch

from conftest import TinyConvEps
from diffclf_lite import Exhaustive, GaussianMixture, check_model, classify


class Returns:
    """Wraps a model; `eps_fn` / `encode_fn` rewrite what the model returns, the way a broken adapter would."""

    def __init__(self, model, eps_fn=None, encode_fn=None) -> None:
        self.model, self.eps_fn, self.encode_fn = model, eps_fn, encode_fn
        self.alphas_cumprod, self.num_conditions, self.device = model.alphas_cumprod, model.num_conditions, model.device

    def encode(self, images):
        x0 = self.model.encode(images)
        return x0 if self.encode_fn is None else self.encode_fn(x0)

    def eps(self, x_t, t, c):
        pred = self.model.eps(x_t, t, c)
        return pred if self.eps_fn is None else self.eps_fn(pred)


@pytest.fixture(scope="module")
def gmm_data():
    gmm = GaussianMixture.random(3, 4, seed=0, separation=2.0)
    x, y = gmm.sample(10, seed=1)
    return gmm, x, y


def test_a_well_behaved_wrapper_changes_nothing(gmm_data):
    gmm, x, _ = gmm_data
    torch.testing.assert_close(classify(Returns(gmm), x, Exhaustive(8)).errors, classify(gmm, x, Exhaustive(8)).errors)


@pytest.mark.parametrize("eps_fn,error,message", [
    (lambda p: p[:1], ValueError, r"Returns\.eps returned shape \(1, 4\); expected \(\d+, 4\)"),  # was broadcast
    (lambda p: p[:, :, None], ValueError, r"returned shape \(\d+, 4, 1\); expected \(\d+, 4\)"),
    (lambda p: torch.cat([p, p[:, :1]], 1), ValueError, r"returned shape \(\d+, 5\)"),
    (lambda p: p[:, 0], ValueError, r"returned shape \(\d+,\); expected \(\d+, 4\)"),
    (lambda p: p.tolist(), TypeError, r"Returns\.eps must return a torch\.Tensor, got list"),
    (lambda p: p.round().long(), TypeError, r"eps must return a floating-point tensor, got dtype torch\.int64"),
    (lambda p: p.to("meta"), ValueError, r"eps returned a tensor on meta; expected it on cpu"),
    (lambda p: p * float("inf"), ValueError, r"Returns\.eps returned NaN or inf for sample"),
])
def test_what_eps_returns_is_checked(gmm_data, eps_fn, error, message):
    gmm, x, _ = gmm_data
    with pytest.raises(error, match=message):
        classify(Returns(gmm, eps_fn=eps_fn), x, Exhaustive(8), batch_size=16)


@pytest.mark.parametrize("encode_fn,error,message", [
    (lambda x: x.tolist(), TypeError, r"Returns\.encode must return a torch\.Tensor, got list"),
    (lambda x: x.long(), TypeError, r"encode must return a floating-point tensor"),
    (lambda x: x[:, 0], ValueError, r"encode returned shape \(30,\); expected \(N, \*shape\)"),
    (lambda x: x.to("meta"), ValueError, r"encode returned a tensor on meta; expected it on cpu"),
    (lambda x: x.clone().fill_(float("nan")), ValueError, r"encode returned NaN or inf; check the input"),
])
def test_what_encode_returns_is_checked(gmm_data, encode_fn, error, message):
    gmm, x, _ = gmm_data
    with pytest.raises(error, match=message):
        classify(Returns(gmm, encode_fn=encode_fn), x, Exhaustive(8))


def test_encode_must_give_one_row_per_image():
    model = TinyConvEps()
    images = torch.randn(3, 1, 8, 8).tolist()  # a list of three images
    with pytest.raises(ValueError, match=r"Returns\.encode returned shape \(2, 1, 8, 8\); expected \(3, \*shape\)"):
        classify(Returns(model, encode_fn=lambda x: x[:2]), images, Exhaustive(4))
    assert classify(Returns(model, encode_fn=lambda x: x), images, Exhaustive(4)).nfe.tolist() == [12] * 3


def test_check_model_still_names_what_is_missing():
    with pytest.raises(ValueError, match="missing encode, eps"):
        check_model(type("Half", (), {"alphas_cumprod": torch.rand(5), "num_conditions": 2, "device": "cpu"})())
