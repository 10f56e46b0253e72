"""The digits split of chapter 3 and the ImageNet folder loader."""
from __future__ import annotations

import pytest
import torch

from diffclf_lite.data.digits import DIGITS_TEST_PER_CLASS, first_per_class, load_digits_split


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


def test_imagenet_folder_loader_preprocesses_like_the_sd_adapter(tmp_path):
    import numpy as np
    from PIL import Image

    from diffclf_lite.data.digits import load_imagenet_folder
    from diffclf_lite.data.images import preprocess_image

    for c in range(1000):
        (tmp_path / f"n{c:08d}").mkdir()
    pixels = (np.random.default_rng(0).random((40, 60, 3)) * 255).astype("uint8")
    Image.fromarray(pixels).save(tmp_path / "n00000003" / "a.png")
    Image.fromarray(pixels).convert("L").save(tmp_path / "n00000007" / "b.png")
    x, y = load_imagenet_folder(tmp_path, class_ids=[3, 7], n_per_class=1, resolution=32)
    assert x.shape == (2, 3, 32, 32) and y.tolist() == [3, 7]
    assert torch.equal(x[0], preprocess_image(Image.open(tmp_path / "n00000003" / "a.png"), 32))
    assert torch.equal(x[1, 0], x[1, 2])  # a grey image becomes equal RGB channels
