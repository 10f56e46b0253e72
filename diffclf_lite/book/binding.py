"""The binding benchmark: true caption vs one distractor per image, scored by a diffusion classifier (a Stable
Diffusion model) and by a CLIP model on the same test images and the same candidate captions (Clark & Jaini 2023,
Sec. 5).

Tasks: `colour swap` (the two objects exchange colours: binding), `relation swap` (left <-> right), and two
single-attribute controls that need no binding: `colour control` (one object takes a colour not in the image) and
`digit control` (one object takes a digit not in the image). Two candidates per image, so chance is 50%.
"""
from __future__ import annotations

import random
from typing import Any, Sequence

import torch

from ..data.miniature import COLOUR_NAMES, DIGIT_WORDS
from ..data.scenes import Caption, change_colour, change_digit, swap_colours, swap_relation
from ..engine import Candidates, Strategy, classify

__all__ = ["TASKS", "CHANCE", "make_distractors", "diffusion_choice", "contrastive_choice",
           "binding_benchmark"]

TASKS = ("colour swap", "relation swap", "colour control", "digit control")
CHANCE = 0.5  # two candidate captions per image


def make_distractors(captions: Sequence[Caption], seed: int = 0, colours: Sequence[str] = COLOUR_NAMES,
                     digits: Sequence[str] = DIGIT_WORDS) -> dict[str, list[Caption]]:
    """One distractor per caption for every task in TASKS (the controls' random choices seeded by `seed`)."""
    rng = random.Random(seed)
    return {
        "colour swap": [swap_colours(c) for c in captions],
        "relation swap": [swap_relation(c) for c in captions],
        "colour control": [change_colour(c, rng, colours) for c in captions],
        "digit control": [change_digit(c, rng, digits) for c in captions],
    }


def _check_pairs(images: Any, truths: Sequence[str], distractors: Sequence[str]) -> None:
    if not len(truths) == len(distractors) == len(images) or len(truths) == 0:
        raise ValueError(f"need one true and one distractor caption per image, got {len(images)} images, "
                         f"{len(truths)} true and {len(distractors)} distractor captions.")
    same = [i for i, (a, b) in enumerate(zip(truths, distractors)) if str(a) == str(b)]
    if same:
        raise ValueError(f"the distractor equals the true caption for images {same[:5]}: nothing to choose between.")


def _pixels(images: Any) -> torch.Tensor:
    """(N, 3, H, W) uint8 -> floats in [-1, 1], what StableDiffusion.encode takes."""
    x = torch.as_tensor(images)
    if x.ndim != 4 or x.shape[1] != 3 or x.dtype != torch.uint8:
        raise ValueError(f"expected images (N, 3, H, W) uint8, got {tuple(x.shape)} {x.dtype}.")
    return x.float() / 127.5 - 1


def diffusion_choice(model: Any, images: torch.Tensor, truths: Sequence[str], distractors: Sequence[str],
                     strategy: Strategy, seed: int = 0, chunk: int = 128, batch_size: int = 256) -> dict[str, torch.Tensor]:
    """Diffusion classifier between two captions per image (Li et al. eq. 5-6, shared (t, eps) for both), with a
    Stable Diffusion model (`set_prompts`) and images (N, 3, H, W) uint8: `correct` (N,) bool,
    `margin` (N,) = error(distractor) - error(truth), `nfe` (N,)."""
    _check_pairs(images, truths, distractors)
    pixels = _pixels(images)
    correct, margin, nfe = [], [], []
    for s in range(0, len(truths), chunk):
        t, d = [str(c) for c in truths[s:s + chunk]], [str(c) for c in distractors[s:s + chunk]]
        captions = list(dict.fromkeys(t + d))  # this chunk's candidate conditions
        pos = {c: k for k, c in enumerate(captions)}
        it, id_ = torch.tensor([pos[c] for c in t]), torch.tensor([pos[c] for c in d])
        mask = torch.zeros(len(t), len(captions), dtype=torch.bool)
        mask[torch.arange(len(t)), it] = mask[torch.arange(len(t)), id_] = True
        model.set_prompts(captions)
        res = classify(model, pixels[s:s + chunk], Candidates(strategy, mask), seed=seed, batch_size=batch_size)
        rows = torch.arange(len(t))
        correct.append(res.prediction == it)
        margin.append(res.mean_errors[rows, id_] - res.mean_errors[rows, it])
        nfe.append(res.nfe)
    return {"correct": torch.cat(correct), "margin": torch.cat(margin), "nfe": torch.cat(nfe)}


def contrastive_choice(model: Any, images: torch.Tensor, truths: Sequence[str],
                       distractors: Sequence[str]) -> dict[str, torch.Tensor]:
    """CLIP's zero-shot choice with a CLIPClassifier: the caption of higher cosine similarity with the image
    (`margin` = cos(image, truth) - cos(image, distractor))."""
    _check_pairs(images, truths, distractors)
    emb = model.embed_images([im.permute(1, 2, 0).numpy() for im in torch.as_tensor(images)])  # (N, D) unit vectors
    margin = (emb * (model.embed_text([str(c) for c in truths]) - model.embed_text([str(c) for c in distractors]))).sum(-1)
    return {"correct": margin > 0, "margin": margin, "nfe": torch.ones(len(margin), dtype=torch.long)}


def binding_benchmark(models: dict[str, Any], images: torch.Tensor, truths: Sequence[Caption], strategy: Strategy,
                      seed: int = 0, tasks: Sequence[str] = TASKS, colours: Sequence[str] = COLOUR_NAMES,
                      digits: Sequence[str] = DIGIT_WORDS, return_choices: bool = False) -> Any:
    """Every task for every model on the same images and candidate captions: a long pandas DataFrame with accuracy,
    the count of correct choices, the one-sided binomial p-value against chance, and the mean NFE per image.
    With `return_choices`, also the per-image outcomes {(task, model): the choice's dict (`correct`, `margin`,
    `nfe`)}, for paired tests between models (they saw the same images and captions).

    `models` maps a name to a StableDiffusion (it has `set_prompts`) or a CLIPClassifier; `images` (N, 3, H, W)
    uint8; the controls draw their new colour / digit from `colours` / `digits` (the models' vocabulary)."""
    import pandas as pd
    from scipy.stats import binomtest

    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise ValueError(f"unknown task(s) {unknown}; choose from {list(TASKS)}.")
    distractors = make_distractors(truths, seed, colours, digits)
    rows, choices = [], {}
    for task in tasks:
        for name, model in models.items():
            if hasattr(model, "set_prompts"):
                out = diffusion_choice(model, images, truths, distractors[task], strategy, seed)
            else:
                out = contrastive_choice(model, images, truths, distractors[task])
            choices[task, name] = out
            k, n = int(out["correct"].sum()), len(out["correct"])
            rows.append({"task": task, "model": name, "accuracy": k / n, "correct": k, "n": n,
                         "p_vs_chance": binomtest(k, n, CHANCE, alternative="greater").pvalue,
                         "nfe_per_image": out["nfe"].double().mean().item()})
    return (pd.DataFrame(rows), choices) if return_choices else pd.DataFrame(rows)
