"""Dataset evaluation: records and the confusion matrix, and the NFE the paper's schedules plan and spend."""
from __future__ import annotations

import json

import pytest
import torch

import diffclf_lite as dc
from conftest import KnownErrorModel
from diffclf_lite.data import prompts as P
from diffclf_lite.runs.evaluate import evaluate, planned_nfe, plot_confusion


def test_evaluate_records_and_confusion(tmp_path):
    # known errors: class c's l2 error at timestep t is offset[t, c]^2; prompts 0,1 -> class 0, prompt 2 -> class 1
    offsets = torch.zeros(1000, 3)
    offsets[:, 0], offsets[:, 1], offsets[:, 2] = 0.5, 2.0, 1.0  # class errors: (0.25 + 4) / 2 = 2.125 vs 1.0
    model = KnownErrorModel(torch.zeros(4), offsets)
    ps = P.PromptSet(("a", "b"), ("p0", "p1", "p2"), (0, 0, 1))
    data = [([0.0] * 4, 1), ([0.0] * 4, 0)]
    ev = evaluate(model, data, ps, dc.Exhaustive(5), progress=False, images_per_call=2)
    assert [r["prediction"] for r in ev.records] == [1, 1] and ev.accuracy == 0.5
    assert ev.records[0]["class_errors"] == pytest.approx([2.125, 1.0]) and ev.records[0]["nfe"] == 15
    assert ev.records[0]["prompt_errors"] == pytest.approx([0.25, 4.0, 1.0])
    assert ev.confusion().tolist() == [[0, 1], [0, 1]]
    assert ev.table()["prediction_name"].tolist() == ["b", "b"]
    out = ev.save(tmp_path / "run")
    lines = (out / "records.jsonl").read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[1])["label"] == 0
    assert json.loads((out / "summary.json").read_text())["accuracy"] == 0.5
    import matplotlib

    matplotlib.use("Agg")
    ax = plot_confusion(ev)
    assert "accuracy 50.0%" in ax.get_title()
    budget = evaluate(model, data * 3, ps, dc.Exhaustive(5), progress=False, max_seconds=0.0)
    assert len(budget.records) == 1 and budget.settings["stopped_early"]  # time budget: stops after the first image
    with pytest.raises(ValueError, match="outside the 2 classes"):
        evaluate(model, [([0.0] * 4, 5)], ps, dc.Exhaustive(2), progress=False)


@pytest.mark.parametrize("name,n_classes,nfe", [("cifar10", 10, 2750), ("stl10", 10, 3000), ("pets", 37, 2050),
                                                ("food101", 101, 5570), ("flowers102", 102, 5590),
                                                ("aircraft", 100, 5550), ("imagenet", 1000, 124500)])
def test_planned_nfe_matches_the_official_code_count(name, n_classes, nfe):
    samples, keep, _ = dc.PAPER_SCHEDULES[name]
    assert planned_nfe(dc.Staged(samples, keep), n_classes) == nfe
    assert planned_nfe(dc.Exhaustive(7), n_classes, n_trials=2) == 14 * n_classes


def test_planned_nfe_is_what_classify_spends():
    model = KnownErrorModel(torch.zeros(4), torch.rand(1000, 6, generator=torch.Generator().manual_seed(0)))
    strategy = dc.Staged([4, 12], [3, 1])
    r = dc.classify(model, [[0.0] * 4] * 2, strategy)
    assert r.nfe.tolist() == [planned_nfe(strategy, 6)] * 2 == [4 * 6 + 8 * 3] * 2


def test_mcnemar_counts_the_discordant_images_and_tests_them_exactly() -> None:
    from scipy.stats import binom

    from diffclf_lite.runs.evaluate import mcnemar

    first = [True] * 10 + [False] * 2 + [True] * 5
    other = [False] * 10 + [True] * 2 + [True] * 5  # 10 images only the first gets right, 2 only the other
    out = mcnemar(first, other)
    assert (out["only first right"], out["only this right"]) == (10, 2)
    assert out["McNemar p vs first"] == pytest.approx(2 * binom.cdf(2, 12, 0.5))  # by hand: 2 P(X <= 2), X ~ B(12, 1/2)
    assert mcnemar(first, first)["McNemar p vs first"] == 1.0
    with pytest.raises(ValueError, match="one correct"):
        mcnemar([True, False], [True])
