"""Labelled images for zero-shot evaluation: the paper's datasets through torchvision (GPU runtimes such as Colab;
torchvision is imported only there), a folder of images (one subfolder per class), and synthetic shapes that exist
offline (the smoke and cpu profiles; scikit-image is not a dependency)."""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .fingerprints import files_fingerprint
from .prompts import canonical_name, dataset_info

__all__ = ["ImageDataset", "UnreadableImage", "torchvision_dataset", "image_folder", "synthetic_shapes", "load_dataset",
           "IMAGE_EXTENSIONS"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
SHAPES = ("circle", "square", "triangle")


class UnreadableImage(ValueError):
    """An image file that cannot be decoded (truncated, corrupt, too large for PIL): names the file, keeps its label."""

    def __init__(self, message: str, label: int) -> None:
        super().__init__(message)
        self.label = int(label)


@dataclass
class ImageDataset:
    """A sized, indexable set of (PIL image, label) pairs with its class names; `subset` picks a seeded sample."""

    name: str
    classes: list[str]
    get: Callable[[int], tuple[Any, int]]
    size: int
    indices: Sequence[int] | None = None  # positions in the underlying dataset, when this is a subset
    skipped: list[str] = field(default_factory=list)  # files left out when the dataset was built, with the reason
    fingerprint: str = ""  # what identifies the underlying data (for a folder: each file's path, content and label)

    def __len__(self) -> int:
        return self.size if self.indices is None else len(self.indices)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} images.")
        i = i % len(self)
        image, label = self.get(i if self.indices is None else self.indices[i])
        return image, int(label)

    def source_index(self, i: int) -> int:
        """Position of item i in the full dataset (what a record should cite)."""
        return i if self.indices is None else int(self.indices[i])

    def subset(self, n: int | None, seed: int = 0) -> "ImageDataset":
        """n images drawn without replacement (seeded), in increasing index order; all of them when n is None or >= len."""
        full = list(range(len(self))) if self.indices is None else list(self.indices)
        if n is None or n >= len(full):
            return self
        if n < 1:
            raise ValueError(f"a subset needs at least one image, got n = {n}.")
        picked = np.sort(np.random.default_rng(seed).choice(len(full), size=n, replace=False))
        return ImageDataset(self.name, self.classes, self.get, self.size, [full[k] for k in picked], self.skipped,
                            self.fingerprint)


# torchvision constructors: (class, kwargs for the test split). Each one downloads on first use (ImageNet excepted).
_TORCHVISION = {
    "cifar10": ("CIFAR10", {"train": False}),
    "stl10": ("STL10", {"split": "test"}),
    "pets": ("OxfordIIITPet", {"split": "test"}),
    "flowers102": ("Flowers102", {"split": "test"}),
    "food101": ("Food101", {"split": "test"}),
    "aircraft": ("FGVCAircraft", {"split": "test", "annotation_level": "variant"}),
    "imagenet": ("ImageNet", {"split": "val"}),
}


def torchvision_dataset(name: str, root: str | Path = "data", download: bool = True) -> ImageDataset:
    """The test split of one of the paper's datasets via torchvision (for Colab / GPU machines: needs torchvision and
    network; ImageNet needs the archives placed in `root` by hand). Class names are CLIP's, in the dataset's label order."""
    key = canonical_name(name)
    try:
        import torchvision.datasets as tvd
    except ImportError as err:
        raise ValueError(
            "torchvision is needed for the paper's datasets (`pip install torchvision`; Colab has it). "
            "Offline, use an image folder or the synthetic shapes instead."
        ) from err
    cls_name, kwargs = _TORCHVISION[key]
    kwargs = dict(kwargs) if key == "imagenet" else {**kwargs, "download": download}
    ds = getattr(tvd, cls_name)(root=str(root), **kwargs)
    classes = dataset_info(key)["classes"]
    n_tv = len(getattr(ds, "classes", classes))
    if n_tv != len(classes):
        raise ValueError(f"torchvision's {cls_name} has {n_tv} classes but the bundled names list {len(classes)}.")
    return ImageDataset(key, list(classes), lambda i: ds[i], len(ds), fingerprint=f"torchvision:{cls_name}:{len(ds)}")


def _scan(root: Path, folders: list[Path]) -> tuple[list[tuple[Path, int]], list[str]]:
    """(file, label) for every image PIL can open under the class folders, and 'file: reason' for what is left out
    (images beside the class folders are reported; other files there, such as classes.txt or prompts.csv, are not)."""
    from PIL import Image, UnidentifiedImageError

    items, skipped = [], []
    skipped += [f"{f}: not in a class subfolder" for f in sorted(root.iterdir())  # other files there: notes, prompts
                if f.is_file() and not f.name.startswith(".") and f.suffix.lower() in IMAGE_EXTENSIONS]
    for c, d in enumerate(folders):
        for f in sorted(d.rglob("*")):
            if not f.is_file() or any(part.startswith(".") for part in f.relative_to(root).parts):
                continue  # hidden files and folders (.DS_Store, .ipynb_checkpoints) are not data
            if f.suffix.lower() not in IMAGE_EXTENSIONS:
                skipped.append(f"{f}: not an image extension ({', '.join(IMAGE_EXTENSIONS)})")
                continue
            try:
                with Image.open(f):  # reads the header only: cheap, catches non-images named .jpg
                    pass
            except (OSError, UnidentifiedImageError, Image.DecompressionBombError, SyntaxError, ValueError) as err:
                skipped.append(f"{f}: cannot be read as an image ({type(err).__name__}: {str(err)[:120]})")
                continue
            items.append((f, c))
    return items, skipped


def image_folder(path: str | Path, class_names: Sequence[str] | None = None) -> ImageDataset:
    """Images under `path/<class>/...` (any depth below the class folder); classes sorted by folder name.
    `class_names` may rename the classes for prompting (same order as the sorted folders). Files that are not images
    (by extension or by header) are left out and reported: a warning, and the dataset's `skipped` list. A file that
    fails later (truncated data, too many pixels for PIL) raises `UnreadableImage` naming it."""
    from PIL import Image

    root = Path(path)
    if not root.is_dir():
        raise ValueError(f"{root} is not a folder; expected one subfolder of images per class.")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise ValueError(f"{root}: no class subfolders; put the images of each class in their own subfolder "
                         f"({root}/<class name>/image.png).")
    items, skipped = _scan(root, folders)
    if not items:
        raise ValueError(f"{root}: found no readable images ({', '.join(IMAGE_EXTENSIONS)}) in its class subfolders.")
    empty = [d.name for c, d in enumerate(folders) if not any(lbl == c for _, lbl in items)]
    if empty:
        raise ValueError(f"{root}: class folders without images: {empty[:5]} (none readable); add images or remove those folders.")
    names = [d.name.replace("_", " ") for d in folders] if class_names is None else [str(n) for n in class_names]
    if len(names) != len(folders):
        raise ValueError(f"{len(names)} class names given for {len(folders)} class folders in {root}.")
    if skipped:
        warnings.warn(f"{root}: {len(skipped)} files left out: " + "; ".join(skipped[:3]) + (" ..." if len(skipped) > 3 else ""),
                      stacklevel=2)
    digest = files_fingerprint(root, items)  # every image by content: a file rewritten in place is another dataset

    def get(i: int) -> tuple[Any, int]:
        f, label = items[i]
        try:
            with Image.open(f) as im:
                im.load()
                return im.copy(), label
        except (OSError, Image.DecompressionBombError, SyntaxError, ValueError) as err:
            raise UnreadableImage(f"{f}: cannot be decoded ({type(err).__name__}: {str(err)[:160]}); it is left out "
                                  "of the accuracy. Re-export or delete the file.", label) from err

    return ImageDataset(root.name, names, get, len(items), skipped=skipped, fingerprint=f"folder:{digest}")


def _draw_shape(shape: str, size: int, rng: np.random.Generator) -> Any:
    from PIL import Image, ImageDraw

    bg = tuple(int(v) for v in rng.integers(150, 256, 3))
    fg = tuple(int(v) for v in rng.integers(0, 110, 3))
    img = Image.new("RGB", (size, size), bg)
    draw = ImageDraw.Draw(img)
    r = size * rng.uniform(0.22, 0.38)
    cx, cy = size / 2 + rng.uniform(-0.1, 0.1) * size, size / 2 + rng.uniform(-0.1, 0.1) * size
    if shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fg)
    elif shape == "square":
        draw.rectangle([cx - r, cy - r, cx + r, cy + r], fill=fg)
    else:
        draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fg)
    return img


def synthetic_shapes(n_per_class: int = 4, size: int = 64, seed: int = 0) -> ImageDataset:
    """Offline stand-in data: a dark circle, square or triangle on a light background (classes = shape names)."""
    if n_per_class < 1 or size < 8:
        raise ValueError(f"need n_per_class >= 1 and size >= 8, got {n_per_class}, {size}.")
    labels = [c for _ in range(n_per_class) for c in range(len(SHAPES))]  # interleaved: any prefix is balanced
    images = [_draw_shape(SHAPES[c], size, np.random.default_rng([seed, i])) for i, c in enumerate(labels)]
    return ImageDataset("shapes", list(SHAPES), lambda i: (images[i], labels[i]), len(labels),
                        fingerprint=f"shapes:{n_per_class}:{size}:{seed}")


def load_dataset(spec: str, root: str | Path = "data", download: bool = True) -> ImageDataset:
    """`synthetic` (offline shapes), a folder path (one subfolder per class) or a paper dataset name (torchvision)."""
    if spec == "synthetic":
        return synthetic_shapes()
    if Path(spec).is_dir():
        return image_folder(spec)
    if Path(spec).exists():
        raise ValueError(f"--data {spec!r} is a file; give a folder with one subfolder of images per class.")
    try:
        return torchvision_dataset(spec, root=root, download=download)
    except ValueError as err:
        if "unknown dataset" in str(err) and ("/" in spec or "\\" in spec or spec.startswith(".")):
            raise ValueError(f"--data {spec!r}: no such folder (and not a dataset name: {err})") from None
        raise
