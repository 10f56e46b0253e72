"""A miniature captioned world for the miniature Stable Diffusion and CLIP: real handwriting (scikit-learn's digits,
by the fixed split of `data.digits`), drawn in a colour, on the left or the right of a 32x32 black image, alone or in
pairs, each image with a caption ("a red seven on the left", "a blue three left of a green one").

Deterministic under a seed. Held out from training, so that the zero-shot tests are zero-shot:
- the handwriting: training images use the digits split's training digits, test sets its test digits;
- (colour, digit) combinations: `HELD_OUT_COMBOS` (each digit in one of the five colours) never occur in training;
- pairs: a seeded fifth of the (colour pair, digit pair) groups occurs only in the test pairs;
- a prompt template: training captions start with "a"; the held-out template starts with "the".
"""
from __future__ import annotations

import numbers
import random
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F


__all__ = ["COLOURS", "DIGIT_WORDS", "COLOUR_NAMES", "POSITIONS", "HELD_OUT_COMBOS", "IMAGE_SIZE", "GLYPH_SIZE", "Item",
           "MiniatureSet", "caption", "pair_caption", "vocabulary", "render", "make_singles", "make_pairs",
           "training_set", "TASKS", "TEMPLATES", "task_prompts", "task_set", "write_task", "pair_groups",
           "random_caption", "miniature_winoground"]

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40), "green": (40, 180, 60), "blue": (50, 90, 235), "yellow": (235, 215, 40),
    "purple": (160, 60, 210),
}
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
COLOUR_NAMES = tuple(COLOURS)
POSITIONS = ("left", "right")
HELD_OUT_COMBOS = frozenset((COLOUR_NAMES[d % len(COLOUR_NAMES)], DIGIT_WORDS[d]) for d in range(10))
IMAGE_SIZE, GLYPH_SIZE = 32, 14
TASKS = ("digit", "colour", "position")


@dataclass(frozen=True)
class Item:
    """What one image shows: one or two (colour, digit, position) objects; two objects differ in colour and digit."""

    objects: tuple[tuple[str, int, str], ...]

    def __post_init__(self) -> None:
        for colour, digit, pos in self.objects:
            if colour not in COLOUR_NAMES or not 0 <= digit <= 9 or pos not in POSITIONS:
                raise ValueError(f"bad object {(colour, digit, pos)}: colours {COLOUR_NAMES}, digits 0-9, "
                                 f"positions {POSITIONS}.")
        if len(self.objects) == 2:
            (c1, d1, p1), (c2, d2, p2) = self.objects
            if c1 == c2 or d1 == d2 or p1 == p2:
                raise ValueError(f"the two objects must differ in colour, digit and position, got {self.objects}.")
        elif len(self.objects) != 1:
            raise ValueError(f"an image holds one or two objects, got {len(self.objects)}.")


def caption(colour: str | None, digit: int | None, pos: str | None, det: str = "a", form: int = 0) -> str:
    """One object's caption; any attribute may be left out (None): `a red seven on the left`, `a seven in red`,
    `a red digit`, ... `det` "a" is the training determiner, "the" the held-out template; `form` 1 puts the colour
    after the digit ("a seven in red on the left")."""
    noun = "digit" if digit is None else DIGIT_WORDS[digit]
    words = [det]
    if colour is not None and form == 0:
        words.append(colour)
    words.append(noun)
    if colour is not None and form == 1:
        words += ["in", colour]
    if pos is not None:
        words += ["on", "the", pos]
    return " ".join(words)


def pair_caption(first: tuple[str, int], relation: str, second: tuple[str, int]) -> str:
    """`a red three left of a blue seven` (the binding chapter's caption form, with digits as the objects)."""
    return f"a {first[0]} {DIGIT_WORDS[first[1]]} {relation} of a {second[0]} {DIGIT_WORDS[second[1]]}"


def vocabulary() -> list[str]:
    """Every word a caption or a prompt of this world uses."""
    return ["a", "the", "on", "in", "of", "digit", *POSITIONS, *COLOUR_NAMES, *DIGIT_WORDS]


def _digits(split: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The 8x8 digits of one split of data.digits' fixed split, as ink in [0, 1] (N, 8, 8), their labels, and their
    positions in scikit-learn's load_digits() order."""
    from .digits import load_digits_split

    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}.")
    s = load_digits_split(size=8)
    x, y, index = (s.x_train, s.y_train, s.train_index) if split == "train" else (s.x_test, s.y_test, s.test_index)
    return ((x[:, 0] + 1) / 2).clamp(0, 1), y, index


def render(glyphs: Sequence[torch.Tensor], item: Item, rng: random.Random) -> torch.Tensor:
    """Draw `item` with the given 8x8 ink glyphs (one per object): (3, 32, 32) uint8. Each glyph is upsampled
    bilinearly to 14x14, coloured, and placed in its half with a jittered position (2 px across, 8 px down)."""
    img = torch.zeros(3, IMAGE_SIZE, IMAGE_SIZE)
    for glyph, (colour, _, pos) in zip(glyphs, item.objects):
        ink = F.interpolate(glyph[None, None], size=(GLYPH_SIZE, GLYPH_SIZE), mode="bilinear", align_corners=False)[0]
        x0 = rng.randint(0, 2) + (1 if pos == "left" else 16)
        y0 = rng.randint(2, 10) if len(item.objects) == 1 else rng.randint(5, 13)
        rgb = torch.tensor(COLOURS[colour], dtype=torch.float32).view(3, 1, 1) / 255
        patch = img[:, y0:y0 + GLYPH_SIZE, x0:x0 + GLYPH_SIZE]
        img[:, y0:y0 + GLYPH_SIZE, x0:x0 + GLYPH_SIZE] = torch.maximum(patch, ink.clamp(0, 1) * rgb)
    return (img * 255).round().to(torch.uint8)


@dataclass
class MiniatureSet:
    """Images (N, 3, 32, 32) uint8, what each shows, and the handwriting it is drawn from (positions in
    scikit-learn's load_digits() order, one per object)."""

    images: torch.Tensor
    items: list[Item]
    sources: list[tuple[int, ...]]

    def __len__(self) -> int:
        return len(self.items)


def _check_count(n: int) -> None:
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"the number of images must be a whole number of at least 1, got {n!r}.")


def _by_digit(labels: torch.Tensor) -> dict[int, list[int]]:
    return {d: (labels == d).nonzero().squeeze(1).tolist() for d in range(10)}


def make_singles(n: int, split: str, seed: int = 0, combos: str = "auto", balance: str | None = None) -> MiniatureSet:
    """n one-digit images of the `train` or `test` handwriting. combos: `train` (never a held-out (colour, digit)
    combination), `held-out` (only those), `all`; `auto` is `train` for the training split and `all` otherwise.
    balance: a task (`digit`, `colour` or `position`) whose classes take turns, so that every class has n / C images
    (the other attributes stay random)."""
    if combos == "auto":
        combos = "train" if split == "train" else "all"
    if combos not in ("train", "held-out", "all"):
        raise ValueError(f"combos must be 'train', 'held-out', 'all' or 'auto', got {combos!r}.")
    if balance not in (None, *TASKS):
        raise ValueError(f"balance must be None or one of {TASKS}, got {balance!r}.")
    _check_count(n)
    glyphs, labels, index = _digits(split)
    by_digit = _by_digit(labels)
    rng = random.Random(f"singles-{split}-{combos}-{balance}-{seed}")
    images, items, sources = [], [], []
    for k in range(n):
        digit = k % 10 if balance == "digit" else rng.randrange(10)
        allowed = [c for c in COLOUR_NAMES if combos == "all"
                   or ((c, DIGIT_WORDS[digit]) in HELD_OUT_COMBOS) == (combos == "held-out")]
        if balance == "colour":  # the k-th colour, with a digit it may go with
            colour = COLOUR_NAMES[k % len(COLOUR_NAMES)]
            digit = rng.choice([d for d in range(10) if combos == "all"
                                or ((colour, DIGIT_WORDS[d]) in HELD_OUT_COMBOS) == (combos == "held-out")])
        else:
            colour = rng.choice(allowed)
        pos = POSITIONS[k % 2] if balance == "position" else rng.choice(POSITIONS)
        item = Item(((colour, digit, pos),))
        k = rng.choice(by_digit[digit])
        images.append(render([glyphs[k]], item, rng))
        items.append(item)
        sources.append((int(index[k]),))
    return MiniatureSet(torch.stack(images), items, sources)


def pair_groups(test_fraction: float = 0.2, split_seed: int = 0) -> tuple[list, list]:
    """(train groups, test groups): every (colour pair, digit pair), a seeded `test_fraction` held out."""
    groups = [(cp, dp) for cp in combinations(COLOUR_NAMES, 2) for dp in combinations(range(10), 2)]
    random.Random(split_seed).shuffle(groups)
    k = round(test_fraction * len(groups))
    return groups[k:], groups[:k]


def make_pairs(n: int, split: str, seed: int = 0) -> MiniatureSet:
    """n two-digit images: the training split draws from the training groups, the test split from the held-out ones
    (each group: 2 colourings x 2 orders). Objects with a held-out (colour, digit) combination are not drawn in
    training."""
    _check_count(n)
    glyphs, labels, index = _digits(split)
    by_digit = _by_digit(labels)
    train_groups, test_groups = pair_groups()
    pool = train_groups if split == "train" else test_groups
    rng = random.Random(f"pairs-{split}-{seed}")
    images, items, sources = [], [], []
    while len(items) < n:
        (c1, c2), (d1, d2) = rng.choice(pool)
        if rng.random() < 0.5:
            c1, c2 = c2, c1
        objs = [(c1, d1), (c2, d2)]
        if split == "train" and any((c, DIGIT_WORDS[d]) in HELD_OUT_COMBOS for c, d in objs):
            continue
        rng.shuffle(objs)
        item = Item(((*objs[0], "left"), (*objs[1], "right")))
        ks = [rng.choice(by_digit[d]) for _, d in objs]
        images.append(render([glyphs[k] for k in ks], item, rng))
        items.append(item)
        sources.append(tuple(int(index[k]) for k in ks))
    return MiniatureSet(torch.stack(images), items, sources)


def random_caption(item: Item, rng: random.Random) -> str:
    """A training caption of `item`: for one object each attribute is named with some probability (the digit 85%,
    the colour 70%, the position 60%) in one of the two training forms; a pair is named in full, either way round."""
    if len(item.objects) == 2:
        (c1, d1, _), (c2, d2, _) = item.objects
        if rng.random() < 0.5:
            return pair_caption((c1, d1), "left", (c2, d2))
        return pair_caption((c2, d2), "right", (c1, d1))
    colour, digit, pos = item.objects[0]
    return caption(colour if rng.random() < 0.7 else None, digit if rng.random() < 0.85 else None,
                   pos if rng.random() < 0.6 else None, "a", rng.randrange(2))


def training_set(n_singles: int, n_pairs: int, seed: int = 0) -> MiniatureSet:
    """The training images: singles (training handwriting, training combinations) then pairs (training groups)."""
    s, p = make_singles(n_singles, "train", seed), make_pairs(n_pairs, "train", seed)
    return MiniatureSet(torch.cat([s.images, p.images]), s.items + p.items, s.sources + p.sources)


TEMPLATES = {"digit": ("a {}", "the {}"), "colour": ("a {} digit", "the {} digit"),
             "position": ("a digit on the {}", "the digit on the {}")}  # (training phrasing, held-out phrasing)


def task_prompts(task: str, template: str = "a") -> tuple[list[str], list[str]]:
    """(class names, one prompt per class) of a zero-shot task. template `a`: the training determiner ("a seven");
    `the`: the held-out template ("the seven")."""
    if template not in ("a", "the"):
        raise ValueError(f"template must be 'a' (training) or 'the' (held out), got {template!r}.")
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {TASKS}.")
    names = {"digit": DIGIT_WORDS, "colour": COLOUR_NAMES, "position": POSITIONS}[task]
    return list(names), [TEMPLATES[task][template == "the"].format(n) for n in names]


def task_set(task: str, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The held-out test images of a task and their labels, every class equally often: test handwriting; the colour
    task uses only held-out (colour, digit) combinations."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {TASKS}.")
    data = make_singles(n, "test", seed, combos="held-out" if task == "colour" else "all", balance=task)
    index = {"digit": 1, "colour": 0, "position": 2}[task]
    names = task_prompts(task)[0]
    labels = [o[0][index] if task == "digit" else names.index(o[0][index]) for o in (it.objects for it in data.items)]
    return data.images, torch.tensor(labels, dtype=torch.long)


def write_task(folder: str | Path, task: str, n: int, seed: int = 0) -> Path:
    """Write a task's test images as an image folder: one sub-folder of PNGs per class, named `<index>_<class>` so
    that the sorted folders are in class order, with `classes.txt` (the class names, one per line), `prompts.csv`
    (the training template, what `diffclf evaluate --data FOLDER` uses) and `prompts_held_out.csv` (the held-out
    template, for `--prompts FOLDER/prompts_held_out.csv`)."""
    from PIL import Image

    out = Path(folder)
    if out.exists() and any(out.iterdir()):  # new images beside old ones would make a mixed test set
        raise ValueError(f"{out} already holds files; remove it or write the task into a new folder.")
    images, labels = task_set(task, n, seed)
    names = task_prompts(task)[0]
    dirs = [out / f"{k}_{name}" for k, name in enumerate(names)]
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True)
    for i, (img, y) in enumerate(zip(images, labels.tolist())):
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(dirs[y] / f"{i:05d}.png")
    (out / "classes.txt").write_text("\n".join(names) + "\n", encoding="utf-8")
    for file, template in (("prompts.csv", "a"), ("prompts_held_out.csv", "the")):
        rows = [f"{k},{p},{name}" for k, (name, p) in enumerate(zip(*task_prompts(task, template)))]
        (out / file).write_text("\n".join(["class_index,prompt,class_name", *rows]) + "\n", encoding="utf-8")
    return out


def miniature_winoground(n: int, seed: int = 0) -> list:
    """Winoground-format examples (Thrush et al. 2022) from held-out pairs: two images and two captions made of the
    same words. Even examples exchange the digits ("a red three left of a blue seven" / "a red seven left of a blue
    three": tagged Object), odd ones the colours (tagged Relation, as Winoground tags swapped adjectives). Both images
    of an example use the same two handwritten digits, at the same places."""
    from .winoground import WinogroundExample

    _check_count(n)
    glyphs, labels, _ = _digits("test")
    by_digit = _by_digit(labels)
    _, test_groups = pair_groups()
    rng = random.Random(f"winoground-{seed}")
    examples = []
    for k in range(n):
        (c1, c2), (d1, d2) = rng.choice(test_groups)
        g1, g2 = glyphs[rng.choice(by_digit[d1])], glyphs[rng.choice(by_digit[d2])]
        if k % 2 == 0:  # the digits change places, the colours stay
            objs = [((c1, d1), (c2, d2)), ((c1, d2), (c2, d1))]
            ink = [(g1, g2), (g2, g1)]
        else:  # the colours change places, the digits stay
            objs = [((c1, d1), (c2, d2)), ((c2, d1), (c1, d2))]
            ink = [(g1, g2), (g1, g2)]
        state = rng.getstate()
        images = []
        for (a, b), pair in zip(objs, ink):
            rng.setstate(state)  # the same jitter for both images
            images.append(render(list(pair), Item(((*a, "left"), (*b, "right"))), rng))
        captions = tuple(pair_caption(a, "left", b) for a, b in objs)
        pil = tuple(im.permute(1, 2, 0).numpy() for im in images)
        examples.append(WinogroundExample(k, captions, "Object" if k % 2 == 0 else "Relation", lambda p=pil: p))
    return examples
