"""The CNN baseline of chapter 3: it learns the digits, and two runs with one seed agree."""
from __future__ import annotations

import math

import pytest
import torch

from diffclf_lite.book.baselines import SmallCNN, predict, train_cnn


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
