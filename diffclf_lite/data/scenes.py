"""Two-object scenes with captions ("a red circle left of a blue square"): an offline compositional benchmark.

Clark & Jaini (NeurIPS 2023, Sec. 5) test attribute binding on CLEVR-style two-object scenes: the true caption
against a distractor with the same words bound differently. Here the scenes are drawn with PIL, deterministic
under a seed, and the test set uses only (colour pair, shape pair) groups that the training set never shows.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from itertools import combinations
from typing import Sequence

import numpy as np
import torch

__all__ = ["COLOURS", "SHAPES", "Obj", "Scene", "Caption", "SceneSet", "caption_of", "describes", "parse_caption",
           "swap_colours", "swap_relation", "change_colour", "change_shape", "render", "scene_groups", "make_scenes"]

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40), "green": (40, 180, 60), "blue": (50, 90, 235), "yellow": (235, 215, 40),
    "purple": (160, 60, 210),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond")
RELATIONS: tuple[str, ...] = ("left", "right")


def _check_vocab(colours: Sequence[str], shapes: Sequence[str]) -> None:
    bad_c, bad_s = [c for c in colours if c not in COLOURS], [s for s in shapes if s not in SHAPES]
    if bad_c or bad_s:
        raise ValueError(f"unknown colour(s) {bad_c} / shape(s) {bad_s}; choose colours from {list(COLOURS)} "
                         f"and shapes from {list(SHAPES)}.")
    if len(set(colours)) < 3 or len(set(shapes)) < 3:
        raise ValueError(f"need at least 3 distinct colours and 3 distinct shapes (the controls swap in one that is "
                         f"not in the scene), got colours {list(colours)} and shapes {list(shapes)}.")


@dataclass(frozen=True)
class Obj:
    """One object: a colour and a shape."""

    colour: str
    shape: str

    def __post_init__(self) -> None:
        if self.colour not in COLOURS:
            raise ValueError(f"unknown colour {self.colour!r}; choose one of {list(COLOURS)}.")
        if self.shape not in SHAPES:
            raise ValueError(f"unknown shape {self.shape!r}; choose one of {list(SHAPES)}.")

    def __str__(self) -> str:
        return f"{self.colour} {self.shape}"


@dataclass(frozen=True)
class Scene:
    """Two objects, `left` and `right`, that differ in colour and in shape (so every swap changes the caption)."""

    left: Obj
    right: Obj

    def __post_init__(self) -> None:
        if self.left.colour == self.right.colour or self.left.shape == self.right.shape:
            raise ValueError(f"the two objects must differ in colour and in shape, got {self.left} and {self.right}.")


@dataclass(frozen=True)
class Caption:
    """`a {first} {relation} of a {second}`, relation `left` or `right`."""

    first: Obj
    relation: str
    second: Obj

    def __post_init__(self) -> None:
        if self.relation not in RELATIONS:
            raise ValueError(f"relation must be one of {RELATIONS}, got {self.relation!r}.")

    def __str__(self) -> str:
        return f"a {self.first} {self.relation} of a {self.second}"


def caption_of(scene: Scene, relation: str = "left") -> Caption:
    """The true caption of `scene`, phrased with `left` ("a L left of a R") or `right` ("a R right of a L")."""
    if relation == "left":
        return Caption(scene.left, "left", scene.right)
    if relation == "right":
        return Caption(scene.right, "right", scene.left)
    raise ValueError(f"relation must be one of {RELATIONS}, got {relation!r}.")


def describes(caption: Caption, scene: Scene) -> bool:
    """Whether `caption` is true of `scene`."""
    return caption in (caption_of(scene, "left"), caption_of(scene, "right"))


def parse_caption(text: str) -> Caption:
    """The inverse of str(Caption): "a red circle left of a blue square" -> Caption."""
    words = text.strip().split()
    if len(words) != 8 or words[0] != "a" or words[4] != "of" or words[5] != "a":
        raise ValueError(f"not a caption of the form 'a <colour> <shape> <left|right> of a <colour> <shape>': {text!r}.")
    return Caption(Obj(words[1], words[2]), words[3], Obj(words[6], words[7]))


# ---- distractors: the same scene described wrongly in one controlled way ----
def swap_colours(c: Caption) -> Caption:
    """Binding: the two objects exchange colours (the same words, bound the other way)."""
    return Caption(Obj(c.second.colour, c.first.shape), c.relation, Obj(c.first.colour, c.second.shape))


def swap_relation(c: Caption) -> Caption:
    """Relation: left <-> right (the same objects, mirrored)."""
    return Caption(c.first, "right" if c.relation == "left" else "left", c.second)


def change_colour(c: Caption, rng: random.Random, colours: Sequence[str] = tuple(COLOURS)) -> Caption:
    """Control: one object (chosen by rng) takes a colour that is not in the scene."""
    new = rng.choice([k for k in colours if k not in (c.first.colour, c.second.colour)])
    if rng.random() < 0.5:
        return Caption(Obj(new, c.first.shape), c.relation, c.second)
    return Caption(c.first, c.relation, Obj(new, c.second.shape))


def change_shape(c: Caption, rng: random.Random, shapes: Sequence[str] = SHAPES) -> Caption:
    """Control: one object (chosen by rng) takes a shape that is not in the scene."""
    new = rng.choice([s for s in shapes if s not in (c.first.shape, c.second.shape)])
    if rng.random() < 0.5:
        return Caption(Obj(c.first.colour, new), c.relation, c.second)
    return Caption(c.first, c.relation, Obj(c.second.colour, new))


# ---- rendering ----
def _draw(draw: "ImageDraw.ImageDraw", obj: Obj, cx: float, cy: float, r: float) -> None:  # noqa: F821
    fill = COLOURS[obj.colour]
    if obj.shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif obj.shape == "square":
        s = 0.85 * r
        draw.rectangle([cx - s, cy - s, cx + s, cy + s], fill=fill)
    elif obj.shape == "triangle":
        draw.polygon([(cx, cy - r), (cx - r, cy + 0.8 * r), (cx + r, cy + 0.8 * r)], fill=fill)
    else:  # diamond
        draw.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=fill)


def render(scene: Scene, size: int = 32, rng: random.Random | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Draw `scene` on black: (size, size, 3) uint8, and the object centres (2, 2) as (x, y) pixels, left first.

    The left object's centre lies in the left third-ish, the right one's in the right third-ish; sizes and heights
    are jittered by `rng` (a centred, fixed layout without it).
    """
    from PIL import Image, ImageDraw

    if size < 16:
        raise ValueError(f"scenes need at least 16x16 pixels to tell shapes apart, got size={size}.")
    u = (lambda a, b: rng.uniform(a, b)) if rng is not None else (lambda a, b: (a + b) / 2)
    img = Image.new("RGB", (size, size))
    draw = ImageDraw.Draw(img)
    centres = []
    for obj, (x_lo, x_hi) in ((scene.left, (0.2, 0.28)), (scene.right, (0.72, 0.8))):
        r = u(0.17, 0.22) * size
        cx, cy = u(x_lo, x_hi) * size, u(0.3, 0.7) * size
        _draw(draw, obj, cx, cy, r)
        centres.append((cx, cy))
    return np.asarray(img), np.asarray(centres)


def scene_groups(colours: Sequence[str], shapes: Sequence[str]) -> list[tuple[tuple[str, str], tuple[str, str]]]:
    """All (colour pair, shape pair) groups; a group holds 4 scenes (2 pairings x 2 orders)."""
    return [(cp, sp) for cp in combinations(colours, 2) for sp in combinations(shapes, 2)]


@dataclass
class SceneSet:
    """Rendered scenes: images (N, 3, H, W) uint8, the scenes, their true captions (randomly phrased)."""

    images: torch.Tensor
    scenes: list[Scene]
    captions: list[Caption]
    centres: np.ndarray  # (N, 2, 2) object centres (x, y), left first

    def __len__(self) -> int:
        return len(self.scenes)

    @property
    def texts(self) -> list[str]:
        return [str(c) for c in self.captions]


def make_scenes(n: int, split: str, seed: int = 0, size: int = 32, colours: Sequence[str] = tuple(COLOURS),
                shapes: Sequence[str] = SHAPES, test_fraction: float = 0.2, split_seed: int = 0) -> SceneSet:
    """n scenes of the `train` or `test` split: the test split's (colour pair, shape pair) groups never occur in
    training (a seeded `test_fraction` of all groups, fixed by `split_seed`), so binding must generalise."""
    _check_vocab(colours, shapes)
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}.")
    if int(n) < 1:
        raise ValueError(f"need at least one scene, got n={n}.")
    groups = scene_groups(colours, shapes)
    random.Random(split_seed).shuffle(groups)
    n_test = min(len(groups) - 1, max(1, round(test_fraction * len(groups))))
    pool = groups[:n_test] if split == "test" else groups[n_test:]
    rng = random.Random(f"{split}-{seed}")
    images, scenes, captions, centres = [], [], [], []
    for _ in range(int(n)):
        (c1, c2), (s1, s2) = rng.choice(pool)
        if rng.random() < 0.5:
            s1, s2 = s2, s1  # the other pairing of the group
        a, b = Obj(c1, s1), Obj(c2, s2)
        scene = Scene(a, b) if rng.random() < 0.5 else Scene(b, a)
        img, xy = render(scene, size, rng)
        images.append(img)
        scenes.append(scene)
        captions.append(caption_of(scene, rng.choice(RELATIONS)))
        centres.append(xy)
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()  # (N, 3, H, W) uint8
    return SceneSet(x, scenes, captions, np.stack(centres))
