"""Winoground (Thrush et al. 2022): two images and two captions with the same words in a different order; a model
must match them. Text, image and group scores from a (2 captions x 2 images) score matrix per example, the hub
loader (the dataset is gated), an offline synthetic set in the hub's file layout, and the score matrices of CLIP
(cosine similarity) and of a diffusion classifier (minus the denoising error, Li et al. 2023 §5.3).
"""
from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from .hub import HUB, load_error

__all__ = ["WINOGROUND_ID", "TAGS", "WinogroundExample", "load_winoground", "synthetic_winoground", "text_correct",
           "image_correct", "group_correct", "winoground_scores", "clip_scores", "diffusion_scores"]

WINOGROUND_ID = HUB["winoground"].repo_id  # every hub id lives in data/hub.py
TAGS = ("Object", "Relation", "Both")  # the `collapsed_tag` of every example
_FILES = ("data/examples.jsonl", "data/images.zip")  # the hub layout; images.zip holds images/<name>.png


@dataclass
class WinogroundExample:
    """One example: caption c describes image c (c = 0, 1); `tag` is the collapsed swap type (Object/Relation/Both).
    The images are decoded when `images` is read (the 800 full-size images would not all fit in a Colab's memory)."""

    id: int
    captions: tuple[str, str]
    tag: str
    load: Callable[[], tuple[Any, Any]] = field(repr=False)

    @property
    def images(self) -> tuple[Any, Any]:
        return self.load()


# ---- scores: S[n, c, i] = s(caption c, image i), higher = better match (Thrush et al. §3.2) ----
def _check(scores: Any) -> torch.Tensor:
    s = torch.as_tensor(scores, dtype=torch.float64)
    if s.ndim == 2:
        s = s[None]
    if s.ndim != 3 or s.shape[1:] != (2, 2):
        raise ValueError(f"scores must be (N, 2, 2) = [example, caption, image] (or one 2x2 matrix), got {tuple(s.shape)}.")
    if not bool(torch.isfinite(s).all()):
        raise ValueError("scores contain NaN or inf; check the model's outputs.")
    return s


def text_correct(scores: Any) -> torch.Tensor:
    """f = 1 iff s(C0, I0) > s(C1, I0) and s(C1, I1) > s(C0, I1): each image prefers its caption. (N,) bool."""
    s = _check(scores)
    return (s[:, 0, 0] > s[:, 1, 0]) & (s[:, 1, 1] > s[:, 0, 1])


def image_correct(scores: Any) -> torch.Tensor:
    """g = 1 iff s(C0, I0) > s(C0, I1) and s(C1, I1) > s(C1, I0): each caption prefers its image. (N,) bool."""
    s = _check(scores)
    return (s[:, 0, 0] > s[:, 0, 1]) & (s[:, 1, 1] > s[:, 1, 0])


def group_correct(scores: Any) -> torch.Tensor:
    """h = f and g (ties count as failures throughout). (N,) bool."""
    return text_correct(scores) & image_correct(scores)


def winoground_scores(scores: Any, tags: Sequence[str] | None = None) -> "pd.DataFrame":  # noqa: F821
    """Text, image and group scores in % (chance: 25, 25, 16.7), overall and per tag present (rows), each with its
    standard error in points (binomial, sqrt(p (1 - p) / n): what a rerun on other examples may move it by)."""
    import pandas as pd

    s = _check(scores)
    parts = {"text": text_correct(s), "image": image_correct(s), "group": group_correct(s)}
    groups: dict[str, torch.Tensor] = {"all": torch.ones(len(s), dtype=torch.bool)}
    if tags is not None:
        if len(tags) != len(s):
            raise ValueError(f"{len(tags)} tags for {len(s)} score matrices: give one tag per example.")
        for tag in [t for t in TAGS if t in tags] + sorted(set(tags) - set(TAGS)):
            groups[tag] = torch.tensor([t == tag for t in tags])
    rows = []
    for g, m in groups.items():
        n, means = int(m.sum()), {k: v[m].double().mean().item() for k, v in parts.items()}
        rows.append({"subset": g, "examples": n, **{k: 100 * p for k, p in means.items()},
                     **{f"{k} SE": 100 * (p * (1 - p) / n) ** 0.5 for k, p in means.items()}})
    return pd.DataFrame(rows).set_index("subset")


# ---- data ----
def _read_folder(folder: Path) -> list[WinogroundExample]:
    """examples.jsonl + images.zip (the hub's data/ folder) or an images/ folder beside examples.jsonl."""
    from PIL import Image

    root = folder / "data" if (folder / "data" / "examples.jsonl").is_file() else folder
    jsonl, archive, loose = root / "examples.jsonl", root / "images.zip", root / "images"
    if not jsonl.is_file() or not (archive.is_file() or loose.is_dir()):
        raise ValueError(f"{folder}: expected examples.jsonl and images.zip (or an images/ folder), as in the hub's data/.")
    zf = zipfile.ZipFile(archive) if archive.is_file() else None
    names = {Path(n).stem: n for n in zf.namelist() if n.endswith(".png")} if zf else {}

    def image(name: str) -> Any:
        try:
            data = zf.read(names[name]) if zf else (loose / f"{name}.png").read_bytes()
        except (KeyError, FileNotFoundError) as err:
            raise ValueError(f"{folder}: image {name!r} named in examples.jsonl is missing.") from err
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            return im.copy()

    examples, wanted = [], []
    for line in jsonl.read_text(encoding="utf-8").splitlines():
        if line.strip():
            e = json.loads(line)
            missing = [k for k in ("id", "image_0", "image_1", "caption_0", "caption_1") if k not in e]
            if missing:
                raise ValueError(f"{jsonl}: an example lacks {missing}; each line needs id, image_0/1 and caption_0/1.")
            pair = (e["image_0"], e["image_1"])
            wanted += pair
            examples.append(WinogroundExample(int(e["id"]), (e["caption_0"], e["caption_1"]), e.get("collapsed_tag", ""),
                                              lambda pair=pair: (image(pair[0]), image(pair[1]))))
    if not examples:
        raise ValueError(f"{jsonl}: no examples.")
    # a truncated download or a missing file fails here, not in the middle of a long scoring run
    absent = [n for n in wanted if (n not in names if zf else not (loose / f"{n}.png").is_file())]
    if absent:
        raise ValueError(f"{archive if zf else loose}: images named in examples.jsonl are missing, e.g. {absent[:3]}; "
                         "download it again.")
    return examples


def load_winoground(source: str | Path = WINOGROUND_ID, *, token: str | bool | None = None,
                    revision: str | None = None, cache_dir: str | Path | None = None) -> list[WinogroundExample]:
    """The 400 examples from the hub (gated: accept the licence on the dataset page, then log in) or from a folder
    in the same layout (e.g. `synthetic_winoground`). Files only, through huggingface_hub: no `datasets` needed."""
    if Path(source).is_dir():
        return _read_folder(Path(source))
    from huggingface_hub import hf_hub_download

    try:
        paths = [hf_hub_download(str(source), f, repo_type="dataset", token=token, revision=revision, cache_dir=cache_dir)
                 for f in _FILES]
    except Exception as err:  # GatedRepoError, RepositoryNotFoundError, offline...: one message that teaches
        raise load_error("winoground", source, err, "data/examples.jsonl and data/images.zip", revision) from err
    return _read_folder(Path(paths[0]).parent)


_COLOURS = {"red": (220, 40, 40), "blue": (40, 70, 220), "green": (40, 170, 60), "yellow": (230, 200, 30)}
_SHAPES = ("circle", "square", "triangle")


def _scene(size: int, top: tuple[str, str], bottom: tuple[str, str]) -> Any:
    """A (colour, shape) above another (colour, shape) on white."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(img)
    r = size * 0.18
    for (colour, shape), cy in ((top, size * 0.27), (bottom, size * 0.73)):
        box, fill = [size / 2 - r, cy - r, size / 2 + r, cy + r], _COLOURS[colour]
        if shape == "circle":
            draw.ellipse(box, fill=fill)
        elif shape == "square":
            draw.rectangle(box, fill=fill)
        else:
            draw.polygon([(size / 2, cy - r), (size / 2 - r, cy + r), (size / 2 + r, cy + r)], fill=fill)
    return img


def synthetic_winoground(folder: str | Path, n_examples: int = 12, size: int = 64, seed: int = 0) -> Path:
    """Write an offline Winoground-format set (data/examples.jsonl, data/images.zip): two shapes, one above the other.
    Even examples swap the shapes ("a red circle above a blue square" / "a red square above a blue circle": Object),
    odd ones the colours (adjectives: Relation, in Winoground's tagging). Both captions use the same words."""
    if n_examples < 1 or size < 16:
        raise ValueError(f"need n_examples >= 1 and size >= 16, got {n_examples}, {size}.")
    rng = np.random.default_rng(seed)
    data = Path(folder) / "data"
    data.mkdir(parents=True, exist_ok=True)
    lines = []
    with zipfile.ZipFile(data / "images.zip", "w") as zf:
        for k in range(n_examples):
            a, b = (str(c) for c in rng.choice(list(_COLOURS), 2, replace=False))
            s, t = (str(x) for x in rng.choice(_SHAPES, 2, replace=False))
            pairs = [((a, s), (b, t)), ((a, t), (b, s))] if k % 2 == 0 else [((a, s), (b, t)), ((b, s), (a, t))]
            captions = [f"a {c1} {s1} above a {c2} {s2}" for (c1, s1), (c2, s2) in pairs]
            for i, (top, bottom) in enumerate(pairs):
                buf = io.BytesIO()
                _scene(size, top, bottom).save(buf, format="PNG")
                zf.writestr(f"images/ex_{k}_img_{i}.png", buf.getvalue())
            lines.append(json.dumps({"id": k, "image_0": f"ex_{k}_img_0", "image_1": f"ex_{k}_img_1", "caption_0": captions[0],
                                     "caption_1": captions[1], "collapsed_tag": "Object" if k % 2 == 0 else "Relation"}))
    (data / "examples.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return Path(folder)


# ---- score matrices of the two kinds of model ----
def _flat(examples: Sequence[WinogroundExample]) -> tuple[list[str], list[Any]]:
    if not examples:
        raise ValueError("no Winoground examples given.")
    return [c for e in examples for c in e.captions], [im for e in examples for im in e.images]


def clip_scores(clip: Any, examples: Sequence[WinogroundExample], batch_size: int = 64) -> torch.Tensor:
    """S[n, c, i] = cosine(text embedding of caption c, image embedding of image i) of a CLIPClassifier. (N, 2, 2)"""
    captions, images = _flat(examples)
    text, image = clip.embed_text(captions), clip.embed_images(images, batch_size)  # (2N, D) each
    return torch.einsum("ncd,nid->nci", text.view(-1, 2, text.shape[-1]), image.view(-1, 2, image.shape[-1])).double()


def diffusion_scores(model: Any, examples: Sequence[WinogroundExample], n_timesteps: int = 50, *, loss: str = "l2",
                     seed: int = 0, batch_size: int = 64, examples_per_call: int = 8, autocast_dtype: torch.dtype | None = None,
                     progress: bool = False, max_seconds: float | None = None) -> torch.Tensor:
    """S[n, c, i] = -(mean denoising error of image i under caption c), Li et al. eq. 5: one (t, eps) plan shared by
    both captions *and* both images of every example, evaluated with `scoring.evaluate_pairs`. (N, 2, 2); with
    `max_seconds`, no new chunk starts after that time and only the first examples are scored (N <= len(examples))."""
    import time

    from tqdm.auto import tqdm

    from ..engine import evaluate_pairs, make_plan

    if not examples:
        raise ValueError("no Winoground examples given.")
    if not hasattr(model, "set_prompts"):
        raise ValueError(f"{type(model).__name__} has no set_prompts: Winoground needs a text-conditional model (e.g. StableDiffusion).")
    out, bar, began = [], tqdm(total=len(examples), desc="Winoground", unit="ex", disable=not progress), time.perf_counter()
    for s in range(0, len(examples), examples_per_call):
        if max_seconds is not None and out and time.perf_counter() - began > max_seconds:
            break
        captions, images = _flat(examples[s:s + examples_per_call])
        model.set_prompts(captions)  # condition 2k + c = caption c of example k
        x0 = model.encode(images)  # (2K, *shape): image 2k + i = image i of example k
        plan = make_plan(n_timesteps, tuple(x0.shape[1:]), model.alphas_cumprod, seed, "uniform", x0.device, x0.dtype)
        K = len(captions) // 2
        grid = torch.cartesian_prod(torch.arange(K), torch.arange(2), torch.arange(2), torch.arange(len(plan)))  # k, c, i, step
        dev = grid.to(x0.device)
        err = evaluate_pairs(model, x0, plan, 2 * dev[:, 0] + dev[:, 2], dev[:, 3], 2 * dev[:, 0] + dev[:, 1], loss,
                             batch_size, autocast_dtype)
        out.append(-err.double().cpu().view(K, 2, 2, len(plan)).mean(-1))  # (K, caption, image)
        bar.update(K)
    bar.close()
    return torch.cat(out)
