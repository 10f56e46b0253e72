"""Resumable, shardable evaluation records: one JSON file per image, written atomically, under a manifest of settings.

Layout of an output folder:
  manifest.json            the settings that decide the numbers (model, prompts, strategy, loss, seed, images ...)
  records/000000042.json   one per image, named by its index in the dataset; exists only once complete
  timing/rank0.jsonl       wall-clock seconds per image (append-only, informative: never part of a record)
  records.jsonl, summary.json, results.csv   written by `merge` once every image has a record

Why one file per image rather than one JSONL: a file appears through `os.replace` only after its bytes are on disk
(fsync), so a run killed at any instant (SIGKILL, a dropped Colab session) leaves each record either complete or
absent, never half-written; a rerun skips the indices that have a file. Shards (processes) write disjoint files, so
they need no lock and no coordination, and the merge is a read of one folder.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from ..data.fingerprints import file_digest

__all__ = ["MANIFEST", "atomic_write_text", "write_record", "done_indices", "read_records", "manifest_differences",
           "check_output", "read_manifest", "open_output", "fingerprint_folder", "append_timing", "read_timing"]

MANIFEST = "manifest.json"
RECORDS = "records"
# settings that may change between runs into the same folder: the same pairs with the same (t, eps) are evaluated, but
# batch shapes change, and float32 kernels (convolutions, matrix products) sum in an order that depends on them
SOFT_SETTINGS = ("batch_size", "images_per_call", "processes", "cpu_threads")
SOFT_NOTE = ("the same pairs are evaluated with the same timesteps and noise, but a float32 model's errors in new records "
             "may differ from what the old batch shapes or CPU thread count gave in the last bits (about 1e-7 relative: "
             "convolution and matrix kernels sum in an order that depends on the batch shape and, on the CPU, on how "
             "many threads share the work)")


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write `text` to a temporary file in the same folder, fsync it, then os.replace it onto `path` (all or nothing)."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write `data` to a temporary file in the same folder, fsync it, then os.replace it onto `path` (all or nothing)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable (power loss); not needed against a killed process
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass
    return path


def _record_path(folder: Path, index: int) -> Path:
    return folder / RECORDS / f"{int(index):09d}.json"


def write_record(folder: str | Path, record: dict) -> Path:
    """One image's record -> records/<index>.json (sorted keys: the same record gives the same bytes)."""
    return atomic_write_text(_record_path(Path(folder), record["index"]), json.dumps(record, sort_keys=True) + "\n")


def done_indices(folder: str | Path) -> set[int]:
    """Indices that already have a complete record (temporary files of a killed write are ignored)."""
    d = Path(folder) / RECORDS
    return {int(p.stem) for p in d.glob("*.json") if p.stem.isdigit()} if d.is_dir() else set()


def read_records(folder: str | Path) -> dict[int, dict]:
    """Every complete record of the folder, by index; ValueError naming a file that is not a valid record."""
    out: dict[int, dict] = {}
    for p in sorted((Path(folder) / RECORDS).glob("*.json")):
        try:
            rec = json.loads(p.read_text(encoding="utf-8"))
            ok = isinstance(rec, dict) and int(rec["index"]) == int(p.stem)
        except (ValueError, KeyError, TypeError) as err:
            ok, rec = False, err
        if not ok:
            raise ValueError(f"{p} is not a valid record ({rec}); delete it and rerun the same command to recompute it.")
        out[int(p.stem)] = rec
    return out


def _short(value: Any, width: int = 70) -> str:
    text = json.dumps(value)
    return text if len(text) <= width else text[: width - 3] + "..."


# what a difference in a content fingerprint means, said first: the setting names alone would not tell a reader
CONTENT_CHANGES = {
    "model_fingerprint": "the model's files (weights or configs) are not the ones the records were made with",
    "data_fingerprint": "the image files (their contents, names or labels) are not the ones the records were made from",
}


def manifest_differences(stored: dict, current: dict) -> list[str]:
    """'setting: folder has X, this run has Y' for each setting (other than the soft ones) that differs; changed
    contents of the model or the images first, in words."""
    keys = sorted((set(stored) | set(current)) - set(SOFT_SETTINGS), key=lambda k: (k not in CONTENT_CHANGES, k))
    return [f"{CONTENT_CHANGES[k] + ' (' if k in CONTENT_CHANGES else ''}{k}: the folder has {_short(stored.get(k))}, "
            f"this run has {_short(current.get(k))}{')' if k in CONTENT_CHANGES else ''}"
            for k in keys if stored.get(k) != current.get(k)]


def _clear(folder: Path) -> None:
    """Remove what an earlier run wrote (only the files this module writes)."""
    for sub in (RECORDS, "timing"):
        d = folder / sub
        if d.is_dir():
            for p in d.iterdir():
                if p.is_file():
                    p.unlink()
    for name in (MANIFEST, "records.jsonl", "summary.json", "results.csv"):
        (folder / name).unlink(missing_ok=True)


def read_manifest(folder: str | Path) -> dict:
    """The folder's manifest.json; ValueError naming the file when it is not a manifest this package wrote."""
    path = Path(folder) / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({err}); rerun with --overwrite (overwrite=True) to start over.") from None
    ok = isinstance(manifest, dict) and all(isinstance(manifest.get(k), list) for k in ("indices", "classes", "prompts"))
    if not ok or not all(isinstance(i, int) and not isinstance(i, bool) for i in manifest["indices"]):
        raise ValueError(f"{path} is not a run manifest (it needs lists of indices, classes and prompts); it was edited "
                         "or written by something else. Rerun with --overwrite (overwrite=True) to start over.")
    return manifest


def _check(folder: Path, manifest: dict) -> list[str]:
    """Refuse a folder made with other settings; return the soft settings that changed."""
    stored = read_manifest(folder)
    diffs = manifest_differences(stored, manifest)
    if diffs:
        raise ValueError(f"{folder} holds records made with other settings; " + "; ".join(diffs[:4])
                         + (f" (and {len(diffs) - 4} more)" if len(diffs) > 4 else "")
                         + ". Use a new output folder, or --overwrite (overwrite=True) to discard the old records.")
    return [f"{k} {stored[k]} -> {manifest.get(k)}" for k in SOFT_SETTINGS if k in stored and stored.get(k) != manifest.get(k)]


def check_output(folder: str | Path, name: str = "--output") -> Path:
    """Create the output folder (and its parents) now, before any work: a ValueError naming the argument (`name`) and
    the path if it cannot be created or written."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{name} {folder} exists and is not a folder; choose another {name}.")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"{name} {folder}: cannot create this folder ({err.strerror or err}); choose a place you can "
                         "write to.") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"{name} {folder}: this folder is not writable; choose a place you can write to.")
    return folder


def open_output(folder: str | Path, manifest: dict, *, overwrite: bool = False, is_main: bool = True,
                barrier: Any = None) -> Path:
    """Create or reuse an output folder for `manifest`; refuse (ValueError naming the settings) a folder made
    with different settings. With several processes, only the main one writes; `barrier()` syncs them."""
    folder = check_output(folder)
    json.dumps(manifest)  # a manifest must be plain JSON
    if not overwrite and (folder / MANIFEST).exists():
        _check(folder, manifest)
    elif not overwrite and done_indices(folder):
        raise ValueError(f"{folder} has records but no {MANIFEST}; use a new output folder or --overwrite.")
    if is_main:
        if overwrite:
            _clear(folder)
        for tmp in (folder / RECORDS).glob(".*.tmp") if (folder / RECORDS).is_dir() else ():
            tmp.unlink(missing_ok=True)  # left by a write that was killed before its os.replace
        if not (folder / MANIFEST).exists():
            atomic_write_text(folder / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    if barrier is not None:
        barrier()
    soft = _check(folder, manifest)
    if soft and is_main:  # once, by one process
        print(f"note: {', '.join(soft)} since the records in {folder} were started; {SOFT_NOTE}.")
    return folder


def append_timing(folder: str | Path, rank: int, index: int, seconds: float) -> None:
    """Wall-clock seconds of one image, appended to timing/rank<r>.jsonl (informative; a torn last line is skipped)."""
    path = Path(folder) / "timing" / f"rank{int(rank)}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps({"index": int(index), "seconds": round(float(seconds), 6)}) + "\n")


def read_timing(folder: str | Path) -> dict[int, float]:
    """Seconds per index from every rank's timing file (the latest entry wins; unparsable torn lines are skipped)."""
    out: dict[int, float] = {}
    for p in sorted((Path(folder) / "timing").glob("rank*.jsonl")):
        for line in p.read_text(encoding="utf-8", errors="replace").splitlines():  # damage is skipped, not fatal
            try:
                entry = json.loads(line)
                out[int(entry["index"])] = float(entry["seconds"])
            except (ValueError, KeyError, TypeError):
                continue
    return out


def fingerprint_folder(path: str | Path) -> str:
    """sha256 over every file's relative path and content (weights included: a folder rebuilt in place with other
    weights of the same sizes is another model). Each file is read once per process (`data.fingerprints`); at
    about 1 GB/s that is seconds for Stable Diffusion's weights, once per run."""
    root = Path(path)
    h = hashlib.sha256()
    for p in sorted(q for q in root.rglob("*") if q.is_file() and ".cache" not in q.parts):
        h.update(f"{p.relative_to(root).as_posix()}\0{file_digest(p)}\n".encode())
    return h.hexdigest()[:16]


def hub_commit(model_id: str, revision: str | None = None, model: Any = None) -> str:
    """The commit of a hub model that was really loaded: the one the adapter read its config from (`commit_hash`,
    or a transformers config's `_commit_hash`), else the snapshot the local cache resolves `revision` to, else the
    hub's answer (`model_info`). A branch such as `main` moves; a commit does not, so resume compares commits."""
    for source in (model, getattr(model, "text_encoder", None)):
        commit = getattr(source, "commit_hash", None) or getattr(getattr(source, "config", None), "_commit_hash", None)
        if isinstance(commit, str) and commit:
            return commit
    try:
        import huggingface_hub as hub
    except ImportError:
        hub = None
    if hub is not None:
        try:
            return Path(hub.snapshot_download(model_id, revision=revision, local_files_only=True)).name
        except Exception:  # not in the local cache: ask the hub
            pass
        try:
            return str(hub.model_info(model_id, revision=revision).sha)
        except Exception as err:
            raise ValueError(f"--model {model_id}: cannot tell which commit of it was loaded ({type(err).__name__}); a "
                             "resumed run could not check that it uses the same weights. Pass a local folder "
                             "(`hf download REPO --local-dir DIR`) instead.") from None
    raise ValueError(f"--model {model_id}: huggingface_hub is needed to tell which commit of a hub model was loaded.")
