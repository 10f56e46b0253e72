"""Images to tensors: every PIL mode to the documented RGB, grey levels, transparency, tiny, huge and long images."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import PIL_MODES as MODES
from conftest import centre_rgb as _rgb
from diffclf_lite.data.images import official_resize_crop, preprocess_image


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I;16", "I", "F"])
def test_preprocessing_accepts_every_pil_mode(mode):
    rgb = np.random.default_rng(0).integers(0, 256, (30, 50, 3), dtype=np.uint8)
    grey = rgb.mean(-1)
    if mode == "I;16":  # a real 16-bit image spans 0..65535
        img = Image.fromarray((grey * 257).astype(np.uint16))
    elif mode == "F":  # float images in [0, 1]
        img = Image.fromarray((grey / 255).astype(np.float32))
    else:
        img = Image.fromarray(rgb).convert(mode)
    assert img.mode == mode
    x = preprocess_image(img, 32)
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1 and x.std() > 0.01


@pytest.mark.parametrize("mode,value,expected", [
    ("L", 51, 51 / 255), ("I;16", 32768, 32768 / 65535), ("F", 0.25, 0.25), ("I", 200, 200 / 255), ("I", 40000, 40000 / 65535), ("1", 1, 1.0),
])
def test_grey_levels_are_scaled_to_minus_one_one(mode, value, expected):
    img = Image.new(mode, (20, 12), value)
    x = preprocess_image(img, 16)
    assert torch.allclose(x, torch.full_like(x, expected * 2 - 1), atol=1 / 255)


def test_transparency_is_composited_on_white_and_the_centre_is_kept():
    clear = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    assert torch.allclose(preprocess_image(clear, 8), torch.ones(3, 8, 8))
    wide = np.zeros((10, 30, 3), dtype=np.uint8)
    wide[:, 10:20] = (0, 255, 0)  # only the central square is green
    x = preprocess_image(Image.fromarray(wide), 10)
    assert x.shape == (3, 10, 10)
    torch.testing.assert_close(x[:, 2:8, 2:8], torch.tensor([-1.0, 1.0, -1.0])[:, None, None].expand(3, 6, 6), atol=0.05, rtol=0)


@pytest.mark.parametrize("mode", list(MODES))
def test_every_pil_mode_becomes_the_documented_rgb(mode):
    image, expected = MODES[mode]
    assert image.mode == mode
    x = preprocess_image(image, 16)
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32 and float(x.abs().max()) <= 1
    assert _rgb(x) == pytest.approx(expected, abs=1)


def test_tiny_huge_and_long_images(monkeypatch):
    assert preprocess_image(Image.new("RGB", (1, 1), (10, 20, 30)), 16).shape == (3, 16, 16)
    assert _rgb(preprocess_image(Image.new("RGB", (1, 1), (10, 20, 30)), 16)) == [10, 20, 30]
    big = preprocess_image(Image.new("RGB", (6000, 4000), (0, 128, 0)), 32)  # downscaled: 24 Mpx in, 32x32 out
    assert _rgb(big) == [0, 128, 0]
    long = Image.new("RGB", (2, 40000), (5, 5, 5))  # 1:20000; resized naively it would be 512 x 10 M pixels
    long.paste((250, 250, 250), (0, 19000, 2, 21000))  # the centre band is what a centre crop keeps
    assert _rgb(preprocess_image(long, 512)) == [250, 250, 250]
    with pytest.raises(ValueError, match="0x5 pixels has nothing to classify"):
        preprocess_image(Image.new("RGB", (0, 5)), 16)


def test_resize_and_crop_round_as_torchvision_does():
    """Hand-computed from torchvision's formulas: long side int(R * long / short), crop offset round((n - R) / 2)."""
    assert official_resize_crop(640, 480, 512) == (682, 512, 85, 0)  # 682.67 truncates to 682 (rounding gives 683)
    assert official_resize_crop(480, 640, 512) == (512, 682, 0, 85)  # portrait: the same on the other axis
    assert official_resize_crop(683, 512, 512) == (683, 512, 86, 0)  # odd margin 171: round(85.5) = 86, not 85
    assert official_resize_crop(681, 512, 512) == (681, 512, 84, 0)  # odd margin 169: round(84.5) = 84 (to even)
    assert official_resize_crop(500, 375, 224) == (298, 224, 37, 0)  # 298.67 -> 298
    assert official_resize_crop(512, 512, 512) == (512, 512, 0, 0)


@pytest.mark.parametrize("size, box", [((640, 480), (682, 512, 85)), ((683, 512), (683, 512, 86))])
def test_preprocessing_keeps_the_pixels_torchvision_keeps(size, box):
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    w, h, left = box
    expected = np.asarray(img.resize((w, h), Image.BICUBIC).crop((left, 0, left + 512, 512)), dtype=np.float32)
    got = (preprocess_image(img, 512).permute(1, 2, 0).numpy() + 1) / 2 * 255
    np.testing.assert_allclose(got, expected, atol=1e-3)
