"""Dataset-level zero-shot evaluation (Li et al. Table 1 style): per-image records, a results table, a confusion matrix.
pandas, seaborn and matplotlib are imported inside the functions that draw or tabulate."""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from ..data.prompts import PromptSet
from ..engine import classify
from ..engine.checks import integer

__all__ = ["Evaluation", "evaluate", "merge", "run_manifest", "planned_nfe", "results_table", "plot_confusion",
           "accuracy_se", "compare", "mcnemar"]


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
    def scored(self) -> list[dict]:
        """Records with a prediction (an unreadable image has an `error` instead)."""
        return [r for r in self.records if "error" not in r]

    @property
    def unreadable(self) -> list[dict]:
        return [r for r in self.records if "error" in r]

    @property
    def accuracy(self) -> float:
        return float(np.mean([r["correct"] for r in self.scored])) if self.scored else float("nan")

    @property
    def accuracy_se(self) -> float:
        """Standard error of the accuracy, sqrt(p (1 - p) / n): how far a rerun on other images may land."""
        return accuracy_se(self.accuracy, len(self.scored))

    @property
    def mean_nfe(self) -> float:
        return float(np.mean([r["nfe"] for r in self.scored])) if self.scored else float("nan")

    def confusion(self) -> np.ndarray:
        """Counts (C, C): row = true class, column = predicted class."""
        C = len(self.class_names)
        m = np.zeros((C, C), dtype=np.int64)
        for r in self.scored:
            m[r["label"], r["prediction"]] += 1
        return m

    def summary(self) -> dict:
        return {"images": len(self.scored), "accuracy": self.accuracy, "accuracy_se": self.accuracy_se,
                "mean_nfe": self.mean_nfe,
                "seconds": float(sum(r.get("seconds") or 0.0 for r in self.records)),
                "unreadable": [r["error"] for r in self.unreadable], **self.settings}

    def table(self) -> "pd.DataFrame":  # noqa: F821
        return results_table(self.scored, self.class_names)

    def save(self, folder: str | Path) -> Path:
        """Write records.jsonl (one JSON object per image, no timing), summary.json and results.csv into `folder` (atomically)."""
        from .records import atomic_write_text

        out = Path(folder)
        lines = (json.dumps({k: v for k, v in r.items() if k != "seconds"}, sort_keys=True) + "\n" for r in self.records)
        atomic_write_text(out / "records.jsonl", "".join(lines))  # reproducible bytes: wall time is in results.csv
        summary = {**self.summary(), "class_names": self.class_names, "prompts": self.prompts}
        atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
        atomic_write_text(out / "results.csv", self.table().to_csv(index=False))
        return out


def _record(index: int, label: int, pred: int, nfe: int, class_errors: torch.Tensor, prompt_errors: torch.Tensor | None) -> dict:
    rec = {"index": int(index), "label": int(label), "prediction": int(pred), "correct": bool(pred == label), "nfe": int(nfe),
           "class_errors": _finite_or_none(class_errors)}
    if prompt_errors is not None:
        rec["prompt_errors"] = _finite_or_none(prompt_errors)
    return rec


def _fingerprint(attributes: dict) -> str:
    """sha256 of an object's attributes (tensors by value): catches what a repr leaves out, such as a seeded order."""
    import hashlib

    text = json.dumps({k: v.tolist() if isinstance(v, torch.Tensor) else repr(v) for k, v in sorted(attributes.items())})
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def run_manifest(model: Any, dataset: Any, prompts: PromptSet, strategy: Any, *, loss: str, weighting: str, seed: int,
                 autocast_dtype: torch.dtype | None, batch_size: int, images_per_call: int, processes: int,
                 classify_kwargs: dict, extra: dict | None = None) -> dict:
    """Every setting that decides the records (compared on resume), plus the soft ones (batch sizes, processes,
    CPU threads)."""
    source = getattr(dataset, "source_index", lambda i: i)
    device = getattr(model, "device", None)
    return {
        "model": type(model).__name__, "dtype": str(getattr(model, "dtype", None)),
        "device": getattr(device, "type", str(device)),  # cuda vs cpu, not which GPU: shards run on different ones
        "dataset": str(getattr(dataset, "name", type(dataset).__name__)),
        "indices": [int(source(i)) for i in range(len(dataset))],
        "classes": list(prompts.class_names), "prompts": list(prompts.prompts), "prompt_class": list(prompts.prompt_class),
        "strategy": repr(strategy), "strategy_state": _fingerprint(vars(strategy)),
        "loss": loss, "weighting": weighting, "seed": int(seed), "autocast_dtype": str(autocast_dtype),
        "classify_kwargs": {k: repr(v) for k, v in sorted(classify_kwargs.items())},
        "batch_size": int(batch_size), "images_per_call": int(images_per_call), "processes": int(processes),
        "cpu_threads": torch.get_num_threads(), **(extra or {}),
    }


def evaluate(model: Any, dataset: Any, prompts: PromptSet, strategy: Any, *, loss: str = "l2",
             weighting: str = "uniform", seed: int = 0, batch_size: int = 64, images_per_call: int = 1,
             autocast_dtype: torch.dtype | None = None, progress: bool = True, max_seconds: float | None = None,
             output: str | Path | None = None, overwrite: bool = False, manifest_extra: dict | None = None,
             state: Any = None, **classify_kwargs: Any) -> Evaluation:
    """Classify every (image, label) of `dataset` with `dc.classify` and aggregate prompt errors per class.

    The model's conditions become `prompts.prompts` (via `set_prompts`, embedded once). Every image uses the same
    seeded (t, eps) plan (the seed, not the images run before, fixes an image's noise), and images are grouped in
    fixed chunks of `images_per_call` by position, so a record never depends on what ran before it.
    With `output`, each image's record is written atomically to `output/records/` as soon as it is known, images
    that already have a record are skipped (resume), a folder made with other settings is refused (see
    `records.open_output`), and the merged records are returned. `state` (an accelerate PartialState) shards the
    chunks across processes. With `max_seconds`, no new image is started once that much time has passed. An image
    the dataset cannot read (`datasets.UnreadableImage`) gets a record with an `error` and no prediction.
    `batch_size`, `images_per_call` and the number of processes may change when a run resumes: they decide how pairs
    are grouped into batches, not which are evaluated, so a float32 model's new records may differ from the old batch
    shapes' in the last bits (see `engine.scoring.evaluate_pairs`); a float64 model's are bit-identical.
    """
    from tqdm.auto import tqdm

    from ..data.datasets import UnreadableImage
    from . import records as R

    if hasattr(model, "set_prompts"):
        model.set_prompts(list(prompts.prompts))
    if int(model.num_conditions) != len(prompts.prompts):
        raise ValueError(f"the model has {model.num_conditions} conditions but the prompt set has {len(prompts.prompts)} prompts.")
    n = len(dataset)
    if n == 0:
        raise ValueError("the dataset is empty: nothing to evaluate.")
    images_per_call, batch_size = integer(images_per_call, "images_per_call", 1), integer(batch_size, "batch_size", 1)
    seed = integer(seed, "seed")
    rank, world = (0, 1) if state is None else (int(state.process_index), int(state.num_processes))
    barrier = None if state is None else state.wait_for_everyone
    source = getattr(dataset, "source_index", lambda i: i)
    index = [int(source(i)) for i in range(n)]
    chunks = [list(range(s, min(s + images_per_call, n))) for s in range(0, n, images_per_call)]
    if world > 1:
        with state.split_between_processes(chunks) as mine:
            chunks = list(mine)
    done: set[int] = set()
    if output is not None:
        if len(set(index)) != n:
            raise ValueError("the dataset repeats an index; records are named by index, so each must be unique.")
        manifest = run_manifest(model, dataset, prompts, strategy, loss=loss, weighting=weighting, seed=seed,
                                autocast_dtype=autocast_dtype, batch_size=batch_size, images_per_call=images_per_call,
                                processes=world, classify_kwargs=classify_kwargs, extra=manifest_extra)
        R.open_output(output, manifest, overwrite=overwrite, is_main=rank == 0, barrier=barrier)
        done = R.done_indices(output)
    records: list[dict] = []
    scored = correct = 0
    total = sum(len(c) for c in chunks)
    bar = tqdm(total=total, initial=sum(index[i] in done for c in chunks for i in c), desc=f"classifying [{rank}]",
               unit="img", disable=not progress)
    began = time.perf_counter()
    for chunk in chunks:
        if all(index[i] in done for i in chunk):
            continue
        if max_seconds is not None and time.perf_counter() - began > max_seconds and (records or done):
            break
        t0 = time.perf_counter()
        images, labels, positions, new = [], [], [], []
        for i in chunk:
            try:
                image, label = dataset[i]
            except UnreadableImage as err:
                new.append({"index": index[i], "label": int(err.label), "error": str(err)})
                continue
            images.append(image)
            labels.append(integer(label, f"the label of image {index[i]}"))
            positions.append(i)
        if any(not 0 <= lbl < prompts.num_classes for lbl in labels):
            raise ValueError(f"labels {labels} fall outside the {prompts.num_classes} classes of the prompt set.")
        if images:
            res = classify(model, images, strategy, loss=loss, weighting=weighting, seed=seed, batch_size=batch_size,
                           autocast_dtype=autocast_dtype, **classify_kwargs)
            per_class = prompts.class_errors(res.mean_errors, res.alive)  # (n, C)
            prediction = prompts.predict(res.mean_errors, res.alive).tolist()
            for k, i in enumerate(positions):
                new.append(_record(index[i], labels[k], prediction[k], res.nfe[k], per_class[k],
                                   None if prompts.one_prompt_per_class else res.mean_errors[k]))
        seconds = (time.perf_counter() - t0) / len(chunk)
        for rec in sorted(new, key=lambda r: r["index"]):
            if rec["index"] in done:  # part of a chunk finished before an interruption: recomputed, not rewritten
                continue
            if output is not None:
                R.write_record(output, rec)
                R.append_timing(output, rank, rec["index"], seconds)
            records.append({**rec, "seconds": seconds})
            scored, correct = scored + ("error" not in rec), correct + bool(rec.get("correct"))
        bar.update(sum(index[i] not in done for i in chunk))
        if scored:
            bar.set_postfix(acc=f"{correct / scored:.1%}")
    bar.close()
    finished = len(records) + sum(index[i] in done for c in chunks for i in c)
    settings = {"strategy": repr(strategy), "stopped_early": finished < total, "loss": loss,
                "weighting": weighting, "seed": seed, "batch_size": batch_size}
    if output is None:
        return Evaluation(records, list(prompts.class_names), list(prompts.prompts), settings)
    if barrier is not None:
        barrier()
    return merge(output, write=rank == 0, allow_partial=True)


def merge(folder: str | Path, *, write: bool = True, allow_partial: bool = False) -> Evaluation:
    """Gather every process's records of an output folder in the manifest's image order; with `write`, save
    records.jsonl, summary.json and results.csv. Missing images raise (unless `allow_partial`) naming how many."""
    from . import records as R

    folder = Path(folder)
    if not (folder / R.MANIFEST).is_file():
        raise ValueError(f"{folder} has no {R.MANIFEST}: not an evaluation output folder (see `diffclf evaluate --output`).")
    manifest = R.read_manifest(folder)
    found, timing = R.read_records(folder), R.read_timing(folder)
    stray = sorted(set(found) - set(manifest["indices"]))
    if stray:
        raise ValueError(f"{folder}: records for indices {stray[:5]} that the manifest does not list; the folder was "
                         "edited by hand. Rerun with --overwrite.")
    missing = [i for i in manifest["indices"] if i not in found]
    if missing and not allow_partial:
        raise ValueError(f"{folder}: {len(missing)} of {len(manifest['indices'])} images have no record yet (first: "
                         f"{missing[:5]}); rerun the same evaluate command to finish them, then merge.")
    records = [{**found[i], "seconds": timing.get(i)} for i in manifest["indices"] if i in found]
    keep = ("strategy", "loss", "weighting", "seed", "batch_size")
    settings = {**{k: manifest.get(k) for k in keep}, "stopped_early": bool(missing), "missing": len(missing)}
    settings.update({k: v for k, v in manifest.items() if k in ("model_source", "data", "dtype", "device", "resolution")})
    ev = Evaluation(records, list(manifest["classes"]), list(manifest["prompts"]), settings)
    if write:
        ev.save(folder)
    return ev


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


def accuracy_se(accuracy: float, n: int) -> float:
    """Binomial standard error of an accuracy measured on n images (NaN without images)."""
    return float(np.sqrt(accuracy * (1 - accuracy) / n)) if n else float("nan")


def compare(evaluations: Mapping[str, Evaluation]) -> "pd.DataFrame":  # noqa: F821
    """One row per method on the images that every evaluation covered (a time budget may stop one early): accuracy and
    its standard error, network evaluations and seconds per image, agreement with the first method's predictions, and
    McNemar's paired test against the first method (`mcnemar`; empty in the first row)."""
    import pandas as pd

    if not evaluations:
        raise ValueError("compare needs at least one evaluation, e.g. {'diffusion': ev1, 'CLIP': ev2}.")
    evs = dict(evaluations)
    names = [tuple(ev.class_names) for ev in evs.values()]
    if len(set(names)) != 1:
        raise ValueError("the evaluations use different class lists: compare only runs on the same dataset and classes.")
    by_index = {m: {r["index"]: r for r in ev.records if "error" not in r} for m, ev in evs.items()}
    common = sorted(set.intersection(*(set(d) for d in by_index.values())))
    if not common:
        raise ValueError("the evaluations share no image: evaluate every method on the same dataset subset.")
    labels = {m: [d[i]["label"] for i in common] for m, d in by_index.items()}
    if len({tuple(v) for v in labels.values()}) != 1:
        raise ValueError("the same image index carries different labels across evaluations: they are not the same images.")
    first = next(iter(by_index.values()))
    first_right = np.array([bool(first[i]["correct"]) for i in common])
    rows = []
    for method, d in by_index.items():
        recs = [d[i] for i in common]
        right = np.array([bool(r["correct"]) for r in recs])
        acc = float(right.mean())
        rows.append({"method": method, "images": len(common), "accuracy": 100 * acc,
                     "accuracy SE": 100 * accuracy_se(acc, len(recs)),
                     "NFE / image": float(np.mean([r["nfe"] for r in recs])),
                     "s / image": float(np.mean([r.get("seconds") or np.nan for r in recs])),
                     "agreement with first": 100 * np.mean([r["prediction"] == first[i]["prediction"] for r, i in zip(recs, common)]),
                     **(mcnemar(first_right, right) if rows else dict.fromkeys(_MCNEMAR_FIELDS, np.nan))})
    return pd.DataFrame(rows)


_MCNEMAR_FIELDS = ("only first right", "only this right", "McNemar p vs first")


def mcnemar(first_right: Any, other_right: Any) -> dict[str, float]:
    """McNemar's exact test of two classifiers on the same images (McNemar 1947): of the images exactly one of them
    gets right, under equal accuracy each is equally likely to be either one's, so the count is Binomial(n, 1/2).
    Returns the two discordant counts and the two-sided p-value (1 when no image is discordant)."""
    from scipy.stats import binomtest

    a, b = np.asarray(first_right, dtype=bool), np.asarray(other_right, dtype=bool)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"need one correct/incorrect flag per image for both classifiers, got {a.shape} and {b.shape}.")
    only_first, only_other = int((a & ~b).sum()), int((~a & b).sum())
    n = only_first + only_other
    p = binomtest(only_other, n, 0.5).pvalue if n else 1.0
    return dict(zip(_MCNEMAR_FIELDS, (only_first, only_other, float(p))))
