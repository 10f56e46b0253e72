"""CLIP zero-shot classification (Radford et al. 2021, §3.1), the contrastive baseline of Li et al. (2023, Table 1):
predict the class whose text embedding has the largest cosine similarity with the image embedding, with template
ensembling. Same prompts (`PromptSet`) as the diffusion classifier; `runs.evaluate_clip` records a dataset in the same
result type (`Evaluation`), so a CLIP row lines up with a diffusion row.

Needs transformers (the `sd` extra), imported inside the functions that use it: `import diffclf_lite` does not load it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..data.hub import HUB, load_error, pinned
from ..data.images import to_rgb
from ..data.prompts import PromptSet
from .devices import resolve_device, resolve_dtype
from .sd import char_tokenizer

__all__ = ["CLIP_L14", "OPENCLIP_H14", "CLIPClassifier", "ensemble_embeddings", "build_tiny_clip"]

CLIP_L14 = HUB["clip-l14"].repo_id  # CLIP ViT-L/14 (Li et al. Table 3); every hub id lives in data/hub.py
OPENCLIP_H14 = HUB["openclip-h14"].repo_id  # OpenCLIP ViT-H/14 (Li et al. Tables 1 and 3)


def _normalise(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)


def _pooled(out: Any) -> torch.Tensor:
    """transformers 4.x returns the projected features, 5.x a model output whose pooler_output holds them."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


def ensemble_embeddings(text_embeds: torch.Tensor, prompt_class: Sequence[int], num_classes: int) -> torch.Tensor:
    """Template ensembling (Radford et al. §3.1.4): per class, the mean of its L2-normalised prompt embeddings,
    renormalised. text_embeds (P, D) -> (C, D) unit vectors."""
    if text_embeds.ndim != 2 or len(text_embeds) != len(prompt_class):
        raise ValueError(f"expected one embedding row per prompt: got {tuple(text_embeds.shape)} for {len(prompt_class)} prompts.")
    cls = torch.as_tensor(list(prompt_class), dtype=torch.long, device=text_embeds.device)
    if len(cls) == 0 or int(cls.min()) < 0 or int(cls.max()) >= num_classes:
        raise ValueError(f"prompt classes must lie in 0..{num_classes - 1}, got {sorted(set(cls.tolist()))[:5]}.")
    missing = sorted(set(range(num_classes)) - set(cls.tolist()))
    if missing:
        raise ValueError(f"classes {missing[:5]} have no prompt: every class needs at least one.")
    onehot = torch.zeros(num_classes, len(cls), dtype=text_embeds.dtype, device=text_embeds.device)
    onehot[cls, torch.arange(len(cls), device=cls.device)] = 1.0
    mean = onehot @ _normalise(text_embeds) / onehot.sum(1, keepdim=True)  # (C, D)
    return _normalise(mean)


class CLIPClassifier:
    """A transformers CLIPModel with its processor, on an explicit device and dtype; embeddings come back L2-normalised
    in float32 on the CPU."""

    def __init__(self, model: Any, processor: Any, *, device: str | torch.device | None = None,
                 dtype: str | torch.dtype | None = None, name: str = "CLIP") -> None:
        self.device = resolve_device(device)  # a clear error when the named GPU does not exist
        self.dtype = resolve_dtype(dtype, self.device)
        self.model = model.to(self.device, self.dtype).eval().requires_grad_(False)
        self.processor, self.name = processor, name
        self.tokenizer = processor.tokenizer

    @classmethod
    def from_pretrained(cls, model: str | Path = CLIP_L14, *, device: str | torch.device | None = None,
                        dtype: str | torch.dtype | None = None, revision: str | None = None,
                        local_files_only: bool = False, name: str | None = None) -> "CLIPClassifier":
        """CLIPModel + CLIPProcessor from a hub id (e.g. CLIP_L14, OPENCLIP_H14) or a folder written by save_pretrained."""
        from transformers import CLIPModel, CLIPProcessor

        dev = resolve_device(device)
        dt = resolve_dtype(dtype, dev)
        src, revision, _ = pinned(model, revision)
        kw = {"revision": revision, "local_files_only": local_files_only}
        try:
            net = CLIPModel.from_pretrained(src, **kw)  # cast in __init__ (`dtype=` is transformers>=4.56)
            processor = CLIPProcessor.from_pretrained(src, **kw)
        except (OSError, ValueError, TypeError) as err:
            raise load_error("clip", src, err, "config.json, the weights and the processor files (what "
                             "CLIPModel.save_pretrained and CLIPProcessor.save_pretrained write)", revision) from err
        return cls(net, processor, device=dev, dtype=dt, name=name or Path(str(model)).name)

    @torch.inference_mode()
    def embed_text(self, prompts: Sequence[str], batch_size: int = 256) -> torch.Tensor:
        """Unit-norm text embeddings (P, D) of the prompts (padded to the longest, truncated at the model's length)."""
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        if not prompts or any(not isinstance(p, str) or not p.strip() for p in prompts):
            raise ValueError("prompts must be a non-empty list of non-empty strings.")
        out = []
        for s in range(0, len(prompts), batch_size):
            tok = self.tokenizer(prompts[s:s + batch_size], padding=True, truncation=True, return_tensors="pt").to(self.device)
            out.append(_pooled(self.model.get_text_features(input_ids=tok.input_ids, attention_mask=tok.attention_mask)).float())
        return _normalise(torch.cat(out)).cpu()

    def preprocess(self, images: Any) -> torch.Tensor:
        """Any PIL mode, array or tensor image (or a list of them) -> CLIPImageProcessor's pixel_values (N, 3, R, R)."""
        from PIL import Image

        if isinstance(images, (Image.Image, np.ndarray)) or (isinstance(images, torch.Tensor) and images.ndim == 3):
            images = [images]
        if isinstance(images, (str, bytes)) or not hasattr(images, "__len__") or len(images) == 0:
            raise ValueError(f"expected a non-empty list of images (PIL, numpy arrays or tensors), got {type(images).__name__}.")
        rgb = [to_rgb(im) for im in images]  # RGB first: the processor itself handles few of PIL's modes
        return self.processor.image_processor(images=rgb, return_tensors="pt").pixel_values

    @torch.inference_mode()
    def embed_images(self, images: Any, batch_size: int = 64) -> torch.Tensor:
        """Unit-norm image embeddings (N, D)."""
        pixels = self.preprocess(images)
        out = [_pooled(self.model.get_image_features(pixel_values=pixels[s:s + batch_size].to(self.device, self.dtype))).float()
               for s in range(0, len(pixels), batch_size)]
        return _normalise(torch.cat(out)).cpu()

    def class_embeddings(self, prompts: PromptSet) -> torch.Tensor:
        """(C, D): the prompt set's templates ensembled per class (one prompt per class: its own embedding)."""
        return ensemble_embeddings(self.embed_text(list(prompts.prompts)), prompts.prompt_class, prompts.num_classes)

    def similarity(self, images: Any, prompts: PromptSet) -> torch.Tensor:
        """Cosine similarities (N, C) between the images and the ensembled class embeddings."""
        return self.embed_images(images) @ self.class_embeddings(prompts).T


def build_tiny_clip(folder: str | Path, *, image_size: int = 32, embed_dim: int = 16, seed: int = 0) -> Path:
    """A tiny random-weight CLIPModel (2-layer text and vision towers), the offline character-level tokenizer and a
    CLIP image processor, saved with save_pretrained: loads through `CLIPClassifier.from_pretrained(folder)`."""
    from transformers import CLIPConfig, CLIPModel, CLIPProcessor

    try:  # transformers 5: the PIL processor (the default one needs torchvision); 4.x: CLIPImageProcessor is PIL-based
        from transformers import CLIPImageProcessorPil as ImageProcessor
    except ImportError:
        from transformers import CLIPImageProcessor as ImageProcessor

    folder = Path(folder)
    torch.manual_seed(seed)
    tokenizer = char_tokenizer(77)
    tower = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4}
    config = CLIPConfig(
        text_config={**tower, "vocab_size": len(tokenizer), "max_position_embeddings": 77,
                     "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
                     "pad_token_id": tokenizer.pad_token_id},
        vision_config={**tower, "image_size": image_size, "patch_size": image_size // 4}, projection_dim=embed_dim)
    image_processor = ImageProcessor(size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size})
    CLIPModel(config).save_pretrained(folder)
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    return folder
