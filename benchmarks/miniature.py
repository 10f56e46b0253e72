"""The miniature Stable Diffusion and CLIP: how long they take to train, and how well they classify zero-shot.

    python benchmarks/miniature.py                     # train (or find in the cache) the book's miniatures, then score
    python benchmarks/miniature.py --images 400 --json benchmarks/results/miniature.json

Training time is what `training.json` recorded when the models were trained (per phase and in total, wall clock; CLIP
trains on a second thread beside the autoencoder and the UNet); run it on a fresh cache (DIFFCLF_CACHE=/tmp/empty)
to measure it. Scoring: each task of the
miniature world (digit, colour, position) on held-out handwriting, with the training phrasing ("a seven") and the
held-out one ("the seven"); the diffusion classifier scores every class at the same evenly spaced timesteps
(exhaustive), CLIP by cosine similarity, on the same images with the same prompts. Each accuracy has its binomial
standard error; diffusion against CLIP is tested with McNemar's exact test (same images: paired).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import diffclf_lite as dc
from diffclf_lite.data import miniature as world
from diffclf_lite.models.clip import CLIPClassifier
from diffclf_lite.models.sd import StableDiffusion
from diffclf_lite.runs.evaluate import accuracy_se, mcnemar
from diffclf_lite.training.miniature import MINIATURE_CONFIG, MINIATURE_SMOKE, miniature_models


def score(folder: Path, n_images: int, steps: int, seed: int = 0) -> list[dict]:
    """One record per (task, phrasing): both models' accuracies, their standard errors and McNemar's test."""
    sd = StableDiffusion.from_pretrained(folder / "sd")
    clip = CLIPClassifier.from_pretrained(folder / "clip")
    rows = []
    for task in world.TASKS:
        images, labels = world.task_set(task, n_images, seed)
        for phrasing, template in (("training", "a"), ("held out", "the")):
            names, prompts = world.task_prompts(task, template)
            sd.set_prompts(prompts)
            start = time.perf_counter()
            diffusion = dc.classify(sd, images.float() / 127.5 - 1, dc.Exhaustive(steps), seed=seed, batch_size=1000)
            seconds = time.perf_counter() - start
            cos = clip.embed_images([im.permute(1, 2, 0).numpy() for im in images]) @ clip.embed_text(prompts).T
            right = {"diffusion": (diffusion.prediction == labels).numpy(), "CLIP": (cos.argmax(1) == labels).numpy()}
            test = mcnemar(right["diffusion"], right["CLIP"])
            row = {"task": task, "phrasing": phrasing, "classes": len(names), "images": n_images,
                   "chance": 1 / len(names), "timesteps": steps, "diffusion_seconds": seconds}
            for model, r in right.items():
                row[f"{model}_accuracy"] = float(r.mean())
                row[f"{model}_se"] = accuracy_se(float(r.mean()), n_images)
            row.update(only_diffusion_right=test["only first right"], only_clip_right=test["only this right"],
                       mcnemar_p=test["McNemar p vs first"])
            rows.append(row)
            print(f"{task:8s} {phrasing:8s}  diffusion {row['diffusion_accuracy']:6.1%} ± {row['diffusion_se']:.1%}   "
                  f"CLIP {row['CLIP_accuracy']:6.1%} ± {row['CLIP_se']:.1%}   chance {row['chance']:.0%}   McNemar p "
                  f"{row['mcnemar_p']:.2g} ({row['only_diffusion_right']} vs {row['only_clip_right']} discordant)  "
                  f"[{seconds:.0f} s]", flush=True)
    return rows


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=200, help="held-out test images per task (default %(default)s)")
    p.add_argument("--timesteps", type=int, default=30, help="diffusion: timesteps per class (default %(default)s)")
    p.add_argument("--smoke", action="store_true", help="the two-step miniatures (seconds; their numbers mean nothing)")
    p.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = p.parse_args(argv)
    if args.images < 1 or args.timesteps < 1:
        p.error("--images and --timesteps must be at least 1")
    config = MINIATURE_SMOKE if args.smoke else MINIATURE_CONFIG
    folder = miniature_models(config)
    info = json.loads((folder / "training.json").read_text(encoding="utf-8"))
    seconds = info["seconds"]
    print("training (wall clock; CLIP beside the autoencoder and UNet): "
          + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items() if k != "total")
          + f"; total {seconds['total'] / 60:.1f} min")
    out = {"training_seconds": seconds, "training_threads": info.get("threads"), "config": info["config"],
           "torch_threads_now": torch.get_num_threads(), "scores": score(folder, args.images, args.timesteps)}
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2), encoding="utf-8")
    return out


if __name__ == "__main__":
    main()
