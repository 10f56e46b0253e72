"""Training the caption-conditional models is deterministic under a seed."""
from __future__ import annotations

import pytest

from conftest import SHAPES3
from diffclf_lite.data.scenes import make_scenes
from diffclf_lite.training.captions import BindingConfig, train_caption_diffusion, train_contrastive


@pytest.fixture(scope="module")
def train_set():
    return make_scenes(64, "train", seed=0, size=16, shapes=SHAPES3)


def test_training_is_deterministic(train_set) -> None:
    cfg = BindingConfig(steps=2, batch_size=4, preset="tiny", text_width=32, seed=5)
    a, b = (train_caption_diffusion(train_set.images, train_set.texts, cfg, progress=False) for _ in range(2))
    assert a.losses == b.losses
    with pytest.raises(ValueError, match="one caption each"):
        train_contrastive(train_set.images, train_set.texts[:-1], cfg, progress=False)
