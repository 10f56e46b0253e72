"""CLIP over a dataset: records that line up with the diffusion classifier's, and `compare` on common images."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import diffclf_lite as dc
from conftest import TEMPLATES
from diffclf_lite.data.datasets import ImageDataset
from diffclf_lite.data.prompts import class_prompts
from diffclf_lite.runs.evaluate import Evaluation, compare, evaluate
from diffclf_lite.runs.evaluate_clip import evaluate_clip


def test_clip_records_line_up_with_the_diffusion_records(clip, tiny_sd, shapes):
    prompts = class_prompts(shapes.classes, TEMPLATES)
    ev_clip = evaluate_clip(clip, shapes, prompts, batch_size=4, progress=False)
    ev_diff = evaluate(tiny_sd, shapes, prompts, dc.Exhaustive(2), progress=False)
    assert isinstance(ev_clip, Evaluation) and ev_clip.class_names == ev_diff.class_names and ev_clip.prompts == ev_diff.prompts
    assert [set(r) for r in ev_clip.records] == [set(r) for r in ev_diff.records]  # the same fields, image by image
    assert [r["index"] for r in ev_clip.records] == [r["index"] for r in ev_diff.records]
    sim = clip.similarity([im for im, _ in shapes], prompts)
    assert [r["prediction"] for r in ev_clip.records] == sim.argmax(1).tolist()  # argmin of 1 - cos = argmax of cos
    torch.testing.assert_close(torch.tensor([r["class_errors"] for r in ev_clip.records]), 1 - sim, atol=1e-5, rtol=0)
    assert ev_clip.mean_nfe == 1 and ev_clip.confusion().sum() == len(shapes) and list(ev_clip.table().columns) == list(ev_diff.table().columns)
    table = compare({"diffusion": ev_diff, "CLIP": ev_clip})
    assert table["images"].tolist() == [6, 6] and table["NFE / image"].tolist() == [3 * len(TEMPLATES) * 2, 1]
    assert table.loc[1, "accuracy"] == pytest.approx(100 * ev_clip.accuracy)
    assert table.loc[1, "agreement with first"] == pytest.approx(100 * np.mean(
        [a["prediction"] == b["prediction"] for a, b in zip(ev_clip.records, ev_diff.records)]))


def _ev(indices, labels, preds, classes=("a", "b")):
    recs = [{"index": i, "label": y, "prediction": p, "correct": y == p, "nfe": 1, "seconds": 0.1, "class_errors": [0, 0]}
            for i, y, p in zip(indices, labels, preds)]
    return Evaluation(recs, list(classes), ["x", "y"])


def test_compare_keeps_the_common_images_and_refuses_mismatches():
    full, early = _ev([0, 1, 2, 3], [0, 1, 0, 1], [0, 1, 1, 1]), _ev([0, 1], [0, 1], [1, 1])  # `early` hit a time budget
    table = compare({"full": full, "early": early})
    assert table["images"].tolist() == [2, 2] and table["accuracy"].tolist() == [100.0, 50.0]
    assert table["agreement with first"].tolist() == [100.0, 50.0]
    assert table["accuracy SE"].tolist() == [0.0, 100 * (0.5 * 0.5 / 2) ** 0.5]  # sqrt(p (1 - p) / n), in points
    assert full.summary()["accuracy_se"] == pytest.approx((0.75 * 0.25 / 4) ** 0.5)  # 3 of 4 right
    with pytest.raises(ValueError, match="different class lists"):
        compare({"a": full, "b": _ev([0], [0], [0], classes=("a", "c"))})
    with pytest.raises(ValueError, match="different labels"):
        compare({"a": full, "b": _ev([0], [1], [0])})
    with pytest.raises(ValueError, match="share no image"):
        compare({"a": full, "b": _ev([9], [0], [0])})
    with pytest.raises(ValueError, match="at least one"):
        compare({})


def test_unreadable_images_and_time_budget_are_recorded_like_evaluate(clip, shapes):
    from diffclf_lite.data.datasets import UnreadableImage

    def get(i):
        if i == 2:
            raise UnreadableImage("broken.png: cannot be decoded", label=shapes[i][1])
        return shapes[i]

    ev = evaluate_clip(clip, ImageDataset("broken", shapes.classes, get, len(shapes)), class_prompts(shapes.classes),
                       batch_size=4, progress=False)
    assert [r["index"] for r in ev.records] == list(range(6)) and "error" in ev.records[2] and "prediction" not in ev.records[2]
    assert compare({"clip": ev})["images"].tolist() == [5]  # the unreadable image is left out of the accuracy
    early = evaluate_clip(clip, shapes, class_prompts(shapes.classes), batch_size=4, progress=False, max_seconds=0)
    assert len(early.records) == 4 and early.settings["stopped_early"]
