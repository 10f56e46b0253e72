"""Datasets for the class-conditional chapter: scikit-learn's digits (bundled, offline), CIFAR-10 and ImageNet folders.

Every loader returns float images (N, C, H, W) scaled to [-1, 1] (the DDPM convention, Ho et al. 2020 §4) and
long labels (N,).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

__all__ = ["DigitsSplit", "load_digits_split", "DIGITS_TEST_PER_CLASS", "DIGITS_SPLIT_SEED", "load_cifar10",
           "CIFAR10_CLASSES", "load_imagenet_folder", "first_per_class"]

DIGITS_TEST_PER_CLASS = 36  # 360 held-out digits (20%), the same 36 per class
DIGITS_SPLIT_SEED = 0
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@dataclass(frozen=True)
class DigitsSplit:
    """The fixed train/test split of scikit-learn's 1,797 handwritten 8x8 digits, upsampled and scaled to [-1, 1]."""

    x_train: torch.Tensor  # (N_train, 1, size, size) float32 in [-1, 1]
    y_train: torch.Tensor  # (N_train,) long
    x_test: torch.Tensor  # (N_test, 1, size, size)
    y_test: torch.Tensor  # (N_test,)
    train_index: torch.Tensor  # positions in sklearn.datasets.load_digits() order
    test_index: torch.Tensor
    classes: tuple[str, ...] = tuple(str(d) for d in range(10))


def load_digits_split(
    size: int = 16, test_per_class: int = DIGITS_TEST_PER_CLASS, seed: int = DIGITS_SPLIT_SEED
) -> DigitsSplit:
    """scikit-learn's digits with a stratified split: per class, a seeded permutation puts `test_per_class` digits in
    the test set and the rest in the training set (the defaults give 360 test and 1,437 training digits).

    Pixels 0..16 are divided by 16, upsampled bilinearly (8x8 -> size x size) and mapped to [-1, 1] (ink = +1).
    The split is computed with torch's generator, not sklearn's, so it does not change with the sklearn version.
    """
    from sklearn.datasets import load_digits  # lazy: scikit-learn is a book extra

    if size < 8:
        raise ValueError(f"size must be at least 8 (the digits are 8x8), got {size}.")
    data = load_digits()
    y = torch.as_tensor(data.target, dtype=torch.long)
    counts = torch.bincount(y)
    if not 1 <= test_per_class < int(counts.min()):
        raise ValueError(f"test_per_class must lie in [1, {int(counts.min()) - 1}] (the rarest digit has "
                         f"{int(counts.min())} images), got {test_per_class}.")
    g = torch.Generator().manual_seed(seed)
    test_parts, train_parts = [], []
    for c in range(len(counts)):
        idx = (y == c).nonzero().squeeze(1)
        idx = idx[torch.randperm(len(idx), generator=g)]
        test_parts.append(idx[:test_per_class])
        train_parts.append(idx[test_per_class:])
    test_index, train_index = torch.cat(test_parts).sort().values, torch.cat(train_parts).sort().values
    x = torch.as_tensor(data.images, dtype=torch.float32)[:, None] / 16.0  # (N, 1, 8, 8) in [0, 1]
    if size != 8:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    x = (x * 2 - 1).clamp(-1, 1)
    return DigitsSplit(x[train_index], y[train_index], x[test_index], y[test_index], train_index, test_index)


def first_per_class(labels: torch.Tensor, n_per_class: int) -> torch.Tensor:
    """Sorted indices of the first n_per_class items of every class, in their order: a stratified subset."""
    labels = torch.as_tensor(labels)
    counts = torch.bincount(labels)
    if n_per_class < 1 or int(counts[counts > 0].min()) < n_per_class:
        raise ValueError(f"n_per_class must lie in [1, {int(counts[counts > 0].min())}], got {n_per_class}.")
    return torch.cat([(labels == c).nonzero()[:n_per_class, 0] for c in labels.unique()]).sort().values


def _subsample(y: torch.Tensor, n_per_class: int | None, seed: int) -> torch.Tensor:
    """Indices of the first n_per_class items of each class after a seeded shuffle (all items if None)."""
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    if n_per_class is None:
        return order
    keep = [order[y[order] == c][:n_per_class] for c in y.unique()]
    return torch.cat(keep).sort().values


def load_cifar10(root: str | Path, train: bool, n_per_class: int | None = None, seed: int = 0,
                 download: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """CIFAR-10 through torchvision: images (N, 3, 32, 32) in [-1, 1] and labels (N,), optionally n_per_class each.

    Used by the chapter's `gpu` profile. torchvision is not installed on the machine that builds the book and
    nothing can be downloaded there, so this function is not run offline (the cpu and smoke profiles use digits).
    """
    try:
        from torchvision.datasets import CIFAR10  # lazy: only the gpu profile needs torchvision
    except ImportError as err:
        raise ImportError("load_cifar10 needs torchvision: `pip install torchvision` (Colab has it).") from err
    ds = CIFAR10(str(root), train=train, download=download)
    x = torch.as_tensor(ds.data).permute(0, 3, 1, 2).float() / 127.5 - 1  # (N, 3, 32, 32) uint8 -> [-1, 1]
    y = torch.as_tensor(ds.targets, dtype=torch.long)
    idx = _subsample(y, n_per_class, seed)
    return x[idx].contiguous(), y[idx]


def load_imagenet_folder(root: str | Path, class_ids: list[int], n_per_class: int, resolution: int = 256,
                         seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A subset of an ImageNet validation folder laid out as root/<wnid>/*.JPEG (all 1,000 wnid folders present).

    Class index k is the k-th wnid in sorted order (the standard ImageNet-1k index, which DiT's labels use).
    Images are resized (bicubic, shorter side) and centre-cropped to `resolution` as Li et al. §5 do, in [-1, 1].
    Not run offline: ImageNet must be downloaded by hand (image-net.org), e.g. onto Google Drive.
    """
    from PIL import Image  # lazy

    from .images import preprocess_image  # the same resize, crop and scaling as the Stable Diffusion adapter

    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"ImageNet folder {root} does not exist; point it at the val/ folder of ImageNet-1k.")
    wnids = sorted(p.name for p in root.iterdir() if p.is_dir())
    if len(wnids) != 1000:
        raise ValueError(f"{root} holds {len(wnids)} class folders, not 1,000: the class index of a folder is its "
                         "position among all 1,000 sorted wnids, so the full validation layout is needed.")
    if not class_ids or min(class_ids) < 0 or max(class_ids) >= 1000:
        raise ValueError(f"class_ids must be ImageNet indices in [0, 999], got {class_ids}.")
    g = torch.Generator().manual_seed(seed)
    images, labels = [], []
    for c in class_ids:
        files = sorted((root / wnids[c]).iterdir())
        for k in torch.randperm(len(files), generator=g)[:n_per_class].tolist():
            images.append(preprocess_image(Image.open(files[k]), resolution))  # (3, R, R) in [-1, 1]
            labels.append(c)
    return torch.stack(images), torch.tensor(labels, dtype=torch.long)
