"""Command line: `python -m diffclf_lite evaluate --model ... --data ...` (zero-shot evaluation, Li et al. §5)."""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Sequence

from ..data.hub import HUB, pinned

__all__ = ["main", "build_parser", "parse_strategy"]

DEFAULT_TEMPLATE = "a photo of a {}."

EPILOG = """examples:
  # the paper's CIFAR-10 setting on 200 test images (Colab GPU; downloads SD 2 base and CIFAR-10)
  python -m diffclf_lite evaluate --data cifar10 --subset 200 --strategy paper --output runs/cifar10
  # your own images: one subfolder per class, 50 evenly spaced timesteps per class
  python -m diffclf_lite evaluate --data path/to/folder --strategy exhaustive:50 --output runs/mine
  # your own prompts (CSV with columns class_index,prompt; several prompts per class are averaged)
  python -m diffclf_lite evaluate --data path/to/folder --prompts prompts.csv --output runs/mine
  # interrupted? run the same command again: images with a record are skipped (resume)
  # several GPUs: each process takes a share of the images, then one merge builds the table
  accelerate launch --multi_gpu --num_processes 4 -m diffclf_lite evaluate --data cifar10 --output runs/c10
  python -m diffclf_lite merge runs/c10
"""


def parse_strategy(spec: str, dataset: str | None) -> tuple[object, str | None]:
    """`exhaustive:N`, `staged:25,250:5,1`, `paper` (the schedule of --data), `paper:NAME`, `anytime[:N]`,
    `elimination[:N]` or `racing[:N]` (N grid timesteps, default 1000) -> (strategy, paper loss)."""
    from ..data.prompts import canonical_name
    from ..engine import PAPER_SCHEDULES, AnytimeElimination, Exhaustive, Racing, Staged, SuccessiveElimination

    kind, _, arg = spec.partition(":")
    kind = kind.strip().lower()
    if kind == "exhaustive":
        if not arg.strip().isdigit():
            raise ValueError(f"--strategy {spec!r}: write exhaustive:N with N timesteps per class, e.g. exhaustive:100.")
        return Exhaustive(int(arg)), None
    if kind == "staged":
        try:
            samples, keep = arg.split(":")
            return Staged([int(v) for v in samples.split(",")], [int(v) for v in keep.split(",")]), None
        except ValueError as err:
            raise ValueError(f"--strategy {spec!r}: write staged:SAMPLES:KEEP, e.g. staged:25,250:5,1 ({err}).") from None
    if kind in ("anytime", "elimination", "racing"):
        grid = arg.strip() or "1000"
        if not grid.isdigit() or not 20 <= int(grid) <= 1000:
            raise ValueError(f"--strategy {spec!r}: write {kind}:N with a grid of 20 to 1000 timesteps, e.g. {kind}:500.")
        if kind == "anytime":  # the chapter's level and zone; uniform i.i.d. draws, so no images are needed beforehand
            import torch

            n = int(grid)
            return AnytimeElimination(n, alpha=0.1, kappa=3.0, proposal=torch.full((n,), 1.0 / n)), None
        return (Racing if kind == "racing" else SuccessiveElimination)(int(grid)), None
    if kind == "paper":
        name = arg.strip() or dataset
        if not name:
            raise ValueError("--strategy paper needs a dataset: use it with --data NAME or write paper:cifar10.")
        key = name.strip().lower()
        if key not in PAPER_SCHEDULES:
            try:
                key = canonical_name(name)
            except ValueError:
                raise ValueError(f"--strategy {spec}: {name!r} is not one of the paper's datasets "
                                 f"({', '.join(PAPER_SCHEDULES)}); use exhaustive:N or paper:NAME.") from None
        samples, keep, loss = PAPER_SCHEDULES[key]
        return Staged(samples, keep), loss
    raise ValueError(f"--strategy {spec!r} is not understood; use exhaustive:N, staged:25,250:5,1, paper, paper:NAME, "
                     "anytime[:N], elimination[:N] or racing[:N].")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="diffclf", description="Diffusion models as zero-shot classifiers (Li et al. 2023).")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    ev = sub.add_parser("evaluate", help="classify a dataset with Stable Diffusion and write per-image records",
                        description="Zero-shot classification of a dataset with a Stable Diffusion model.",
                        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    ev.add_argument("--model", default=HUB["sd2-base"].repo_id,
                    help=f"hub id (SD 1.x/2.x, e.g. {HUB['sd2.1-base'].repo_id} or {HUB['sd1.5'].repo_id}) or a local "
                         "folder written by save_pretrained (default: %(default)s)")
    ev.add_argument("--data", required=True,
                    help="cifar10, stl10, pets, flowers102, food101, aircraft, imagenet (torchvision test split), "
                         "a folder with one subfolder of images per class, or 'synthetic' (offline shapes)")
    ev.add_argument("--data-root", default="data", help="where torchvision keeps/downloads datasets (default: %(default)s)")
    ev.add_argument("--prompts", default="paper",
                    help="'paper' (the paper's single template for the dataset; for a folder, its own prompts.csv if it "
                         "has one), 'all' (for the paper's datasets: CLIP's template ensemble, errors "
                         "averaged per class), a CSV with columns class_index,prompt, or a .txt class list (see --template)")
    ev.add_argument("--template", default=DEFAULT_TEMPLATE,
                    help="template for folder/synthetic/class-list classes; {} is the class name (default: %(default)r)")
    ev.add_argument("--strategy", default="paper",
                    help="exhaustive:N (N timesteps for every class), staged:25,250:5,1 (evaluations per stage : classes "
                         "kept), paper (the paper's schedule for --data), paper:NAME, anytime[:N] (elimination by "
                         "confidence sequences on a grid of N timesteps, default 1000: with probability >= 0.9 per image "
                         "the class exhaustive:N would choose or one within 3 standard errors of it; see the pruning "
                         "chapter), elimination[:N] (Clark & Jaini's paired t-tests) or racing[:N] (ours: cheaper, no "
                         "guarantee per image) (default: %(default)s)")
    ev.add_argument("--loss", choices=["l1", "l2", "huber"], default=None,
                    help="error between true and predicted noise (default: the paper's choice with --strategy paper, else l2)")
    ev.add_argument("--subset", type=int, default=None, help="evaluate a seeded random subset of this many images")
    ev.add_argument("--seed", type=int, default=0, help="seed of the subset and of the shared (t, eps) plan")
    ev.add_argument("--batch-size", type=int, default=32, help="UNet evaluations per forward pass (default: %(default)s)")
    ev.add_argument("--images-per-call", type=int, default=1, help="images classified together (default: %(default)s)")
    ev.add_argument("--dtype", choices=["fp16", "bf16", "fp32"], default=None,
                    help="model weights' dtype (default: fp16 on CUDA, fp32 on CPU)")
    ev.add_argument("--device", default=None, help="cuda, cuda:1, cpu ... (default: cuda when available)")
    ev.add_argument("--resolution", type=int, default=None,
                    help="image side in pixels (default: the model's, 512 for SD 2 base; 256 is ~4x cheaper)")
    ev.add_argument("--output", default="diffclf_results",
                    help="folder for manifest.json, records/ (one file per image, resumable), records.jsonl, summary.json "
                         "and results.csv (default: %(default)s)")
    ev.add_argument("--overwrite", action="store_true",
                    help="discard the records of an earlier run in --output (otherwise a run with other settings is refused)")
    ev.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    mg = sub.add_parser("merge", help="gather the per-image records of an output folder into the table and accuracy",
                        description="Merge the records every process wrote into records.jsonl, summary.json, results.csv.")
    mg.add_argument("folder", help="the --output folder of `diffclf evaluate`")
    mg.add_argument("--partial", action="store_true", help="merge even if some images have no record yet")
    mini = sub.add_parser("miniature", help="train the miniature Stable Diffusion and CLIP, or write their test sets",
                          description="The miniature text-to-image world of the book (chapters 2 and 4).")
    mini_sub = mini.add_subparsers(dest="action", required=True, metavar="ACTION")
    tr = mini_sub.add_parser("train", help="train both models (once per machine: cached) and copy them to OUT/sd, OUT/clip")
    tr.add_argument("out", help="folder to write sd/ (a Stable Diffusion hub layout) and clip/ (a CLIPModel) into")
    tr.add_argument("--seed", type=int, default=0, help="seed of the data and of every random draw (default %(default)s)")
    tr.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    da = mini_sub.add_parser("data", help="write the held-out zero-shot test sets as image folders under OUT/data/",
                             description="Write OUT/data/<task>/ for the tasks digit, colour and position: one folder "
                                         "of PNGs per class, classes.txt, prompts.csv (the training template, used by "
                                         "`diffclf evaluate --data OUT/data/<task>`) and prompts_held_out.csv.")
    da.add_argument("out", help="folder to write data/<task>/ into")
    da.add_argument("--images", type=int, default=200, help="test images per task (default %(default)s)")
    da.add_argument("--seed", type=int, default=0, help="seed of the test images (default %(default)s)")
    return parser


def _prompt_set(args: argparse.Namespace, dataset: object) -> object:
    from ..data import prompts as P

    spec = args.prompts
    if spec.lower().endswith((".csv", ".txt")) and not Path(spec).is_file():
        raise ValueError(f"--prompts {spec}: no such file.")
    if spec.lower().endswith(".csv"):
        return P.read_prompt_csv(spec)
    if spec.lower().endswith(".txt"):
        return P.class_prompts(P.read_class_list(spec), args.template)
    if spec not in ("paper", "all"):
        raise ValueError(f"--prompts {spec!r}: use paper, all, a .csv file (class_index,prompt) or a .txt class list.")
    own = Path(args.data) / "prompts.csv"
    if spec == "paper" and args.template == DEFAULT_TEMPLATE and dataset.name not in P.DATASETS and own.is_file():
        # a folder that carries its own prompts (diffclf miniature data writes them), unless --template says otherwise
        return P.read_prompt_csv(own)
    if dataset.name in P.DATASETS:
        if args.template != DEFAULT_TEMPLATE:
            raise ValueError(f"--template is for folders, synthetic data and .txt class lists; {dataset.name} has the "
                             f"paper's own prompts (--prompts {spec}). For your own template, write the class names to a "
                             ".txt file and pass it with --prompts and --template.")
        return P.dataset_prompts(dataset.name, spec)
    if spec == "all":
        raise ValueError(f"--prompts all is CLIP's template ensemble of one of the paper's datasets "
                         f"({', '.join(P.DATASETS)}); {args.data} has none. Use --template for one template, or a .csv "
                         "file (class_index,prompt) with several prompts per class to average them.")
    return P.class_prompts(dataset.classes, args.template)


def _process_state(device: str | None) -> object | None:
    """accelerate's PartialState when launched by `accelerate launch` or `torchrun` with several processes, else None."""
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    from accelerate import PartialState

    return PartialState(cpu=device is not None and device.strip().lower() == "cpu")


def run_evaluate(args: argparse.Namespace) -> dict:
    """Everything `evaluate` does, as a function (the tests call it through `main`)."""
    from ..data.datasets import load_dataset
    from ..models.devices import resolve_device
    from ..models.sd import StableDiffusion
    from .evaluate import evaluate
    from .records import check_output, fingerprint_folder, hub_commit

    for flag in ("subset", "batch_size", "images_per_call", "resolution"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise ValueError(f"--{flag.replace('_', '-')} must be at least 1, got {value}.")
    if args.model and not Path(args.model).exists() and args.model.count("/") != 1:
        raise ValueError(f"--model {args.model!r} is neither an existing folder nor a hub id of the form owner/name.")
    check_output(args.output)  # before any work: a folder that cannot be created fails now, naming --output
    state = _process_state(args.device)
    per_process = state is not None and (args.device or "cuda").strip().lower() in ("cuda", "gpu")
    device = state.device if per_process else resolve_device(args.device)  # accelerate gives each process its GPU
    dataset = load_dataset(args.data, root=args.data_root)
    for line in dataset.skipped:
        print(f"skipped {line}", file=sys.stderr)
    strategy, paper_loss = parse_strategy(args.strategy, dataset.name if args.strategy.strip() == "paper" else None)
    prompt_set = _prompt_set(args, dataset)
    if prompt_set.num_classes != len(dataset.classes):
        raise ValueError(f"the prompts describe {prompt_set.num_classes} classes but the data has {len(dataset.classes)}.")
    subset = dataset.subset(args.subset, seed=args.seed)
    model = StableDiffusion.from_pretrained(args.model, prompt_set.prompts, device=device, dtype=args.dtype,
                                            resolution=args.resolution)
    local = Path(args.model).exists()
    extra = {"model_source": str(Path(args.model).resolve()) if local else args.model,
             "model_fingerprint": fingerprint_folder(args.model) if local else hub_commit(*pinned(args.model)[:2], model=model),
             "data": args.data, "data_fingerprint": dataset.fingerprint, "resolution": model.resolution}
    result = evaluate(model, subset, prompt_set, strategy, loss=args.loss or paper_loss or "l2", seed=args.seed,
                      batch_size=args.batch_size, images_per_call=args.images_per_call, progress=not args.no_progress,
                      output=args.output, overwrite=args.overwrite, manifest_extra=extra, state=state)
    return _report(result, args.output, is_main=state is None or state.is_main_process)


def run_miniature(args: argparse.Namespace) -> None:
    """`diffclf miniature train OUT` / `diffclf miniature data OUT`."""
    import shutil

    from .records import check_output

    if args.action == "data" and args.images < 1:
        raise ValueError(f"--images must be at least 1, got {args.images}.")
    out = check_output(args.out, "OUT")  # before any work: training takes minutes
    if args.action == "data":
        from ..data.miniature import TASKS, write_task

        for task in TASKS:
            print(f"{task}: {args.images} images in {write_task(out / 'data' / task, task, args.images, args.seed)}")
        return
    from ..training.miniature import MINIATURE_CONFIG, miniature_models

    config = MINIATURE_CONFIG if args.seed == MINIATURE_CONFIG.seed else replace(MINIATURE_CONFIG, seed=args.seed)
    cached = miniature_models(config, progress=not args.no_progress)
    for part in ("sd", "clip"):
        shutil.copytree(cached / part, out / part, dirs_exist_ok=True)
    shutil.copy2(cached / "training.json", out / "training.json")
    print(f"miniature Stable Diffusion in {out / 'sd'}, CLIP in {out / 'clip'} (trained once, cached in {cached})")


def _report(result: object, folder: str, is_main: bool = True) -> dict:
    summary = result.summary()
    if is_main:
        for err in summary["unreadable"]:
            print(f"unreadable: {err}", file=sys.stderr)
        missing = f"; {summary['missing']} images still without a record" if summary.get("missing") else ""
        print(f"{summary['images']} images, accuracy {summary['accuracy']:.1%}, mean NFE {summary['mean_nfe']:.0f}"
              f"{missing}; {len(summary['unreadable'])} unreadable; records in {folder}")
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    """Run a command; wrong inputs end with one line `diffclf COMMAND: error: ...` and exit status 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "merge":
            from .evaluate import merge

            _report(merge(args.folder, allow_partial=args.partial), args.folder)
        elif args.command == "miniature":
            run_miniature(args)
        else:
            run_evaluate(args)
    except (ValueError, OSError) as err:  # OSError: a missing or unreadable file, named in its message
        message = " ".join(str(err).split())
        parser.exit(2, f"{parser.prog} {args.command}: error: {message}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
