"""Train what the book's chapters load, before any chapter runs: chapter 3's digits model and the miniature Stable
Diffusion and CLIP (chapters 2, 4 and the binding chapter). Each is trained once per machine and settings, into the
cache the chapters read (`training.digits_checkpoint`, `training.miniature_models`); a second run finds both and
returns at once. `make book` calls `python -m diffclf_lite.book.prepare` first.
"""
from __future__ import annotations

import argparse
import time

from ..training.digits import digits_checkpoint, digits_checkpoint_path
from ..training.miniature import miniature_models, miniature_path

__all__ = ["prepare", "main"]


def prepare(profile: str = "cpu", progress: bool = True) -> dict[str, str]:
    """Train (or find in the cache) every model the `profile`'s chapters load; returns {model: folder}. Only the cpu
    profile loads these: the smoke profile uses tiny stand-ins built in seconds, the gpu profile the hub's models."""
    if profile not in ("smoke", "cpu", "gpu"):
        raise ValueError(f"profile must be smoke, cpu or gpu, got {profile!r}.")
    if profile != "cpu":
        return {}
    jobs = {"digits model (chapter 3)": (digits_checkpoint_path, digits_checkpoint),
            "miniature Stable Diffusion and CLIP (chapters 2 and 4)": (miniature_path, miniature_models)}
    out = {}
    for name, (where, build) in jobs.items():
        cached = (where() / "training.json").is_file()
        start = time.perf_counter()
        out[name] = str(build(progress=progress))
        print(f"{name}: {'in the cache' if cached else f'trained in {time.perf_counter() - start:.0f} s'}: {out[name]}",
              flush=True)
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m diffclf_lite.book.prepare", description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", default="cpu", choices=("smoke", "cpu", "gpu"), help="the book's profile (default cpu)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    args = p.parse_args(argv)
    prepare(args.profile, progress=not args.no_progress)


if __name__ == "__main__":
    main()
