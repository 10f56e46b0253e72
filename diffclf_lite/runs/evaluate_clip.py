"""Zero-shot CLIP over a dataset, recorded like the diffusion classifier's `evaluate` (the same `Evaluation` type), so
the two line up row by row in `compare`."""
from __future__ import annotations

import time
from typing import Any

from ..data.datasets import UnreadableImage
from ..data.prompts import PromptSet
from ..models.clip import CLIPClassifier, ensemble_embeddings
from .evaluate import Evaluation, _record

__all__ = ["evaluate_clip"]


def _read(dataset: Any, i: int) -> tuple[int, Any, int, str | None]:
    """(i, image, label, None), or (i, None, label, message) for an image the dataset cannot read (as `evaluate`)."""
    try:
        image, label = dataset[i]
        return i, image, int(label), None
    except UnreadableImage as err:
        return i, None, int(err.label), str(err)


def evaluate_clip(clip: CLIPClassifier, dataset: Any, prompts: PromptSet, *, batch_size: int = 32, progress: bool = True,
                  max_seconds: float | None = None) -> Evaluation:
    """Zero-shot CLIP over `dataset`, recorded like `evaluate.evaluate`: per image the label, prediction, `nfe` = 1
    (one image-encoder pass; the text is embedded once per prompt set) and `class_errors` = 1 - cosine similarity
    (so the prediction is its argmin, as for the diffusion classifier's errors)."""
    from tqdm.auto import tqdm

    if not isinstance(prompts, PromptSet):
        raise ValueError(f"prompts must be a PromptSet (e.g. prompts.dataset_prompts('cifar10', 'all')), got {type(prompts).__name__}.")
    n = len(dataset)
    if n == 0:
        raise ValueError("the dataset is empty: nothing to evaluate.")
    text = clip.embed_text(list(prompts.prompts))  # (P, D)
    classes = ensemble_embeddings(text, prompts.prompt_class, prompts.num_classes)  # (C, D)
    source = getattr(dataset, "source_index", lambda i: i)
    records: list[dict] = []
    bar = tqdm(total=n, desc=f"CLIP {clip.name}", unit="img", disable=not progress)
    began = time.perf_counter()
    for start in range(0, n, batch_size):
        if max_seconds is not None and records and time.perf_counter() - began > max_seconds:
            break
        t0 = time.perf_counter()
        items = [_read(dataset, i) for i in range(start, min(start + batch_size, n))]  # (position, image, label, error)
        ok = [(i, im, lbl) for i, im, lbl, e in items if e is None]
        positions, images, labels = (list(col) for col in zip(*ok)) if ok else ([], [], [])
        unreadable = [{"index": source(i), "label": lbl, "error": e} for i, _, lbl, e in items if e is not None]
        if any(not 0 <= lbl < prompts.num_classes for lbl in labels):
            raise ValueError(f"labels {labels} fall outside the {prompts.num_classes} classes of the prompt set.")
        new = []
        if images:
            image = clip.embed_images(images, batch_size)  # (B, D)
            class_err, prompt_err = 1 - image @ classes.T, 1 - image @ text.T  # (B, C), (B, P)
            for k, (i, lbl, pred) in enumerate(zip(positions, labels, class_err.argmin(1).tolist())):
                new.append(_record(source(i), lbl, pred, 1, class_err[k],
                                   None if prompts.one_prompt_per_class else prompt_err[k]))
        seconds = (time.perf_counter() - t0) / (len(images) + len(unreadable))
        records += [{**r, "seconds": seconds} for r in sorted(new + unreadable, key=lambda r: r["index"])]
        bar.update(len(images) + len(unreadable))
    bar.close()
    settings = {"method": "CLIP", "model": clip.name, "templates": len(prompts.prompts) // prompts.num_classes,
                "ensembling": "mean of unit text embeddings, renormalised", "stopped_early": len(records) < n,
                "dtype": str(clip.dtype).replace("torch.", ""), "batch_size": batch_size}
    return Evaluation(records, list(prompts.class_names), list(prompts.prompts), settings)
