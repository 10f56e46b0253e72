"""Prompts for zero-shot classification: the paper's datasets (CLIP's class names and templates, Li et al. §5.1),
a user's class list, or a prompt CSV; several prompts per class, with errors aggregated per class."""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Sequence

import torch

from ..engine.checks import integer, tensor

__all__ = ["DATASETS", "PromptSet", "canonical_name", "dataset_info", "dataset_prompts", "class_prompts", "read_class_list",
           "read_prompt_csv"]

DATASETS = ("cifar10", "stl10", "pets", "flowers102", "food101", "aircraft", "imagenet")
_ALIASES = {"cifar-10": "cifar10", "stl-10": "stl10", "oxford_pets": "pets", "oxfordiiitpet": "pets", "oxford-pets": "pets",
            "flowers": "flowers102", "flowers-102": "flowers102", "food": "food101", "food-101": "food101",
            "fgvc_aircraft": "aircraft", "fgvcaircraft": "aircraft", "imagenet1k": "imagenet", "imagenet-1k": "imagenet"}


def canonical_name(name: str) -> str:
    """`CIFAR-10`, `oxford_pets`, ... -> the package's dataset key; ValueError listing the known names otherwise."""
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; the bundled ones are {', '.join(DATASETS)}.")
    return key


def dataset_info(name: str) -> dict:
    """The bundled data file: classes (label order of the torchvision dataset), CLIP templates, the paper's template."""
    key = canonical_name(name)
    return json.loads(resources.files(__package__).joinpath("classnames", f"{key}.json").read_text(encoding="utf-8"))


@dataclass(frozen=True)
class PromptSet:
    """Candidate conditions: prompt j describes class `prompt_class[j]`; every class has at least one prompt."""

    class_names: tuple[str, ...]
    prompts: tuple[str, ...]
    prompt_class: tuple[int, ...]

    def __post_init__(self) -> None:
        for field, value in (("class_names", self.class_names), ("prompts", self.prompts), ("prompt_class", self.prompt_class)):
            if isinstance(value, (str, bytes)) or not isinstance(value, (tuple, list)):
                raise TypeError(f"PromptSet.{field} must be a tuple, got {type(value).__name__} {value!r:.60}.")
        if any(not isinstance(v, str) for v in (*self.class_names, *self.prompts)):
            raise TypeError("PromptSet.class_names and PromptSet.prompts must hold strings.")
        object.__setattr__(self, "prompt_class", tuple(integer(c, "each prompt class index") for c in self.prompt_class))
        for field in ("class_names", "prompts"):
            object.__setattr__(self, field, tuple(getattr(self, field)))
        C = len(self.class_names)
        if C < 1 or not self.prompts or len(self.prompts) != len(self.prompt_class):
            raise ValueError("a PromptSet needs at least one class and exactly one class index per prompt.")
        if any(not 0 <= c < C for c in self.prompt_class):
            raise ValueError(f"prompt class indices must lie in 0..{C - 1}.")
        missing = sorted(set(range(C)) - set(self.prompt_class))
        if missing:
            raise ValueError(f"classes without any prompt: {[self.class_names[c] for c in missing][:5]} (indices {missing[:5]}).")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def one_prompt_per_class(self) -> bool:
        return list(self.prompt_class) == list(range(self.num_classes))

    def class_errors(self, mean_errors: torch.Tensor, alive: torch.Tensor | None = None) -> torch.Tensor:
        """Per-class error (N, C) = mean over the class's alive prompts of their mean error (N, P); NaN if none.

        Prompts still alive when a strategy stops were all evaluated on the same timesteps, so the means compare.
        """
        err = tensor(mean_errors, "mean_errors", torch.float64)
        if err.ndim != 2 or err.shape[1] != len(self.prompts):
            raise ValueError(f"mean_errors must have shape (N, {len(self.prompts)}), one column per prompt, got "
                             f"{tuple(err.shape)}.")
        if alive is not None:
            alive = tensor(alive, "alive")
            if alive.shape != err.shape or alive.dtype != torch.bool:
                raise ValueError(f"alive must be a bool tensor shaped like mean_errors {tuple(err.shape)}, got "
                                 f"{alive.dtype} {tuple(alive.shape)}.")
        ok = ~err.isnan() if alive is None else (alive & ~err.isnan())
        onehot = torch.zeros(len(self.prompts), self.num_classes, dtype=err.dtype, device=err.device)
        onehot[torch.arange(len(self.prompts)), torch.tensor(self.prompt_class)] = 1.0
        return (err.nan_to_num(0.0) * ok) @ onehot / (ok.to(err.dtype) @ onehot)  # 0/0 = NaN for a class with none

    def predict(self, mean_errors: torch.Tensor, alive: torch.Tensor | None = None) -> torch.Tensor:
        """argmin over classes of `class_errors` (N,); classes with no alive prompt never win."""
        return self.class_errors(mean_errors, alive).nan_to_num(nan=float("inf")).argmin(1)


def class_prompts(class_names: Sequence[str], templates: Sequence[str] | str = "a photo of a {}.") -> PromptSet:
    """Every template filled with every class name: prompts ordered class by class."""
    if isinstance(class_names, (str, bytes)) or not hasattr(class_names, "__iter__"):
        raise TypeError(f"class_names must be a list of names, one per class, got {class_names!r:.60}.")
    if isinstance(templates, (str, bytes)) or not hasattr(templates, "__iter__"):
        templates = [templates]
    templates = list(templates)
    names = [str(n).strip() for n in class_names]
    if not names or any(not n for n in names):
        raise ValueError("class names must be non-empty strings (one per class).")
    if not templates or any(not isinstance(t, str) for t in templates):
        raise TypeError(f"templates must be strings with a '{{}}' where the class name goes, got {templates!r:.80}.")
    try:
        prompts = [t.format(n) for n in names for t in templates]
        valid = all(t.format("\0") .count("\0") == 1 for t in templates)
    except (IndexError, KeyError, ValueError):
        valid = False
    if not valid:
        raise ValueError(f"every template needs a '{{}}' (exactly one) where the class name goes, and other braces doubled "
                         f"({{{{ and }}}}), got {templates!r:.80}.")
    return PromptSet(tuple(names), tuple(prompts), tuple(c for c in range(len(names)) for _ in templates))


def dataset_prompts(name: str, templates: str | Sequence[str] = "paper") -> PromptSet:
    """The bundled classes with `paper` (the one template the paper used), `all` (CLIP's ensemble) or your templates."""
    info = dataset_info(name)
    if templates == "paper":
        templates = [info["paper_template"]]
    elif templates == "all":
        templates = info["templates"]
    return class_prompts(info["classes"], templates)


def read_class_list(path: str | Path) -> list[str]:
    """One class name per line (blank lines and lines starting with # skipped)."""
    lines = [ln.strip() for ln in Path(path).read_text(encoding="utf-8").splitlines()]
    names = [ln for ln in lines if ln and not ln.startswith("#")]
    if not names:
        raise ValueError(f"{path}: no class names found (expected one per line).")
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"{path}: duplicate class names {dup[:5]}; each class must appear once.")
    return names


def read_prompt_csv(path: str | Path) -> PromptSet:
    """A CSV with columns `class_index,prompt` (optional `class_name`); the official code's `classidx,prompt,classname`
    also works. Several rows may share a class; indices must cover 0..C-1 without gaps."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            cols = {c.strip().lower(): c for c in (reader.fieldnames or [])}
            idx_col = cols.get("class_index") or cols.get("classidx")
            prompt_col = cols.get("prompt")
            name_col = cols.get("class_name") or cols.get("classname")
            if idx_col is None or prompt_col is None:
                raise ValueError(f"{path}: needs the columns class_index and prompt (found {list(cols)}).")
            rows = list(reader)
    except (csv.Error, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a readable UTF-8 CSV file ({err}).") from None
    if not rows:
        raise ValueError(f"{path}: no prompts (the file has a header but no rows).")
    prompts, classes, names = [], [], {}
    for line, row in enumerate(rows, start=2):
        raw, prompt = (row.get(idx_col) or "").strip(), (row.get(prompt_col) or "").strip()
        if not raw.lstrip("-").isdigit() or int(raw) < 0:
            raise ValueError(f"{path}:{line}: class_index must be a non-negative integer, got {raw!r}.")
        if not prompt:
            raise ValueError(f"{path}:{line}: empty prompt.")
        c = int(raw)
        if name_col is not None:
            name = (row.get(name_col) or "").strip() or str(c)
            if names.setdefault(c, name) != name:
                raise ValueError(f"{path}:{line}: class {c} is named both {names[c]!r} and {name!r}.")
        prompts.append(prompt)
        classes.append(c)
    if len(set(zip(classes, prompts))) != len(prompts):
        raise ValueError(f"{path}: the same (class_index, prompt) row appears twice; remove the duplicate.")
    if name_col is not None and len(set(names.values())) != len(names):
        dup = sorted({n for n in names.values() if list(names.values()).count(n) > 1})
        raise ValueError(f"{path}: duplicate classes: {dup[:5]} appear under more than one class_index.")
    n_classes = max(classes) + 1
    gaps = sorted(set(range(n_classes)) - set(classes))
    if gaps:
        raise ValueError(f"{path}: class indices must run 0..{n_classes - 1} without gaps; missing {gaps[:10]}.")
    class_names = tuple(names.get(c, str(c)) for c in range(n_classes))
    return PromptSet(class_names, tuple(prompts), tuple(classes))
