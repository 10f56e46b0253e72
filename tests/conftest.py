"""Shared test helpers: models that follow the EpsModel contract with errors we know in advance, images with known
conversions, and fixtures that several test folders use (built once per session)."""
from __future__ import annotations

from pathlib import Path

import os

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, settings
from PIL import Image
from torch import nn

from diffclf_lite import alphas_cumprod_from_betas, beta_schedule, timestep_grid

# Property-based (fuzz) tests: few examples in `make test`, many with HYPOTHESIS_PROFILE=slow (see the README).
settings.register_profile("default", max_examples=12, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.register_profile("slow", max_examples=400, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


def clear_error(call):
    """`call()`'s result, or None when it raised ValueError/TypeError with a message; any other exception fails."""
    try:
        return call()
    except (ValueError, TypeError) as err:
        assert str(err).strip(), f"{type(err).__name__} without a message"
        return None


def rejects(call) -> str:
    """`call()` must raise ValueError or TypeError with a message (never return a result); the message."""
    with pytest.raises((ValueError, TypeError)) as info:
        call()
    assert str(info.value).strip()
    return str(info.value)


class KnownErrorModel:
    """Recovers the true noise of its one reference image and adds offset[t, c]: the l2 error is offset[t, c]^2."""

    def __init__(self, x_ref: torch.Tensor, offsets: torch.Tensor, num_train_timesteps: int = 1000) -> None:
        self.alphas_cumprod = alphas_cumprod_from_betas(beta_schedule("linear", num_train_timesteps))
        self.x_ref, self.offsets = x_ref.double(), offsets.double()  # (D,), (T, C)
        self.num_conditions, self.device = offsets.shape[1], torch.device("cpu")
        self.calls = 0

    def encode(self, images):
        return torch.as_tensor(images, dtype=torch.float64)

    def eps(self, x_t, t, cond_index):
        self.calls += len(t)
        abar = self.alphas_cumprod[t][:, None]
        true_eps = (x_t - abar.sqrt() * self.x_ref) / (1 - abar).sqrt()
        return true_eps + self.offsets[t, cond_index][:, None]


class TinyConvEps(nn.Module):
    """A small class-conditional conv net on (N, 1, 8, 8) images, in float32: a neural model for engine tests."""

    def __init__(self, num_classes: int = 3, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.embed = nn.Embedding(num_classes, 8)
        self.conv1, self.conv2 = nn.Conv2d(1, 8, 3, padding=1), nn.Conv2d(8, 1, 3, padding=1)
        self.alphas_cumprod = alphas_cumprod_from_betas(beta_schedule("scaled_linear", 1000)).float()
        self.num_conditions, self.device = num_classes, torch.device("cpu")
        self.eval()

    def encode(self, images):
        return torch.as_tensor(images, dtype=torch.float32)

    def eps(self, x_t, t, cond_index):
        h = self.conv1(x_t) + self.embed(cond_index)[:, :, None, None] + (t.float() / 1000)[:, None, None, None]
        return self.conv2(torch.nn.functional.silu(h))


def known_model(offsets: torch.Tensor) -> KnownErrorModel:
    """A KnownErrorModel on 4-dimensional points whose l2 error at (t, c) is offsets[t, c]^2."""
    return KnownErrorModel(torch.zeros(4, dtype=torch.float64), offsets.double())


def noisy_offsets(seed: int, S: int, means: list[float], noise: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Offsets (l2 error = offset^2) of len(means) classes on a grid of S timesteps: means + Gaussian noise."""
    g = torch.Generator().manual_seed(seed)
    t = timestep_grid(S, 1000)
    offsets = torch.zeros(1000, len(means), dtype=torch.float64)
    offsets[t] = (torch.tensor(means) + noise * torch.randn(S, len(means), generator=g)).double()
    return t, offsets


def centre_rgb(x: torch.Tensor) -> list[int]:
    """The centre pixel of a preprocessed (3, R, R) image in [-1, 1], back to 0..255."""
    r = x.shape[-1] // 2
    return [round(v) for v in ((x[:, r, r] + 1) * 127.5).tolist()]


def _palette_image() -> Image.Image:
    image = Image.new("P", (9, 7), 1)
    image.putpalette([0, 0, 0, 200, 10, 10])
    return image


# mode -> (image, expected RGB): the documented conversions (alpha over white, 16-bit and float rescaled to 8 bits)
PIL_MODES = {
    "1": (Image.new("1", (9, 7), 1), [255, 255, 255]),
    "L": (Image.new("L", (9, 7), 100), [100, 100, 100]),
    "LA": (Image.new("LA", (9, 7), (0, 0)), [255, 255, 255]),  # fully transparent black -> the white background
    "P": (_palette_image(), [200, 10, 10]),  # palette entry 1 = (200, 10, 10)
    "RGBA": (Image.new("RGBA", (9, 7), (0, 0, 255, 255)), [0, 0, 255]),
    "CMYK": (Image.new("CMYK", (9, 7), (0, 255, 255, 0)), [255, 0, 0]),  # pure red in ink
    "I;16": (Image.fromarray(np.full((7, 9), 65535, dtype=np.uint16)), [255, 255, 255]),
    "F": (Image.fromarray(np.full((7, 9), 0.5, dtype=np.float32)), [128, 128, 128]),
}


def two_class_folder(tmp_path: Path) -> Path:
    """An image folder with classes cat (two red images) and dog (two blue ones)."""
    root = tmp_path / "data"
    for name, colour in (("cat", (200, 0, 0)), ("dog", (0, 0, 200))):
        (root / name).mkdir(parents=True)
        for k in range(2):
            Image.new("RGB", (12, 10), colour).save(root / name / f"{k}.png")
    return root


# ---- fixtures shared by several test folders: built once per session ----
TEMPLATES = ["a photo of a {}.", "a drawing of a {}.", "a {} on a plain background."]


@pytest.fixture(scope="session")
def split():
    """Chapter 3's digits split."""
    from diffclf_lite.data.digits import load_digits_split

    return load_digits_split()


@pytest.fixture(scope="session")
def tiny_sd_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The random-weight Stable Diffusion stand-in, saved like a hub folder."""
    from diffclf_lite.models.sd import build_tiny_sd

    return build_tiny_sd(tmp_path_factory.mktemp("sd") / "tiny")


@pytest.fixture(scope="session")
def tiny_sd(tiny_sd_folder: Path):
    from diffclf_lite.models.sd import StableDiffusion

    return StableDiffusion.from_pretrained(tiny_sd_folder, device="cpu", dtype="fp32")


@pytest.fixture(scope="session")
def clip_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from diffclf_lite.models.clip import build_tiny_clip

    return build_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny")


@pytest.fixture(scope="session")
def clip(clip_folder: Path):
    from diffclf_lite.models.clip import CLIPClassifier

    return CLIPClassifier.from_pretrained(clip_folder, device="cpu", dtype="fp32")


@pytest.fixture(scope="session")
def shapes():
    from diffclf_lite.data.datasets import synthetic_shapes

    return synthetic_shapes(n_per_class=2, size=48, seed=0)


@pytest.fixture(scope="session")
def miniature_folder(tmp_path_factory) -> Path:
    """The miniature Stable Diffusion and CLIP trained for a few steps (MINIATURE_SMOKE): real classes, no skill."""
    from diffclf_lite.training.miniature import MINIATURE_SMOKE, miniature_models

    return miniature_models(MINIATURE_SMOKE, root=tmp_path_factory.mktemp("miniature"), progress=False)
