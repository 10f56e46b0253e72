"""Captions of two-object images and their controlled distractors, for the attribute-binding benchmark (Clark &
Jaini, NeurIPS 2023, Sec. 5): the true caption against one with the same words bound differently.

The images are the miniature world's held-out pairs (`data.miniature.make_pairs(n, "test")`): two handwritten
digits, left and right, that differ in colour and in digit. A caption names both: "a red three left of a blue seven",
or the same image the other way round, "a blue seven right of a red three".
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

from .miniature import COLOUR_NAMES, DIGIT_WORDS, Item

__all__ = ["RELATIONS", "Obj", "Caption", "caption_of", "describes", "parse_caption", "swap_colours",
           "swap_relation", "change_colour", "change_digit"]

RELATIONS: tuple[str, ...] = ("left", "right")


@dataclass(frozen=True)
class Obj:
    """One object: a colour and a digit word."""

    colour: str
    digit: str

    def __post_init__(self) -> None:
        if self.colour not in COLOUR_NAMES:
            raise ValueError(f"unknown colour {self.colour!r}; choose one of {list(COLOUR_NAMES)}.")
        if self.digit not in DIGIT_WORDS:
            raise ValueError(f"unknown digit {self.digit!r}; choose one of {list(DIGIT_WORDS)}.")

    def __str__(self) -> str:
        return f"{self.colour} {self.digit}"


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


def _objects(item: Item) -> tuple[Obj, Obj]:
    if len(item.objects) != 2:
        raise ValueError(f"a binding caption describes two objects, got an image of {len(item.objects)}.")
    (c1, d1, _), (c2, d2, _) = item.objects  # left first
    return Obj(c1, DIGIT_WORDS[d1]), Obj(c2, DIGIT_WORDS[d2])


def caption_of(item: Item, relation: str = "left") -> Caption:
    """The true caption of a two-digit image, phrased with `left` ("a L left of a R") or `right` ("a R right of a L")."""
    left, right = _objects(item)
    if relation == "left":
        return Caption(left, "left", right)
    if relation == "right":
        return Caption(right, "right", left)
    raise ValueError(f"relation must be one of {RELATIONS}, got {relation!r}.")


def describes(caption: Caption, item: Item) -> bool:
    """Whether `caption` is true of the image `item`."""
    return caption in (caption_of(item, "left"), caption_of(item, "right"))


def parse_caption(text: str) -> Caption:
    """The inverse of str(Caption): "a red three left of a blue seven" -> Caption."""
    words = text.strip().split()
    if len(words) != 8 or words[0] != "a" or words[4] != "of" or words[5] != "a":
        raise ValueError(f"not a caption of the form 'a <colour> <digit> <left|right> of a <colour> <digit>': {text!r}.")
    return Caption(Obj(words[1], words[2]), words[3], Obj(words[6], words[7]))


# ---- distractors: the same image described wrongly in one controlled way ----
def swap_colours(c: Caption) -> Caption:
    """Binding: the two objects exchange colours (the same words, bound the other way)."""
    return Caption(Obj(c.second.colour, c.first.digit), c.relation, Obj(c.first.colour, c.second.digit))


def swap_relation(c: Caption) -> Caption:
    """Relation: left <-> right (the same objects, mirrored)."""
    return Caption(c.first, "right" if c.relation == "left" else "left", c.second)


def change_colour(c: Caption, rng: random.Random, colours: Sequence[str] = COLOUR_NAMES) -> Caption:
    """Control: one object (chosen by rng) takes a colour that is not in the image."""
    new = rng.choice([k for k in colours if k not in (c.first.colour, c.second.colour)])
    if rng.random() < 0.5:
        return Caption(Obj(new, c.first.digit), c.relation, c.second)
    return Caption(c.first, c.relation, Obj(new, c.second.digit))


def change_digit(c: Caption, rng: random.Random, digits: Sequence[str] = DIGIT_WORDS) -> Caption:
    """Control: one object (chosen by rng) takes a digit that is not in the image."""
    new = rng.choice([d for d in digits if d not in (c.first.digit, c.second.digit)])
    if rng.random() < 0.5:
        return Caption(Obj(c.first.colour, new), c.relation, c.second)
    return Caption(c.first, c.relation, Obj(c.second.colour, new))
