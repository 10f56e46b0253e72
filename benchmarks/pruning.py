"""Accuracy, network evaluations (NFE) and the empirical error rate of each strategy, on problems whose figures do
not depend on the machine.

    python benchmarks/pruning.py                                  # Gaussian mixtures with 10, 100 and 1000 classes
    python benchmarks/pruning.py --problem gmm10 --seeds 0,1,2 --json benchmarks/results/pruning.json
    python benchmarks/pruning.py --problem digits --cache ~/pruning-cache   # 30 test digits on the 500-step grid
    python benchmarks/pruning.py --problem miniature --cache ~/pruning-cache  # the miniature text-to-image model

For every problem: exhaustive evaluation, the paper's staged schedule for that number of classes (on a grid of G
timesteps other than the paper's, its shape scaled: (G/10, G) keep (5, 1)), Clark & Jaini's procedure as they run
it (their weighting w_t = exp(-7t), 20 rounds, p < 2e-3, at most 2,000 rounds) and their test on uniform weights,
our racing and profiled racing, Kim & Nelson's procedure KN, and elimination by confidence sequences (exact, and with
a zero-shot indifference zone at several alpha), all on the same points and the same seeded (t, eps) plan. The
confidence sequences' zone is KAPPA standard errors of exhaustive scoring's own estimate of each gap on each image
(AnytimeElimination.zero_shot); "one zone" uses a single zone for all images instead, KAPPA standard errors of the
gap on a typical unlabelled point (`zero_shot_delta`). Exact selection without "drawn" and the zone row marked "in
order" visit the grid in a random order; the other confidence-sequence rows draw it by importance sampling from a
proposal fitted to unlabelled points (`zero_shot_proposal`). The exhaustive errors of every (image, timestep, class)
are computed once and the other strategies are replayed on them (`diffclf_lite.engine.scoring.replay`: the same
decisions and NFE as a live run); with `--cache` they are saved chunk by chunk, so an interrupted run resumes where
it stopped. Profiled racing's profile and temperature come from 30 labelled calibration points (digits: three
training digits per class; the miniature: one); KN's zone, the one zone and the proposal from the same points
without their labels.
`miniature` is the miniature text-conditional latent Stable Diffusion the book trains (its autoencoder, UNet and CLIP
text encoder; `diffclf miniature train`) on its held-out digit task: 10 prompts ("a seven", ...), test handwriting,
every class equally often, on the paper's 500-step grid (CIFAR-10's staged schedule, 50 then 500 timesteps).
Reported: the accuracy change against exhaustive in whole images and points, on mixtures also the exact expected
accuracy (the mean exact posterior probability of the class chosen: no label noise), NFE against the staged schedule,
and the error rate: the fraction of images whose chosen class's grid mean (with the strategy's weighting) is not
within the strategy's zone of the least one, which exhaustive scoring on the same grid chooses, beside the nominal
alpha; a zone of kappa standard errors is checked with the standard error computed exactly on the whole grid.
`--json PATH` writes one flat record per (problem, seed, strategy); `--only` runs some strategies (for more seeds).
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
from pathlib import Path

import torch

import diffclf_lite as dc
from diffclf_lite.engine.scoring import replay
from diffclf_lite.engine.strategies import ProfiledRacing, timestep_profile, zero_shot_delta
from diffclf_lite.runs.evaluate import _fingerprint
from diffclf_lite.runs.records import atomic_write_bytes

# problem -> (classes, separation, timestep grid, the paper's schedule used for that many classes)
PROBLEMS = {"gmm10": (10, 1.0, 500, "cifar10"), "gmm100": (100, 1.5, 500, "food101"),
            "gmm1000": (1000, 2.0, 1000, "imagenet"), "digits": (10, None, 500, "cifar10"),
            "miniature": (10, None, 500, "cifar10")}
TOLERANCE = 0.25  # profiled racing's indifference zone, in fitted temperatures
KAPPA = 3.0  # the zero-shot indifference zone, in standard errors of exhaustive scoring's own estimate
ALPHAS = (0.01, 0.05, 0.1)  # error probabilities per image of the confidence sequences; one is recommended
RECOMMENDED = "confidence sequences, zone, alpha 0.1"
# enough points that the empirical error rate of each alpha is measured on >= 10,000 images (10 classes); fewer where
# the classes make exhaustive scoring expensive on a CPU; digits: 3 per class keep the 500-step grid to minutes
# miniature: 10 test images per class keep its 500-step grid (500,000 evaluations) to minutes on a CPU
DEFAULT_POINTS = {"gmm10": 10000, "gmm100": 500, "gmm1000": 200, "digits": 30, "miniature": 100}


def strategies(grid: int, schedule: str, calibration: torch.Tensor, labels: torch.Tensor,
               weights: torch.Tensor) -> dict[str, tuple]:
    """The contenders on a grid of `grid` timesteps, each as (strategy, weighting, nominal alpha, delta, kappa): the
    weighting the strategy scores with (Clark & Jaini's own, else uniform), and the level at which it claims to
    decide as exhaustive scoring would, or within its zone max(delta, kappa standard errors of that gap) of it (None
    for schedules that claim no level; for the t-test eliminations their per-test p threshold, the only level they
    state). The paper's schedule is scaled to the grid; profiled racing's profile and temperature come from labelled
    calibration points, Kim & Nelson's zone and the proposal from the same points without their labels."""
    n_samples, to_keep, _ = dc.PAPER_SCHEDULES[schedule]
    n_samples = [n * grid // max(n_samples) for n in n_samples]
    try:
        zone = ProfiledRacing.calibrated(calibration, labels, weights, TOLERANCE)
    except ValueError as err:  # e.g. a barely trained model: nothing to fit a temperature on
        print(f"profiled racing with a zone left out: {err}")
        zone = None
    out = {"exhaustive": (dc.Exhaustive(grid), "uniform", 0.0, 0.0, 0.0),
           f"staged ({schedule})": (dc.Staged(n_samples, to_keep), "uniform", None, 0.0, 0.0),
           "Clark & Jaini (their w_t)": (dc.SuccessiveElimination(grid, max_rounds=min(2000, grid)), "clark_jaini",
                                         2e-3, 0.0, 0.0),
           "successive elimination (C&J)": (dc.SuccessiveElimination(grid), "uniform", 2e-3, 0.0, 0.0),
           "racing (ours)": (dc.Racing(grid), "uniform", 2e-3, 0.0, 0.0),
           "profiled racing (ours)": (ProfiledRacing(grid, timestep_profile(calibration)), "uniform", 5e-4, 0.0, 0.0),
           }
    if zone is not None:
        out["profiled racing, zone (ours)"] = (zone, "uniform", 5e-4, zone.indifference, 0.0)
    kn = dc.KimNelson.zero_shot(calibration, weights, KAPPA, alpha=0.05)
    out["Kim & Nelson, alpha 0.05"] = (kn, "uniform", 0.05, kn.delta, 0.0)
    out["confidence sequences, alpha 0.05"] = (dc.AnytimeElimination(grid, alpha=0.05), "uniform", 0.05, 0.0, 0.0)
    proposal = dc.zero_shot_proposal(calibration, weights)
    out["confidence sequences, drawn, alpha 0.05"] = (dc.AnytimeElimination(grid, alpha=0.05, proposal=proposal),
                                                      "uniform", 0.05, 0.0, 0.0)
    cs = dc.AnytimeElimination.zero_shot(calibration, weights, KAPPA, alpha=0.05, proposal=None)
    out["confidence sequences, zone, in order, 0.05"] = (cs, "uniform", 0.05, 0.0, KAPPA)
    one = zero_shot_delta(calibration, weights, KAPPA)
    out["confidence sequences, one zone, alpha 0.05"] = (dc.AnytimeElimination(grid, one, 0.05, proposal=proposal),
                                                         "uniform", 0.05, one, 0.0)
    for alpha in ALPHAS:
        cs = dc.AnytimeElimination.zero_shot(calibration, weights, KAPPA, alpha=alpha)
        out[f"confidence sequences, zone, alpha {alpha}"] = (cs, "uniform", alpha, 0.0, KAPPA)
    return out


def exhaustive_errors(model, x: torch.Tensor, grid: int, seed: int, chunk: int, batch_size: int,
                      cache: Path | None = None, key: str = ""):
    """Errors (N, G, C) of every (image, timestep, class) on the seeded plan, and the plan's weights (G,).

    With `cache`, each chunk of points is saved as soon as it is done (written to a temporary file, then renamed)
    and found again by a later run with the same settings: an interrupted run loses at most one chunk of work.
    """
    errors, weights = [], None
    for i in range(0, len(x), chunk):
        part = x[i : i + chunk]
        path = None
        if cache is not None:
            digest = hashlib.sha256(part.double().numpy().tobytes()).hexdigest()[:12]
            path = cache / f"{key}-grid{grid}-seed{seed}-{i}-{i + len(part)}-{digest}.pt"
        if path is not None and path.is_file():
            saved = torch.load(path, weights_only=True)
        else:
            r = dc.classify(model, part, dc.Exhaustive(grid), seed=seed, batch_size=batch_size)
            saved = {"errors": r.errors, "weights": r.weights}
            if path is not None:  # a temporary file, renamed into place only when complete
                buffer = io.BytesIO()
                torch.save(saved, buffer)
                atomic_write_bytes(path, buffer.getvalue())
        errors.append(saved["errors"])
        weights = saved["weights"]
    return torch.cat(errors), weights


def gmm_problem(name: str, points: int, seed: int):
    """A Gaussian mixture, `points` test points, 30 calibration points (every class as far as 30 go), the exact
    Bayes accuracy, and a name for the cache."""
    classes, separation, _, _ = PROBLEMS[name]
    gmm = dc.GaussianMixture.random(classes, 8, separation=separation, class_specific_variance=True, seed=seed)
    x, y = gmm.sample(max(1, points // classes), seed=seed + 1)
    if len(x) > points:  # keep `points` points, every class as evenly as possible
        keep = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:points]
        x, y = x[keep], y[keep]
    x_cal, y_cal = gmm.sample(max(1, 30 // classes), seed=seed + 100)
    bayes = (gmm.log_prob(x).argmax(1) == y).double().mean().item()
    return gmm, x, y, x_cal[:30], y_cal[:30], bayes, f"{name}-seed{seed}"


def digits_problem(points: int, checkpoint: str | None):
    """Chapter 3's digits model, the first points // 10 test digits of every class, three training digits per class
    as calibration points, and a cache name: the checkpoint's folder name and a hash of its weights."""
    from diffclf_lite.data.digits import first_per_class, load_digits_split
    from diffclf_lite.training import digits_checkpoint

    folder = Path(checkpoint or digits_checkpoint())
    model = dc.ClassConditionalUNet.from_pretrained(folder)
    split = load_digits_split()
    test = first_per_class(split.y_test, max(1, points // 10))
    cal = first_per_class(split.y_train, 3)
    key = f"{folder.name}-{_fingerprint(model.unet.state_dict())[:12]}"
    return model, split.x_test[test], split.y_test[test], split.x_train[cal], split.y_train[cal], float("nan"), key


def miniature_problem(points: int, checkpoint: str | None):
    """The miniature text-conditional Stable Diffusion (the book's, trained once per machine, or the folder given)
    with the digit task's 10 prompts, its first points // 10 held-out test images of every class (as chapter 2 and
    benchmarks/miniature.py draw them), one training-handwriting image per class as calibration points, and a
    cache name: the folder's name and a hash of the UNet's weights."""
    from diffclf_lite.data import miniature as world
    from diffclf_lite.models.sd import StableDiffusion
    from diffclf_lite.training.miniature import miniature_models

    folder = Path(checkpoint) if checkpoint else miniature_models(progress=False)
    model = StableDiffusion.from_pretrained(folder / "sd", world.task_prompts("digit", "a")[1])
    images, labels = world.task_set("digit", 10 * max(1, points // 10))
    cal = world.make_singles(10, "train", seed=1, balance="digit")  # the network is slow: one per class
    cal_labels = torch.tensor([it.objects[0][1] for it in cal.items])
    key = f"miniature-{folder.name}-{_fingerprint(model.unet.state_dict())[:12]}"
    return model, images.float() / 127.5 - 1, labels, cal.images.float() / 127.5 - 1, cal_labels, float("nan"), key


def ece(mean_errors: torch.Tensor, labels: torch.Tensor) -> float:
    """Cross-fitted ECE, or NaN (printed as such) when the errors carry no signal to fit a temperature on."""
    try:
        return dc.cross_fitted_ece(mean_errors, labels)
    except ValueError as err:
        print(f"ECE not computable ({err})")
        return float("nan")


def run_problem(name: str, points: int, seed: int, chunk: int, grid: int | None = None,
                checkpoint: str | None = None, cache: Path | None = None, only: list[str] | None = None) -> list[dict]:
    classes, _, default_grid, schedule = PROBLEMS[name]
    grid = grid or default_grid
    if name == "digits":
        model, x, y, x_cal, y_cal, bayes, key = digits_problem(points, checkpoint)
    elif name == "miniature":
        model, x, y, x_cal, y_cal, bayes, key = miniature_problem(points, checkpoint)
    else:
        model, x, y, x_cal, y_cal, bayes, key = gmm_problem(name, points, seed)
    batch = 65536 if name.startswith("gmm") else 1000
    calibration = exhaustive_errors(model, x_cal, grid, seed + 100, chunk, batch, cache, f"{key}-cal")[0]
    errors, weights = exhaustive_errors(model, x, grid, seed, chunk, batch, cache, f"{key}-n{len(x)}")
    t = dc.timestep_grid(grid, len(model.alphas_cumprod))
    plan_weights = {"uniform": weights, "clark_jaini": dc.timestep_weights(model.alphas_cumprod, "clark_jaini")[t]}
    rows = []
    contenders = strategies(grid, schedule, calibration, y_cal, weights)
    for i, (label, (strategy, weighting, alpha, delta, kappa)) in enumerate(contenders.items()):
        if only and i >= 2 and not any(part in label for part in only):  # exhaustive and staged: the baselines
            continue
        w = plan_weights[weighting]
        r = replay(errors, strategy, w)
        wrong = int(dc.outside_zone(errors, w, r.prediction, delta, kappa).sum())  # exhaustive: the same weights
        nfe = r.nfe.double()
        exact = model.expected_accuracy(x, r.prediction) if name.startswith("gmm") else float("nan")
        rows.append({"problem": name, "seed": seed, "classes": classes, "grid": grid, "strategy": label, "points": len(y),
                     "correct": int((r.prediction == y).sum()), "accuracy": r.accuracy(y), "exact": exact,
                     "bayes": bayes, "nfe_mean": nfe.mean().item(), "nfe_p95": nfe.quantile(0.95).item(),
                     "ece": ece(r.mean_errors, y), "alpha": alpha, "delta": delta, "kappa": kappa, "wrong": wrong,
                     "error_rate": wrong / len(y)})
    exhaustive, staged = rows[0], rows[1]
    for r in rows:
        r["delta_images"] = r["correct"] - exhaustive["correct"]  # whole images: no float round-off in the targets
        r["delta_pts"] = 100 * r["delta_images"] / r["points"]
        r["delta_exact"] = 100 * (r["exact"] - exhaustive["exact"])
        r["nfe_vs_staged"] = r["nfe_mean"] / staged["nfe_mean"]
    return rows


def within_half_point(images: int, points: int) -> bool:
    """Accuracy change of `images` whole images out of `points` is at least -0.5 points, in integers."""
    return 200 * images >= -points


def records(rows: list[dict]) -> list[dict]:
    """The flat JSON records, one per (problem, seed, strategy); NaN becomes null."""
    def clean(v):
        return None if isinstance(v, float) and v != v else v
    return [{"problem": r["problem"], "seed": r["seed"], "strategy": r["strategy"], "nfe_ratio": r["nfe_vs_staged"],
             "accuracy_change_images": r["delta_images"], "accuracy_change_points": r["delta_pts"],
             "exact_accuracy_change": clean(r["delta_exact"]), "alpha": r["alpha"], "delta": r["delta"],
             "kappa": r["kappa"], "error_rate": r["error_rate"], "recommended": r["strategy"] == RECOMMENDED,
             "points": r["points"], "grid": r["grid"], "classes": r["classes"], "nfe_mean": r["nfe_mean"],
             "accuracy": r["accuracy"]}
            for r in rows]


def report(rows: list[dict]) -> None:
    """Print the table, the guarantee's check (error rate beside alpha) and the issue's targets."""
    head = (f"{'problem':9s} {'seed':>4s} {'grid':>5s} {'strategy':42s} {'acc':>6s} {'d img':>5s} {'d pts':>6s} "
            f"{'d ex':>6s} {'NFE mean':>9s} {'/staged':>8s} {'alpha':>6s} {'err rate':>8s}")
    print(head + "\n" + "-" * len(head))
    for r in rows:
        exact = f"{r['delta_exact']:+6.2f}" if r["exact"] == r["exact"] else f"{'-':>6s}"
        alpha = f"{r['alpha']:6.3g}" if r["alpha"] is not None else f"{'-':>6s}"
        print(f"{r['problem']:9s} {r['seed']:4d} {r['grid']:5d} {r['strategy']:42s} {r['accuracy']:6.3f} "
              f"{r['delta_images']:+5d} {r['delta_pts']:+6.2f} {exact} {r['nfe_mean']:9.0f} "
              f"{r['nfe_vs_staged']:8.3f} {alpha} {r['error_rate']:8.4f}")
    print("\nError rate beside the nominal level, pooled over seeds (images not within the zone of exhaustive's "
          "choice):")
    for problem in dict.fromkeys(r["problem"] for r in rows):
        for label in dict.fromkeys(r["strategy"] for r in rows):
            mine = [r for r in rows if r["problem"] == problem and r["strategy"] == label and r["alpha"]]
            if mine:
                n, wrong = sum(r["points"] for r in mine), sum(r["wrong"] for r in mine)
                verdict = "within" if wrong / n <= mine[0]["alpha"] else "VIOLATES"
                print(f"  {problem:9s} {label:42s} {wrong:6d} of {n:6d} = {wrong / n:.4f}  alpha {mine[0]['alpha']:.3g}"
                      f" -> {verdict}")
    print(f"\nTargets (issue 19) for {RECOMMENDED}: <= 1/10 of the staged NFE on every 10-class mixture seed, within "
          "0.5 points (whole images) of exhaustive, error rate <= alpha; moonshot 1/20.")
    for r in (r for r in rows if r["strategy"] == RECOMMENDED):
        ok = within_half_point(r["delta_images"], r["points"])
        print(f"  {r['problem']} seed {r['seed']}: {r['delta_images']:+d} images ({r['delta_pts']:+.2f} pts, "
              f"{'within' if ok else 'NOT within'} 0.5) at {r['nfe_vs_staged']:.3f} x staged NFE "
              f"({'met' if r['nfe_vs_staged'] <= 0.1 else 'NOT met'}; 1/20: "
              f"{'met' if r['nfe_vs_staged'] <= 0.05 else 'not met'}), error rate {r['error_rate']:.4f} "
              f"(alpha {r['alpha']})")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--problems", "--problem", default="gmm10,gmm100,gmm1000",
                    help=f"comma-separated problems from {', '.join(PROBLEMS)} (default: the three mixtures)")
    ap.add_argument("--points", type=int, default=None,
                    help="test points per problem (default: 10,000 / 500 / 200 for 10 / 100 / 1000 mixture classes, 30 "
                         "test digits, 100 miniature test images)")
    ap.add_argument("--seeds", "--seed", default="0",
                    help="comma-separated seeds of the mixture, its points and the plan (digits: of the plan); default 0")
    ap.add_argument("--grid", type=int, default=None, help="timestep grid (default: 500/500/1000, digits 50)")
    ap.add_argument("--checkpoint", default=None, help="digits checkpoint folder (default: chapter 3's, cached), or "
                    "for miniature a folder holding sd/ (default: the book's miniature, cached)")
    ap.add_argument("--chunk", type=int, default=50, help="points classified together (memory: chunk x grid x classes)")
    ap.add_argument("--json", type=Path, default=None, help="write the flat records (one per problem, seed, strategy) here")
    ap.add_argument("--only", action="append", default=None, help="part of a strategy name, repeatable: run only the "
                    "strategies that contain one (and exhaustive and staged, the baselines), e.g. --only 'zone, alpha'")
    ap.add_argument("--cache", type=Path, default=None,
                    help="folder that keeps the exhaustive errors chunk by chunk, so a rerun or an interrupted run resumes")
    args = ap.parse_args(argv)
    try:
        seeds = [int(v) for v in args.seeds.split(",") if v.strip()]
    except ValueError:
        ap.error(f"--seeds takes comma-separated integers such as 0,1,2, got {args.seeds!r}")
    names = [p.strip() for p in args.problems.split(",") if p.strip()]
    unknown = [p for p in names if p not in PROBLEMS]
    if unknown:
        ap.error(f"unknown problem(s) {unknown}; choose from {list(PROBLEMS)}")
    if (args.points is not None and args.points < 4) or args.chunk < 1 or (args.grid is not None and args.grid < 20):
        ap.error("--points must be at least 4 (the ECE fits a temperature on each half), --chunk at least 1 and "
                 "--grid at least 20 (Clark & Jaini test after 20 rounds, one timestep each)")
    if not seeds:
        ap.error("--seeds needs at least one seed")
    for name in names:  # the paper's schedule, scaled to the grid, needs at least one timestep in its first stage
        n_samples = dc.PAPER_SCHEDULES[PROBLEMS[name][3]][0]
        grid = args.grid or PROBLEMS[name][2]
        if grid * min(n_samples) // max(n_samples) < 1:
            ap.error(f"--grid {grid} is too coarse for {name}'s staged schedule {n_samples}: its first stage would get "
                     f"no timestep; use --grid {-(-max(n_samples) // min(n_samples))} or more")
    only = args.only
    if only is not None and not all(v.strip() for v in only):
        ap.error("--only needs a part of a strategy name, e.g. --only 'zone, alpha'")
    if args.cache is not None:
        args.cache = args.cache.expanduser()
        args.cache.mkdir(parents=True, exist_ok=True)
    rows = []
    for seed in seeds:
        for name in names:
            points = args.points or DEFAULT_POINTS[name]
            rows += run_problem(name, points, seed, args.chunk, args.grid, args.checkpoint, args.cache, only)
    report(rows)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(args.json, (json.dumps(records(rows), indent=1) + "\n").encode())


if __name__ == "__main__":
    main()
