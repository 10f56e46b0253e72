"""The digits split, the corruptions and the CNN baseline of chapter 3."""
from __future__ import annotations

import math

import pytest
import torch

from diffclf_lite.baselines import SmallCNN, predict, train_cnn
from diffclf_lite.corruptions import CORRUPTIONS, corrupt, gaussian_blur, gaussian_noise, occlude, rotate, shift
from diffclf_lite.digits import DIGITS_TEST_PER_CLASS, first_per_class, load_digits_split


@pytest.fixture(scope="module")
def split():
    return load_digits_split()


def test_split_is_fixed_stratified_and_disjoint(split) -> None:
    again = load_digits_split()
    assert torch.equal(split.test_index, again.test_index) and torch.equal(split.x_test, again.x_test)
    assert len(split.x_test) == 10 * DIGITS_TEST_PER_CLASS == 360 and len(split.x_train) == 1797 - 360
    assert torch.bincount(split.y_test).tolist() == [DIGITS_TEST_PER_CLASS] * 10
    both = torch.cat([split.train_index, split.test_index])
    assert torch.equal(both.sort().values, torch.arange(1797))
    # the documented split itself: a change of algorithm or seed must show up here
    assert split.test_index[:8].tolist() == [1, 2, 6, 10, 13, 16, 22, 25] and int(split.test_index.sum()) == 331441
    sub = first_per_class(split.y_test, 4)
    assert torch.bincount(split.y_test[sub]).tolist() == [4] * 10 and torch.equal(sub, sub.sort().values)
    with pytest.raises(ValueError, match="n_per_class"):
        first_per_class(split.y_test, 37)
    other = load_digits_split(seed=1)
    assert not torch.equal(other.test_index, split.test_index)


def test_digits_are_scaled_sklearn_images(split) -> None:
    from sklearn.datasets import load_digits

    raw = torch.as_tensor(load_digits().images, dtype=torch.float32)
    small = load_digits_split(size=8)
    torch.testing.assert_close(small.x_test[:, 0], raw[small.test_index] / 8 - 1)  # 0..16 -> [-1, 1]
    assert split.x_train.shape[1:] == (1, 16, 16) and split.x_train.min() >= -1 and split.x_train.max() <= 1
    assert split.x_train.amin((1, 2, 3)).max() == -1  # every digit has blank background
    with pytest.raises(ValueError, match="test_per_class"):
        load_digits_split(test_per_class=500)


def test_corruptions_are_deterministic(split) -> None:
    x = split.x_test[:8]
    for name, (_, strengths, _) in CORRUPTIONS.items():
        a, b = corrupt(x, name, strengths[-1], seed=3), corrupt(x, name, strengths[-1], seed=3)
        assert torch.equal(a, b) and a.shape == x.shape and not torch.equal(a, x), name
        if name != "gaussian_blur":  # blur has no randomness
            assert not torch.equal(a, corrupt(x, name, strengths[-1], seed=4)), name
    with pytest.raises(ValueError, match="unknown corruption"):
        corrupt(x, "snow", 1.0)


def test_noise_has_the_requested_std() -> None:
    grey = torch.zeros(64, 1, 16, 16)
    for std in (0.1, 0.3):
        assert gaussian_noise(grey, std, seed=0).std().item() == pytest.approx(std, rel=0.03)
    assert gaussian_noise(-torch.ones(2, 1, 4, 4), 0.5).min() >= -1  # clipped to the image range


def test_blur_keeps_mean_and_reduces_variance() -> None:
    x = torch.rand(4, 1, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    torch.testing.assert_close(gaussian_blur(torch.full((1, 1, 8, 8), 0.3), 1.0), torch.full((1, 1, 8, 8), 0.3))
    var = [gaussian_blur(x, s).var().item() for s in (0.0, 0.5, 1.0, 2.0)]
    assert var == sorted(var, reverse=True) and var[-1] < 0.2 * var[0]
    impulse = torch.zeros(1, 1, 33, 33)
    impulse[..., 16, 16] = 1
    psf = gaussian_blur(impulse, 2.0)[0, 0]
    r = torch.arange(33.0) - 16
    assert psf.sum().item() == pytest.approx(1.0, abs=1e-5)
    assert (psf.sum(0) * r**2).sum().sqrt().item() == pytest.approx(2.0, rel=0.02)  # measured sigma


def _blob(cy: float, cx: float, n: int = 32) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(n) + 0.5, torch.arange(n) + 0.5, indexing="ij")
    return (2 * torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 4) - 1)[None, None].repeat(16, 1, 1, 1)


def _centre(x: torch.Tensor) -> torch.Tensor:
    m = x[:, 0] + 1  # (N, H, W), background 0
    idx = torch.arange(x.shape[-1]) + 0.5
    return torch.stack([(m.sum(2) * idx).sum(1), (m.sum(1) * idx).sum(1)], 1) / m.sum((1, 2))[:, None]  # (N, 2) = (y, x)


def test_shift_and_rotation_move_the_centre_of_mass() -> None:
    x = _blob(16, 16)
    moved = _centre(shift(x, 3.0, seed=0)) - _centre(x)
    torch.testing.assert_close(moved.norm(dim=1), torch.full((16,), 3.0), atol=0.05, rtol=0)
    assert moved[:, 0].std() > 0.5  # random directions
    x = _blob(16, 24)  # 8 pixels right of the centre
    c = _centre(rotate(x, 30.0, seed=0)) - 16
    angle = torch.rad2deg(torch.atan2(c[:, 0], c[:, 1])).abs()
    torch.testing.assert_close(angle, torch.full((16,), 30.0), atol=0.5, rtol=0)
    torch.testing.assert_close(rotate(x, 0.0), x, atol=1e-5, rtol=0)


def test_occlusion_paints_a_square_of_the_right_size() -> None:
    x = torch.ones(5, 1, 16, 16)
    out = occlude(x, 0.375, seed=0)
    painted = (out == 0).flatten(1).sum(1)
    assert painted.tolist() == [36] * 5  # round(0.375 * 16) = 6, a 6x6 square
    with pytest.raises(ValueError, match="fraction"):
        occlude(x, 1.5)


def test_train_digits_model_writes_a_loadable_checkpoint(tmp_path) -> None:
    import json

    from diffclf_lite.classcond import ClassConditionalUNet
    from diffclf_lite.training import train_digits_model

    r = train_digits_model(tmp_path / "ckpt", steps=2, preset="tiny", progress=False, batch_size=4)
    info = json.loads((tmp_path / "ckpt" / "training.json").read_text())
    assert info["config"]["extra"]["test_per_class"] == DIGITS_TEST_PER_CLASS and info["num_classes"] == 10
    model = ClassConditionalUNet.from_pretrained(tmp_path / "ckpt")
    assert model.num_conditions == 10 and model.resolution == 16 and len(r.losses) == 2


def test_cnn_baseline_learns_and_is_deterministic(split) -> None:
    x, y = split.x_train[:200], split.y_train[:200]
    a = train_cnn(x, y, steps=20, batch_size=16, width=8, progress=False)
    b = train_cnn(x, y, steps=20, batch_size=16, width=8, progress=False)
    assert a.losses == b.losses and sum(a.losses[-5:]) < sum(a.losses[:5])
    pred = predict(a.model, x)
    assert pred.shape == (200,) and pred.dtype == torch.long
    assert (pred == y).double().mean() > 0.3  # well above chance (0.1) after 20 steps on its training images
    assert abs(sum(p.numel() for p in SmallCNN().parameters()) - 1.2e6) < 0.1e6
    with pytest.raises(ValueError, match="expected images"):
        predict(a.model, torch.zeros(2, 1, 8, 8))
    assert math.isfinite(a.seconds)


def test_imagenet_folder_loader_preprocesses_like_the_sd_adapter(tmp_path):
    import numpy as np
    from PIL import Image

    from diffclf_lite.digits import load_imagenet_folder
    from diffclf_lite.sd import preprocess_image

    for c in range(1000):
        (tmp_path / f"n{c:08d}").mkdir()
    pixels = (np.random.default_rng(0).random((40, 60, 3)) * 255).astype("uint8")
    Image.fromarray(pixels).save(tmp_path / "n00000003" / "a.png")
    Image.fromarray(pixels).convert("L").save(tmp_path / "n00000007" / "b.png")
    x, y = load_imagenet_folder(tmp_path, class_ids=[3, 7], n_per_class=1, resolution=32)
    assert x.shape == (2, 3, 32, 32) and y.tolist() == [3, 7]
    assert torch.equal(x[0], preprocess_image(Image.open(tmp_path / "n00000003" / "a.png"), 32))
    assert torch.equal(x[1, 0], x[1, 2])  # a grey image becomes equal RGB channels
