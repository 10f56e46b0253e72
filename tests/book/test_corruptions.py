"""Chapter 3's corruptions: deterministic under a seed, and each does what its name says."""
from __future__ import annotations

import pytest
import torch

from diffclf_lite.book.corruptions import CORRUPTIONS, corrupt, gaussian_blur, gaussian_noise, occlude, rotate, shift


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
