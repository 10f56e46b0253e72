"""The binding benchmark: true caption vs one distractor per image, scored by a diffusion classifier and by a
contrastive model on the same test images and the same candidate captions (Clark & Jaini 2023, Sec. 5).

Tasks: `colour swap` (the two objects exchange colours: binding), `relation swap` (left <-> right), and two
single-attribute controls that need no binding: `colour control` (one object takes a colour not in the scene) and
`shape control` (one object takes a shape not in the scene). Two candidates per image, so chance is 50%.
"""
from __future__ import annotations

import random
from typing import Any, Sequence

import torch

from ..data.scenes import COLOURS, SHAPES, Caption, change_colour, change_shape, swap_colours, swap_relation
from ..engine import Candidates, Strategy, classify

__all__ = ["TASKS", "CHANCE", "make_distractors", "diffusion_choice", "contrastive_choice",
           "binding_benchmark"]

TASKS = ("colour swap", "relation swap", "colour control", "shape control")
CHANCE = 0.5  # two candidate captions per image


def make_distractors(captions: Sequence[Caption], seed: int = 0, colours: Sequence[str] = tuple(COLOURS),
                     shapes: Sequence[str] = SHAPES) -> dict[str, list[Caption]]:
    """One distractor per caption for every task in TASKS (the controls' random choices seeded by `seed`)."""
    rng = random.Random(seed)
    return {
        "colour swap": [swap_colours(c) for c in captions],
        "relation swap": [swap_relation(c) for c in captions],
        "colour control": [change_colour(c, rng, colours) for c in captions],
        "shape control": [change_shape(c, rng, shapes) for c in captions],
    }


def _check_pairs(images: Any, truths: Sequence[str], distractors: Sequence[str]) -> None:
    if not len(truths) == len(distractors) == len(images) or len(truths) == 0:
        raise ValueError(f"need one true and one distractor caption per image, got {len(images)} images, "
                         f"{len(truths)} true and {len(distractors)} distractor captions.")
    same = [i for i, (a, b) in enumerate(zip(truths, distractors)) if str(a) == str(b)]
    if same:
        raise ValueError(f"the distractor equals the true caption for images {same[:5]}: nothing to choose between.")


def diffusion_choice(model: Any, images: torch.Tensor, truths: Sequence[str], distractors: Sequence[str],
                     strategy: Strategy, seed: int = 0, chunk: int = 128, batch_size: int = 256) -> dict[str, torch.Tensor]:
    """Diffusion classifier between two captions per image (Li et al. eq. 5-6, shared (t, eps) for both):
    `correct` (N,) bool, `margin` (N,) = error(distractor) - error(truth), `nfe` (N,)."""
    _check_pairs(images, truths, distractors)
    correct, margin, nfe = [], [], []
    for s in range(0, len(truths), chunk):
        t, d = [str(c) for c in truths[s:s + chunk]], [str(c) for c in distractors[s:s + chunk]]
        captions = list(dict.fromkeys(t + d))  # this chunk's candidate conditions
        pos = {c: k for k, c in enumerate(captions)}
        it, id_ = torch.tensor([pos[c] for c in t]), torch.tensor([pos[c] for c in d])
        mask = torch.zeros(len(t), len(captions), dtype=torch.bool)
        mask[torch.arange(len(t)), it] = mask[torch.arange(len(t)), id_] = True
        model.set_captions(captions)
        res = classify(model, images[s:s + chunk], Candidates(strategy, mask), seed=seed, batch_size=batch_size)
        rows = torch.arange(len(t))
        correct.append(res.prediction == it)
        margin.append(res.mean_errors[rows, id_] - res.mean_errors[rows, it])
        nfe.append(res.nfe)
    return {"correct": torch.cat(correct), "margin": torch.cat(margin), "nfe": torch.cat(nfe)}


def contrastive_choice(model: Any, images: torch.Tensor, truths: Sequence[str],
                       distractors: Sequence[str]) -> dict[str, torch.Tensor]:
    """CLIP-style zero-shot choice: the caption of higher cosine similarity (`margin` = sim(truth) - sim(distractor))."""
    _check_pairs(images, truths, distractors)
    margin = (model.similarity(images, [str(c) for c in truths])
              - model.similarity(images, [str(c) for c in distractors])).cpu()
    return {"correct": margin > 0, "margin": margin, "nfe": torch.ones(len(margin), dtype=torch.long)}


def binding_benchmark(models: dict[str, Any], images: torch.Tensor, truths: Sequence[Caption], strategy: Strategy,
                      seed: int = 0, tasks: Sequence[str] = TASKS, colours: Sequence[str] = tuple(COLOURS),
                      shapes: Sequence[str] = SHAPES) -> Any:
    """Every task for every model on the same images and candidate captions: a long pandas DataFrame with accuracy,
    the count of correct choices, the one-sided binomial p-value against chance, and the mean NFE per image.

    `models` maps a name to a CaptionDiffusion-like EpsModel (it has `set_captions`) or a contrastive model; the
    controls draw their new colour / shape from `colours` / `shapes` (use the vocabulary the models were trained on)."""
    import pandas as pd
    from scipy.stats import binomtest

    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise ValueError(f"unknown task(s) {unknown}; choose from {list(TASKS)}.")
    distractors = make_distractors(truths, seed, colours, shapes)
    rows = []
    for task in tasks:
        for name, model in models.items():
            if hasattr(model, "set_captions"):
                out = diffusion_choice(model, images, truths, distractors[task], strategy, seed)
            else:
                out = contrastive_choice(model, images, truths, distractors[task])
            k, n = int(out["correct"].sum()), len(out["correct"])
            rows.append({"task": task, "model": name, "accuracy": k / n, "correct": k, "n": n,
                         "p_vs_chance": binomtest(k, n, CHANCE, alternative="greater").pvalue,
                         "nfe_per_image": out["nfe"].double().mean().item()})
    return pd.DataFrame(rows)
