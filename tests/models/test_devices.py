"""Devices that do not exist are refused with a message saying what to use instead."""
from __future__ import annotations

import pytest
import torch

from diffclf_lite.models.devices import resolve_device
from diffclf_lite.models.sd import StableDiffusion


def test_devices_that_do_not_exist():
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="not a device name"):
        resolve_device("graphics-card")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="'cuda' was requested but this machine has none.*--device cpu"):
            resolve_device("cuda")
        with pytest.raises(ValueError, match="has none"):
            StableDiffusion(None, None, None, None, torch.ones(3), device="cuda:0")
    else:
        with pytest.raises(ValueError, match="numbered from 0"):
            resolve_device(f"cuda:{torch.cuda.device_count()}")
