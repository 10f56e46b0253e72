"""Generated two-object scenes: deterministic, drawn as captioned, held-out groups, caption swaps, and
clear errors for bad scenes and captions."""
from __future__ import annotations

import pytest
import torch

from diffclf_lite.data.scenes import (COLOURS, Caption, Obj, Scene, caption_of, describes, make_scenes, parse_caption,
                                      scene_groups, swap_colours, swap_relation)


# ---- scenes ----
def test_scenes_are_deterministic_under_a_seed() -> None:
    a, b, c = (make_scenes(20, "train", seed=s, size=16) for s in (3, 3, 4))
    assert torch.equal(a.images, b.images) and a.texts == b.texts
    assert not torch.equal(a.images, c.images)
    assert a.images.shape == (20, 3, 16, 16) and a.images.dtype == torch.uint8


def test_pixels_at_the_object_centres_have_the_captioned_colours() -> None:
    s = make_scenes(50, "test", seed=1, size=32)
    for img, scene, cap, xy in zip(s.images, s.scenes, s.captions, s.centres):
        assert describes(cap, scene) and parse_caption(str(cap)) == cap
        left, right = (cap.first, cap.second) if cap.relation == "left" else (cap.second, cap.first)
        for obj, (x, y) in zip((left, right), xy):
            assert tuple(img[:, int(y), int(x)].tolist()) == COLOURS[obj.colour]
        assert xy[0, 0] < xy[1, 0]  # the left object is on the left
        assert int((img.sum(0) == 0).sum()) > 0.4 * img.shape[1] * img.shape[2]  # black background around them


def test_test_split_holds_out_whole_groups() -> None:
    def groups(s):
        return {(frozenset((sc.left.colour, sc.right.colour)), frozenset((sc.left.shape, sc.right.shape)))
                for sc in s.scenes}
    train, test = make_scenes(400, "train", seed=0), make_scenes(200, "test", seed=0)
    assert groups(train).isdisjoint(groups(test))
    assert len(groups(train) | groups(test)) == len(scene_groups(tuple(COLOURS), ("circle", "square", "triangle",
                                                                                  "diamond")))


def test_swaps_are_involutions() -> None:
    c = parse_caption("a red circle left of a blue square")
    assert str(swap_colours(c)) == "a blue circle left of a red square"
    assert swap_colours(swap_colours(c)) == c and swap_relation(swap_relation(c)) == c
    assert describes(swap_relation(c), Scene(Obj("blue", "square"), Obj("red", "circle")))
    assert caption_of(Scene(c.first, c.second), "right") == Caption(c.second, "right", c.first)


def test_bad_scenes_and_captions_get_clear_errors() -> None:
    with pytest.raises(ValueError, match="unknown colour"):
        Obj("mauve", "circle")
    with pytest.raises(ValueError, match="unknown shape"):
        Obj("red", "hexagon")
    with pytest.raises(ValueError, match="unknown colour"):
        make_scenes(4, "train", colours=("red", "blue", "mauve"))
    with pytest.raises(ValueError, match="at least 3 distinct colours"):
        make_scenes(4, "train", colours=("red", "blue"))
    with pytest.raises(ValueError, match="at least 3 distinct colours and 3 distinct shapes"):
        make_scenes(4, "train", shapes=("circle", "square"))
    with pytest.raises(ValueError, match="differ in colour and in shape"):
        Scene(Obj("red", "circle"), Obj("red", "square"))
    with pytest.raises(ValueError, match="at least one scene"):
        make_scenes(0, "train")
    with pytest.raises(ValueError, match="split"):
        make_scenes(4, "validation")
    with pytest.raises(ValueError, match="not a caption"):
        parse_caption("a red circle")
