"""Images to tensors, as the paper's official code prepares them: any PIL mode or array to 8-bit RGB, then the
resize, centre crop and [-1, 1] scaling of the Stable Diffusion adapter (also used by the other image loaders)."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["to_rgb", "official_resize_crop", "preprocess_image"]


def to_rgb(image: Any) -> "Image.Image":  # noqa: F821
    """Any PIL mode (1, L, LA, P, RGBA, CMYK, I;16, I, F...) or HxW(xC) array -> 8-bit RGB; alpha over white."""
    from PIL import Image

    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
        if image.ndim == 3 and image.shape[0] in (1, 3, 4):  # CHW -> HWC
            image = image.transpose(1, 2, 0)
    if isinstance(image, np.ndarray):
        arr = image
        if arr.dtype != np.uint8:  # float arrays are taken as [0, 1]
            if arr.size and (np.nanmin(arr) < 0 or np.nanmax(arr) > 1):
                raise ValueError("float image arrays must lie in [0, 1]; pass uint8 arrays for 0..255 data.")
            arr = np.round(np.nan_to_num(arr) * 255).astype(np.uint8)
        image = Image.fromarray(arr.squeeze(-1) if arr.ndim == 3 and arr.shape[-1] == 1 else arr)
    if not isinstance(image, Image.Image):
        raise ValueError(f"expected a PIL image, a numpy array or a tensor, got {type(image).__name__}.")
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):  # high bit depth: rescale to 0..255 before 8 bits
        arr = np.asarray(image, dtype=np.float64)
        peak = arr.max(initial=0)
        if image.mode == "F":  # floats: [0, 1] if they fit, else scaled by their maximum
            top = 1.0 if peak <= 1 else peak
        else:  # 16-bit modes span 0..65535; 32-bit `I` is read as 8-bit or 16-bit data when it fits
            top = 65535.0 if image.mode.startswith("I;16") or peak > 255 else 255.0
            top = max(top, peak)
        image = Image.fromarray(np.clip(np.round(arr / top * 255), 0, 255).astype(np.uint8), mode="L")
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("LA", "RGBA", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB")


def official_resize_crop(width: int, height: int, resolution: int) -> tuple[int, int, int, int]:
    """(resized width, resized height, left, top) of torchvision's Resize(resolution) then CenterCrop(resolution), the
    official code's transform. From pytorch/vision torchvision/transforms/functional.py: `_compute_resized_output_size`
    sets the short side to `resolution` and the long one to `int(resolution * long / short)` (truncated, not rounded);
    `center_crop` offsets are `int(round((image_height - crop_height) / 2.0))` (Python's round: halves go to even)."""
    short, long = (width, height) if width <= height else (height, width)
    new_long = int(resolution * long / short)
    new_w, new_h = (resolution, new_long) if width <= height else (new_long, resolution)
    return new_w, new_h, int(round((new_w - resolution) / 2.0)), int(round((new_h - resolution) / 2.0))


def preprocess_image(image: Any, resolution: int) -> torch.Tensor:
    """RGB, bicubic resize of the short side to `resolution`, centre crop, scale to [-1, 1]: (3, R, R) float32,
    rounded exactly as the official code's torchvision transforms round (`official_resize_crop`)."""
    from PIL import Image

    img = to_rgb(image)
    w, h = img.size
    if min(w, h) < 1:
        raise ValueError(f"an image of {w}x{h} pixels has nothing to classify; check the file or the array's shape.")
    new_w, new_h, left, top = official_resize_crop(w, h, resolution)
    if new_w * new_h > 4 * resolution**2:  # aspect ratio over 4:1: resample only the kept region, no huge intermediate
        sx, sy = new_w / w, new_h / h
        img = img.resize((resolution, resolution), Image.BICUBIC,
                         box=(left / sx, top / sy, (left + resolution) / sx, (top + resolution) / sy))
    else:
        img = img.resize((new_w, new_h), Image.BICUBIC).crop((left, top, left + resolution, top + resolution))
    x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)  # (3, R, R) in [0, 1]
    return x * 2 - 1
