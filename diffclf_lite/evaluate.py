"""Dataset-level zero-shot evaluation (Li et al. Table 1 style): per-image records, a results table, a confusion matrix.
pandas, seaborn and matplotlib are imported inside the functions that draw or tabulate."""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .prompts import PromptSet
from .scoring import classify

__all__ = ["Evaluation", "evaluate", "planned_nfe", "results_table", "plot_confusion"]


def _finite_or_none(values: torch.Tensor) -> list[float | None]:
    return [None if not math.isfinite(v) else float(v) for v in values.tolist()]


@dataclass
class Evaluation:
    """What `evaluate` returns: one record per image plus the settings that produced them."""

    records: list[dict]
    class_names: list[str]
    prompts: list[str]
    settings: dict = field(default_factory=dict)

    @property
    def accuracy(self) -> float:
        return float(np.mean([r["correct"] for r in self.records])) if self.records else float("nan")

    @property
    def mean_nfe(self) -> float:
        return float(np.mean([r["nfe"] for r in self.records])) if self.records else float("nan")

    def confusion(self) -> np.ndarray:
        """Counts (C, C): row = true class, column = predicted class."""
        C = len(self.class_names)
        m = np.zeros((C, C), dtype=np.int64)
        for r in self.records:
            m[r["label"], r["prediction"]] += 1
        return m

    def summary(self) -> dict:
        return {"images": len(self.records), "accuracy": self.accuracy, "mean_nfe": self.mean_nfe,
                "seconds": float(sum(r["seconds"] for r in self.records)), **self.settings}

    def table(self) -> "pd.DataFrame":  # noqa: F821
        return results_table(self.records, self.class_names)

    def save(self, folder: str | Path) -> Path:
        """Write records.jsonl (one JSON object per image), summary.json and results.csv into `folder`."""
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        with (out / "records.jsonl").open("w", encoding="utf-8") as f:
            for r in self.records:
                f.write(json.dumps(r) + "\n")
        summary = {**self.summary(), "class_names": self.class_names, "prompts": self.prompts}
        (out / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
        self.table().to_csv(out / "results.csv", index=False)
        return out


def evaluate(model: Any, dataset: Any, prompts: PromptSet, strategy: Any, *, loss: str = "l2",
             weighting: str = "uniform", seed: int = 0, batch_size: int = 64, images_per_call: int = 1,
             autocast_dtype: torch.dtype | None = None, progress: bool = True, max_seconds: float | None = None,
             **classify_kwargs: Any) -> Evaluation:
    """Classify every (image, label) of `dataset` with `dc.classify` and aggregate prompt errors per class.

    The model's conditions become `prompts.prompts` (via `set_prompts`, embedded once). Every image uses the same
    seeded (t, eps) plan, so results do not depend on `images_per_call` or `batch_size`. The tqdm bar shows the
    running accuracy. With `max_seconds`, no new image is started once that much time has passed (a time budget:
    the records then cover a prefix of `dataset`).
    """
    from tqdm.auto import tqdm

    if hasattr(model, "set_prompts"):
        model.set_prompts(list(prompts.prompts))
    if int(model.num_conditions) != len(prompts.prompts):
        raise ValueError(f"the model has {model.num_conditions} conditions but the prompt set has {len(prompts.prompts)} prompts.")
    n = len(dataset)
    if n == 0:
        raise ValueError("the dataset is empty: nothing to evaluate.")
    if int(images_per_call) < 1:
        raise ValueError(f"images_per_call must be at least 1, got {images_per_call}.")
    source = getattr(dataset, "source_index", lambda i: i)
    records: list[dict] = []
    correct = 0
    bar = tqdm(total=n, desc="classifying", unit="img", disable=not progress)
    began = time.perf_counter()
    for start in range(0, n, images_per_call):
        if max_seconds is not None and records and time.perf_counter() - began > max_seconds:
            break
        items = [dataset[i] for i in range(start, min(start + images_per_call, n))]
        images, labels = [im for im, _ in items], [int(lbl) for _, lbl in items]
        if any(not 0 <= lbl < prompts.num_classes for lbl in labels):
            raise ValueError(f"labels {labels} fall outside the {prompts.num_classes} classes of the prompt set.")
        t0 = time.perf_counter()
        res = classify(model, images, strategy, loss=loss, weighting=weighting, seed=seed, batch_size=batch_size,
                       autocast_dtype=autocast_dtype, **classify_kwargs)
        per_class = prompts.class_errors(res.mean_errors, res.alive)  # (n, C)
        prediction = prompts.predict(res.mean_errors, res.alive)
        seconds = (time.perf_counter() - t0) / len(items)
        for k, (lbl, pred) in enumerate(zip(labels, prediction.tolist())):
            correct += int(pred == lbl)
            rec = {"index": source(start + k), "label": lbl, "prediction": int(pred), "correct": bool(pred == lbl),
                   "nfe": int(res.nfe[k]), "seconds": seconds, "class_errors": _finite_or_none(per_class[k])}
            if not prompts.one_prompt_per_class:
                rec["prompt_errors"] = _finite_or_none(res.mean_errors[k])
            records.append(rec)
        bar.update(len(items))
        bar.set_postfix(acc=f"{correct / len(records):.1%}", nfe=int(res.nfe.float().mean()))
    bar.close()
    settings = {"strategy": repr(strategy), "stopped_early": len(records) < n, "loss": loss, "weighting": weighting, "seed": seed, "batch_size": batch_size}
    return Evaluation(records, list(prompts.class_names), list(prompts.prompts), settings)


def planned_nfe(strategy: Any, n_classes: int, n_trials: int = 1) -> int:
    """UNet evaluations per image a strategy spends when every stage keeps what it may (Li et al. Table 6, as the
    official code counts: a stage skips timesteps already evaluated)."""
    if hasattr(strategy, "stage_grid"):
        seen: set[int] = set()
        total, alive = 0, n_classes
        for stage, keep in enumerate(strategy.to_keep):
            new = set(strategy.stage_grid(stage)) - seen
            total, seen, alive = total + len(new) * alive, seen | new, keep
        return total * n_trials
    return int(strategy.n_timesteps) * n_classes * n_trials


def results_table(records: list[dict], class_names: list[str] | None = None) -> "pd.DataFrame":  # noqa: F821
    """A pandas table, one row per image: index, label, prediction (with names), correct, NFE, seconds."""
    import pandas as pd

    cols = ["index", "label", "prediction", "correct", "nfe", "seconds"]
    df = pd.DataFrame([{k: r[k] for k in cols} for r in records], columns=cols)
    if class_names is not None:
        df.insert(2, "label_name", [class_names[i] for i in df["label"]])
        df.insert(4, "prediction_name", [class_names[i] for i in df["prediction"]])
    return df


def plot_confusion(evaluation: Evaluation, ax: Any = None, normalize: bool = True, max_classes: int = 40) -> Any:
    """Seaborn heatmap of the confusion matrix (rows: true class, normalised per row by default)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    m = evaluation.confusion().astype(float)
    if normalize:
        m = m / np.maximum(m.sum(1, keepdims=True), 1)
    names = evaluation.class_names
    show_names = len(names) <= max_classes
    if ax is None:
        side = min(2 + 0.45 * len(names), 12)
        _, ax = plt.subplots(figsize=(side + 1, side))
    sns.heatmap(m, ax=ax, cmap="Blues", vmin=0, vmax=1 if normalize else None, square=True,
                annot=len(names) <= 12, fmt=".2f" if normalize else ".0f",
                xticklabels=names if show_names else False, yticklabels=names if show_names else False,
                cbar_kws={"label": "fraction of the true class" if normalize else "images"})
    ax.set(xlabel="predicted class", ylabel="true class",
           title=f"confusion matrix ({len(evaluation.records)} images, accuracy {evaluation.accuracy:.1%})")
    return ax
