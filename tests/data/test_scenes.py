"""Binding captions of two-digit images: true of the image they were made from, either phrasing, and clear errors."""
from __future__ import annotations

import pytest

from diffclf_lite.data.miniature import Item, make_pairs
from diffclf_lite.data.scenes import Caption, Obj, caption_of, describes, parse_caption, swap_relation


def test_captions_describe_their_image_in_both_phrasings() -> None:
    item = Item((("red", 3, "left"), ("blue", 7, "right")))
    left, right = caption_of(item, "left"), caption_of(item, "right")
    assert str(left) == "a red three left of a blue seven" and str(right) == "a blue seven right of a red three"
    assert describes(left, item) and describes(right, item) and not describes(swap_relation(left), item)
    assert parse_caption(str(left)) == left
    for it in make_pairs(30, "test").items:
        assert all(describes(caption_of(it, rel), it) for rel in ("left", "right"))


def test_bad_captions_get_clear_errors() -> None:
    with pytest.raises(ValueError, match="relation"):
        Caption(Obj("red", "three"), "above", Obj("blue", "seven"))
    with pytest.raises(ValueError, match="unknown colour"):
        Obj("mauve", "three")
    with pytest.raises(ValueError, match="two objects"):
        caption_of(Item((("red", 3, "left"),)))
    with pytest.raises(ValueError, match="relation"):
        caption_of(Item((("red", 3, "left"), ("blue", 7, "right"))), "above")
