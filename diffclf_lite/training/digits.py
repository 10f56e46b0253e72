"""The chapter 3 digits model: DDPM training (`ddpm.train`) on the fixed digits split, saved as a checkpoint folder,
and trained once per machine into a cache keyed by its settings (`digits_checkpoint`).
Run `python -m diffclf_lite.training --help` for the command line.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import torch

from .ddpm import MODEL_PRESETS, SCHEDULES, TRAINING_FILE, TrainConfig, TrainResult, save_checkpoint, train

__all__ = ["DIGITS_CONFIG", "train_digits_model", "digits_checkpoint", "digits_checkpoint_path", "cache_dir", "build_once",
           "main"]

CHECKPOINT_FORMAT = 2  # part of digits_checkpoint's cache key: 2 = training.json holds the per-step losses
DIGITS_CONFIG = TrainConfig()  # the chapter's digits checkpoint (cpu profile): 600 steps of batch 128, seed 0


def train_digits_model(out_dir: str | Path, steps: int = DIGITS_CONFIG.steps, seed: int = DIGITS_CONFIG.seed,
                       preset: str = DIGITS_CONFIG.preset, progress: bool = True, device: str | torch.device = "cpu",
                       **overrides: Any) -> TrainResult:
    """The chapter's digits checkpoint: train on the fixed digits split (diffclf_lite.data.digits) and save to out_dir."""
    from ..data.digits import DIGITS_SPLIT_SEED, DIGITS_TEST_PER_CLASS, load_digits_split

    split = load_digits_split()
    extra = {"data": "sklearn digits, 16x16", "split_seed": DIGITS_SPLIT_SEED, "test_per_class": DIGITS_TEST_PER_CLASS}
    cfg = TrainConfig(**{**asdict(DIGITS_CONFIG), "steps": steps, "seed": seed, "preset": preset, "extra": extra,
                         **overrides})
    result = train(split.x_train, split.y_train, cfg, num_classes=10, device=device, progress=progress)
    save_checkpoint(out_dir, result)
    return result


def cache_dir() -> Path:
    """Where trained checkpoints are kept between runs: $DIFFCLF_CACHE, else ~/.cache/diffclf-lite."""
    return Path(os.environ.get("DIFFCLF_CACHE") or Path.home() / ".cache" / "diffclf-lite").expanduser()


def _digits_settings(config: TrainConfig | None, steps: int, seed: int, preset: str,
                     overrides: dict[str, Any]) -> dict[str, Any]:
    """The settings that differ from DIGITS_CONFIG (a config, or steps/seed/preset plus overrides)."""
    if config is not None:
        if overrides:
            raise ValueError(f"pass either config or keyword settings, not both (got {sorted(overrides)}).")
        base, mine = asdict(DIGITS_CONFIG), asdict(config)
        overrides = {k: v for k, v in mine.items() if k not in ("steps", "seed", "preset", "extra") and v != base[k]}
        steps, seed, preset = config.steps, config.seed, config.preset
    return {"steps": steps, "seed": seed, "preset": preset, **overrides}


def digits_checkpoint_path(steps: int = DIGITS_CONFIG.steps, seed: int = DIGITS_CONFIG.seed,
                           preset: str = DIGITS_CONFIG.preset, root: str | Path | None = None,
                           config: TrainConfig | None = None, **overrides: Any) -> Path:
    """Where digits_checkpoint keeps the checkpoint for these settings (it may not exist yet)."""
    settings = _digits_settings(config, steps, seed, preset, overrides)
    key = hashlib.sha256(json.dumps({**settings, "format": CHECKPOINT_FORMAT}, sort_keys=True).encode()).hexdigest()
    base = Path(root).expanduser() if root is not None else cache_dir()
    return base / f"digits-ddpm-{settings['preset']}-{settings['steps']}-{key[:12]}"


def digits_checkpoint(steps: int = DIGITS_CONFIG.steps, seed: int = DIGITS_CONFIG.seed,
                      preset: str = DIGITS_CONFIG.preset, root: str | Path | None = None, progress: bool = True,
                      config: TrainConfig | None = None, device: str | torch.device = "cpu",
                      **overrides: Any) -> Path:
    """The digits checkpoint folder for these settings, trained (train_digits_model) only if not already cached.

    Chapters and benchmarks that need a trained digits model share one copy instead of each training it again.
    Settings come as keywords or as a TrainConfig (`config`); the folder name holds a hash of every setting, so
    different settings never share a folder. A checkpoint is written into a temporary folder and renamed into place
    when complete, so an interrupted run leaves nothing that a later call could mistake for a finished checkpoint.
    """
    settings = _digits_settings(config, steps, seed, preset, overrides)
    return build_once(digits_checkpoint_path(steps, seed, preset, root, config, **overrides), TRAINING_FILE,
                      lambda tmp: train_digits_model(tmp, progress=progress, device=device, **settings))


def build_once(out: Path, done_file: str, build: Callable[[Path], Any]) -> Path:
    """`out`, built by `build(folder)` only if `out/done_file` does not exist yet. The build writes into a temporary
    folder beside `out` that is renamed into place when complete, so an interrupted build leaves nothing a later call
    could take for a finished one; if another process finished the same folder first, theirs is kept."""
    if (out / done_file).is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}-", dir=out.parent) as tmp:
        build(Path(tmp) / "build")
        try:
            os.replace(Path(tmp) / "build", out)
        except OSError:  # another process finished the same folder first: keep theirs
            if not (out / done_file).is_file():
                raise
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m diffclf_lite.training",
                                description="Train the class-conditional digits DDPM and save it as a checkpoint folder.")
    p.add_argument("--out", required=True, help="checkpoint folder to write (created if missing)")
    p.add_argument("--steps", type=int, default=DIGITS_CONFIG.steps, help="optimizer steps (default %(default)s)")
    p.add_argument("--seed", type=int, default=DIGITS_CONFIG.seed, help="seed of every random draw (default %(default)s)")
    p.add_argument("--preset", default=DIGITS_CONFIG.preset, choices=sorted(MODEL_PRESETS), help="UNet size")
    p.add_argument("--batch-size", type=int, default=DIGITS_CONFIG.batch_size, help="images per step")
    p.add_argument("--lr", type=float, default=DIGITS_CONFIG.lr, help="AdamW peak learning rate")
    p.add_argument("--schedule", default=DIGITS_CONFIG.schedule, choices=SCHEDULES, help="DDPM beta schedule")
    p.add_argument("--label-dropout", type=float, default=DIGITS_CONFIG.label_dropout,
                   help="probability of training on the null class (classifier-free guidance); 0 disables it")
    args = p.parse_args(argv)
    r = train_digits_model(args.out, args.steps, args.seed, args.preset, batch_size=args.batch_size, lr=args.lr,
                           schedule=args.schedule, label_dropout=args.label_dropout)
    print(f"saved {args.out}: {args.steps} steps in {r.seconds:.0f} s, final loss {sum(r.losses[-50:]) / len(r.losses[-50:]):.4f}")


if __name__ == "__main__":
    main()
