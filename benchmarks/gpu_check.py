"""Does every chapter's gpu profile fit a Colab T4? Each real architecture the chapters use is built from its shipped
config (benchmarks/configs/, see SOURCES.md) with random weights, saved like a hub folder and loaded back through the
package's own loaders, then each chapter's gpu-profile code path runs end to end on a few images: fp16, memory capped
at a T4's 15 GiB (torch.cuda.set_per_process_memory_fraction). Prints and writes peak memory and seconds per image.

Speed does not depend on the weights, accuracy does: the predictions here mean nothing.

    python benchmarks/gpu_check.py --out benchmarks/results/gpu_check_<device>.json   # on a CUDA GPU
    python benchmarks/gpu_check.py --tiny                                            # anywhere: shrunken configs, CPU
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

import diffclf_lite as dc
from diffclf_lite.book.alternatives import generate_sd, load_sd_pipeline, sd_from_pipeline
from diffclf_lite.data import prompts as P
from diffclf_lite.data.winoground import diffusion_scores, load_winoground, synthetic_winoground
from diffclf_lite.models.sd import StableDiffusion, char_tokenizer, save_sd_folder

CONFIGS = Path(__file__).resolve().parent / "configs"
T4_GIB = 15.0  # a T4's 16 GB card shows about 15 GiB to PyTorch on Colab
# --tiny: the same classes, shrunk so that the whole check runs on a CPU in seconds
TINY = {
    "unet": dict(block_out_channels=[32, 64], layers_per_block=1, attention_head_dim=8, cross_attention_dim=32,
                 down_block_types=["CrossAttnDownBlock2D", "DownBlock2D"], up_block_types=["UpBlock2D", "CrossAttnUpBlock2D"],
                 sample_size=8),
    "vae": dict(block_out_channels=[8, 8, 16, 16], layers_per_block=1, norm_num_groups=8, sample_size=64),
    "text": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, projection_dim=32),
    "vision": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=32,
                   patch_size=8, projection_dim=32),
    "dit": dict(num_layers=1, num_attention_heads=2, attention_head_dim=8, sample_size=8),
}


def config(name: str, tiny: bool, shrink: str | None = None) -> dict:
    cfg = json.loads((CONFIGS / name).read_text(encoding="utf-8"))
    cfg = {k: v for k, v in cfg.items() if not k.startswith("_") and k != "architectures"}
    return {**cfg, **TINY[shrink]} if tiny and shrink else cfg


def build_sd(folder: Path, tiny: bool) -> Path:
    """SD 2 base's UNet, VAE and text encoder from their configs, random weights, saved like the hub's folder."""
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    tok = char_tokenizer(77)
    text = config("sd2-base/text_encoder/config.json", tiny, "text")
    text.update(vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    unet = config("sd2-base/unet/config.json", tiny, "unet")
    unet["cross_attention_dim"] = text["hidden_size"]
    return save_sd_folder(folder, UNet2DConditionModel(**unet), AutoencoderKL(**config("sd2-base/vae/config.json", tiny, "vae")),
                          CLIPTextModel(CLIPTextConfig(**text)), tok,
                          PNDMScheduler.from_config(config("sd2-base/scheduler/scheduler_config.json", False)))


def build_clip(name: str, tiny: bool):
    """A CLIPClassifier of the config's architecture (random weights) with CLIP's image preprocessing."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    cfg = config(name, False)
    tok = char_tokenizer(77)
    text = {**cfg.pop("text_config"), **(TINY["text"] if tiny else {}), "vocab_size": len(tok)}
    vision = {**cfg.pop("vision_config"), **(TINY["vision"] if tiny else {})}
    side = vision["image_size"]
    cfg.pop("model_type", None)
    torch.manual_seed(0)
    model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, **{**cfg, **({"projection_dim": 32} if tiny else {})}))
    proc = CLIPProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": side}, crop_size=side), tokenizer=tok)
    return model, proc


def build_dit(folder: Path, tiny: bool) -> Path:
    """DiT-XL/2 at 256 px (transformer from its config, SD's VAE architecture), saved as a DiTPipeline folder."""
    from diffusers import AutoencoderKL, DDIMScheduler, DiTPipeline, DiTTransformer2DModel

    torch.manual_seed(0)
    cfg = config("dit-xl-2-256.json", tiny, "dit")
    vae = config("sd2-base/vae/config.json", tiny, "vae")
    sched = DDIMScheduler(beta_schedule="linear", num_train_timesteps=1000, clip_sample=False)  # DiT's schedule
    DiTPipeline(transformer=DiTTransformer2DModel(**cfg), vae=AutoencoderKL(**vae), scheduler=sched,
                id2label={i: f"class {i}" for i in range(cfg["num_embeds_ada_norm"])}).save_pretrained(folder)
    return folder


def images(n: int, side: int, seed: int = 0) -> list:
    """n random 4:3 photos-to-be (the preprocessing resizes and crops them as for Pets, Food, ImageNet)."""
    from PIL import Image

    g = torch.Generator().manual_seed(seed)
    h = side * 3 // 4 + side // 4
    return [Image.fromarray(torch.randint(0, 256, (h, h * 4 // 3, 3), generator=g, dtype=torch.uint8).numpy())
            for _ in range(n)]


class Meter:
    """Seconds and peak device memory of each chapter's run."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.rows = device, []

    def run(self, chapter: str, what: str, n_images: int, fn) -> None:
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        extra = fn() or {}
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        sec = time.perf_counter() - t0
        peak = torch.cuda.max_memory_allocated() / 2**30 if self.device.type == "cuda" else None
        row = {"chapter": chapter, "what": what, "images": n_images, "seconds": sec, "s/image": sec / n_images,
               "peak GiB": peak, **extra}
        self.rows.append(row)
        print(f"{chapter:24s} {what:52s} {n_images:3d} images {sec / n_images:8.2f} s/image "
              f"peak {'n/a (CPU)' if peak is None else f'{peak:.2f} GiB'}" + "".join(f" {k}={v}" for k, v in extra.items()))


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tiny", action="store_true", help="shrunken configs on the CPU (automatic without CUDA)")
    p.add_argument("--images", type=int, default=None, help="images per chapter (default: 2, 1 with --tiny)")
    p.add_argument("--out", default=None, help="write the rows as JSON here")
    args = p.parse_args(argv)
    import diffusers

    diffusers.utils.logging.set_verbosity_error()
    cuda = torch.cuda.is_available() and not args.tiny
    device, dtype = torch.device("cuda" if cuda else "cpu"), ("fp16" if cuda else "fp32")
    tiny, n = not cuda, args.images or (2 if cuda else 1)
    if cuda:  # what a T4 would hold; a larger card refuses allocations past it
        total = torch.cuda.get_device_properties(0).total_memory / 2**30
        torch.cuda.set_per_process_memory_fraction(min(1.0, T4_GIB / total))
    meter, work = Meter(device), Path(tempfile.mkdtemp(prefix="gpu_check_"))
    sd_folder = build_sd(work / "sd2-base", tiny)
    side = 64 if tiny else 512
    cifar = P.dataset_prompts("cifar10", "paper")

    # chapter 2: SD 2 base loaded by the package, the halved paper schedule (as the chapter runs it), batch 32
    sd = StableDiffusion.from_pretrained(sd_folder, cifar.prompts, device=device, dtype=dtype, resolution=side)
    samples, keep, loss = dc.PAPER_SCHEDULES["cifar10"]
    ch2 = dc.Staged([s // 2 for s in samples], keep)
    meter.run("ch2_stable_diffusion", f"classify, {ch2}, 10 prompts", n,
              lambda: {"nfe/image": int(dc.classify(sd, images(n, side), ch2, loss=loss, batch_size=32).nfe.float().mean())})

    # chapter 4: the same SD on Winoground (30 timesteps per caption-image pair), CLIP L/14 and OpenCLIP H/14
    wino = load_winoground(synthetic_winoground(work / "wino", n_examples=n, size=side))
    meter.run("ch4_clip_vs_diffusion", "Winoground diffusion scores, 30 timesteps", n,
              lambda: {"scores": list(diffusion_scores(sd, wino, 30, batch_size=32, examples_per_call=1).shape)})
    for name, file in (("CLIP ViT-L/14", "clip-l14.json"), ("OpenCLIP ViT-H/14", "openclip-h14.json")):
        model, proc = build_clip(file, tiny)
        clip = dc.CLIPClassifier(model, proc, device=device, dtype=dtype, name=name)
        imgs = images(32, side)
        meter.run("ch4_clip_vs_diffusion", f"{name}: embed 32 images + 10 prompts", 32,
                  lambda: {"logits": list((clip.embed_images(imgs) @ clip.embed_text(cifar.prompts).T).shape)})
        del clip, model
    del sd

    # chapter 3b: the SD pipeline generates (25 steps, guidance 7.5), then the classifier scores the generated images
    pipe = load_sd_pipeline(sd_folder, device=device, dtype=dtype)
    two = P.class_prompts(cifar.class_names[:2], "a photo of a {}.")
    gen: dict = {}
    meter.run("ch3b_alternatives", "generate 1 image per class, 25 steps, guidance 7.5", 2,
              lambda: gen.update(x=generate_sd(pipe, two, 1, num_inference_steps=25, guidance_scale=7.5,
                                               resolution=side)[0]))
    model = sd_from_pipeline(pipe, cifar.prompts)
    staged = dc.Staged((25, 250), (5, 1))
    meter.run("ch3b_alternatives", f"classify generated images, {staged}", 2,
              lambda: {"nfe/image": int(dc.classify(model, gen["x"], staged, loss="l1", batch_size=32).nfe.float().mean())})
    del pipe, model

    # chapter 3: DiT-XL/2 on 10 ImageNet classes, Staged((25, 250), (3, 1)), batch 64 under fp16 autocast
    dit = dc.DiTClassifier.from_pretrained(build_dit(work / "dit", tiny), device=device,
                                           dtype=torch.float16 if cuda else torch.float32, class_ids=list(range(10)))
    x = torch.rand(n, 3, dit.resolution, dit.resolution, generator=torch.Generator().manual_seed(0)) * 2 - 1
    dit_strategy = dc.Staged((25, 250), (3, 1))
    meter.run("ch3_class_conditional", f"DiT classify 10 classes, {dit_strategy}", n,
              lambda: {"nfe/image": int(dc.classify(dit, x, dit_strategy, batch_size=64,
                                                    autocast_dtype=torch.float16 if cuda else None).nfe.float().mean())})
    name = torch.cuda.get_device_name(0) if cuda else "cpu"
    out = {"device": name, "tiny": tiny, "dtype": dtype, "memory_cap_gib": T4_GIB if cuda else None, "rows": meter.rows}
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(out, indent=2), encoding="utf-8")
    return out


if __name__ == "__main__":
    main()
