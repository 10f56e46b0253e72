"""Content fingerprints of files and folders: what a resumed run compares to know that the weights and the images are
the ones its records were made from. A file is read and hashed (sha256) once per process; the digest is cached by
(path, size, mtime_ns), so a second fingerprint of the same unchanged file costs one `stat`."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterable

__all__ = ["file_digest", "files_fingerprint", "clear_cache"]

_CACHE: dict[tuple[str, int, int, int], str] = {}
_CHUNK = 1 << 22  # 4 MiB reads: GB-sized weights are streamed, never held in memory


def file_digest(path: str | Path) -> str:
    """sha256 (hex) of a file's bytes, cached by (resolved path, inode, size, mtime_ns): rewritten bytes, even of the same
    size, change the mtime and are read again."""
    p = Path(path).resolve()
    st = p.stat()
    key = (str(p), st.st_ino, st.st_size, st.st_mtime_ns)
    if key not in _CACHE:
        h = hashlib.sha256()
        with p.open("rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
        _CACHE[key] = h.hexdigest()
    return _CACHE[key]


def files_fingerprint(root: str | Path, files: Iterable[Path | tuple[Path, object]]) -> str:
    """sha256 over each file's path relative to `root`, its content digest and an optional tag (a label), in order."""
    root, h = Path(root), hashlib.sha256()
    for item in files:
        f, tag = item if isinstance(item, tuple) else (item, "")
        h.update(f"{Path(f).relative_to(root).as_posix()}\0{file_digest(f)}\0{tag}\n".encode())
    return h.hexdigest()[:16]


def clear_cache() -> None:
    """Forget every cached digest (the next fingerprint reads every file again)."""
    _CACHE.clear()
