"""Two small models trained on the same captioned scenes: a text-conditional pixel diffusion model (an EpsModel whose
conditions are captions) and a CLIP-style contrastive model (Radford et al. 2021, symmetric InfoNCE).

Both read captions with the same word-level tokenizer and the same size of CLIPTextModel, and both save with
save_pretrained (safetensors + JSON) and load back with from_pretrained.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..data.scenes import COLOURS, RELATIONS, SHAPES
from .classcond import to_model_range

__all__ = ["UNET_PRESETS", "build_tokenizer", "make_text_encoder", "make_text_unet", "CaptionDiffusion",
           "ContrastiveModel", "tokenize"]

SPECIAL = ("<pad>", "<bos>", "<eos>", "<unk>")
WORDS = ("a", "of", *RELATIONS, *COLOURS, *SHAPES)
MAX_LEN = 10  # <bos> + 8 words + <eos>

# UNet2DConditionModel sizes: cross-attention to the caption at every resolution below the first.
UNET_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(block_out_channels=(16, 32), layers_per_block=1, norm_num_groups=8, attention_head_dim=4,
                 down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                 up_block_types=("CrossAttnUpBlock2D", "UpBlock2D")),
    "small": dict(block_out_channels=(32, 64, 64), layers_per_block=1, norm_num_groups=8, attention_head_dim=4,
                  down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                  up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D")),
    "base": dict(block_out_channels=(64, 128, 128), layers_per_block=2, norm_num_groups=16, attention_head_dim=8,
                 down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                 up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D")),
}


def build_tokenizer() -> Any:
    """A word-level tokenizer over the scene vocabulary (<bos> words <eos>, padded to MAX_LEN), a transformers fast
    tokenizer so that it saves and loads like any other."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate((*SPECIAL, *WORDS))}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A <eos>",
                                                       special_tokens=[("<bos>", 1), ("<eos>", 2)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
                                   unk_token="<unk>", model_max_length=MAX_LEN)


def tokenize(tokenizer: Any, texts: Sequence[str]) -> torch.Tensor:
    """Caption strings -> token ids (N, MAX_LEN); a word outside the vocabulary is an error, not <unk>."""
    texts = [texts] if isinstance(texts, str) else list(texts)
    vocab = tokenizer.get_vocab()
    unknown = sorted({w for t in texts for w in t.split() if w not in vocab})
    if unknown:
        raise ValueError(f"words {unknown} are not in the scene vocabulary {list(WORDS)}.")
    return tokenizer(texts, padding="max_length", max_length=MAX_LEN, truncation=True, return_tensors="pt").input_ids


def make_text_encoder(vocab_size: int, width: int = 64, layers: int = 2, seed: int = 0) -> Any:
    """A tiny CLIPTextModel (causal transformer; the pooled output is the <eos> token's state)."""
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    cfg = CLIPTextConfig(vocab_size=vocab_size, hidden_size=width, intermediate_size=2 * width,
                         num_hidden_layers=layers, num_attention_heads=4, max_position_embeddings=MAX_LEN,
                         pad_token_id=0, bos_token_id=1, eos_token_id=2, projection_dim=width)
    return CLIPTextModel(cfg)


def make_text_unet(preset: str, sample_size: int, cross_attention_dim: int, seed: int = 0) -> Any:
    """A UNet2DConditionModel on RGB pixels that cross-attends to the caption's token states."""
    from diffusers import UNet2DConditionModel

    if preset not in UNET_PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(UNET_PRESETS)}.")
    torch.manual_seed(seed)
    return UNet2DConditionModel(sample_size=sample_size, in_channels=3, out_channels=3,
                                cross_attention_dim=cross_attention_dim, **UNET_PRESETS[preset])


class CaptionDiffusion:
    """A text-conditional pixel diffusion model as an EpsModel: the conditions are captions, embedded once."""

    def __init__(self, unet: Any, text_encoder: Any, tokenizer: Any, scheduler: Any, captions: Sequence[str] = (),
                 device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.unet = unet.to(self.device).eval().requires_grad_(False)
        self.text_encoder = text_encoder.to(self.device).eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.scheduler = scheduler  # a DDPMScheduler: it defines alphas_cumprod for training and classification
        self.alphas_cumprod = scheduler.alphas_cumprod.detach().double().cpu()
        self.resolution = int(unet.config.sample_size)
        self.set_captions(captions)

    @property
    def num_conditions(self) -> int:
        return len(self.captions)

    @torch.inference_mode()
    def set_captions(self, captions: Sequence[str]) -> None:
        """Make `captions` the candidate conditions: token states (P, MAX_LEN, D) computed once."""
        self.captions = [captions] if isinstance(captions, str) else list(captions)
        ids = tokenize(self.tokenizer, self.captions).to(self.device) if self.captions else None
        self._states = self.text_encoder(ids).last_hidden_state if ids is not None else None

    def encode(self, images: Any) -> torch.Tensor:
        """Pixels are the diffusion space: (N, 3, R, R) uint8 or [-1, 1] floats -> [-1, 1] float32."""
        return to_model_range(images, 3, self.resolution, torch.float32, self.device)

    def eps(self, x_t: torch.Tensor, t: torch.Tensor, cond_index: torch.Tensor) -> torch.Tensor:
        """eps_theta(x_t, t, caption[cond_index]) (Li et al. eq. 5 with a caption as c)."""
        if self._states is None:
            raise ValueError("no captions set: pass captions to from_pretrained or call set_captions([...]) first.")
        return self.unet(x_t, t, encoder_hidden_states=self._states[cond_index], return_dict=False)[0]

    def save_pretrained(self, folder: str | Path) -> Path:
        """unet/, text_encoder/ (safetensors + config), tokenizer/, scheduler/ (diffusers' pipeline layout)."""
        out = Path(folder)
        self.unet.save_pretrained(out / "unet", safe_serialization=True)
        self.text_encoder.save_pretrained(out / "text_encoder", safe_serialization=True)
        self.tokenizer.save_pretrained(out / "tokenizer")
        self.scheduler.save_pretrained(out / "scheduler")
        return out

    @classmethod
    def from_pretrained(cls, folder: str | Path, captions: Sequence[str] = (),
                        device: str | torch.device = "cpu") -> "CaptionDiffusion":
        """Load what save_pretrained wrote."""
        from diffusers import DDPMScheduler, UNet2DConditionModel
        from transformers import CLIPTextModel, PreTrainedTokenizerFast

        src = Path(folder)
        if not (src / "unet").is_dir():
            raise FileNotFoundError(f"{src} has no unet/ folder; train a model and call save_pretrained(folder) first.")
        unet = UNet2DConditionModel.from_pretrained(src / "unet")
        text = CLIPTextModel.from_pretrained(src / "text_encoder")
        tok = PreTrainedTokenizerFast.from_pretrained(src / "tokenizer")
        return cls(unet, text, tok, DDPMScheduler.from_pretrained(src / "scheduler"), captions, device)


class ContrastiveModel(nn.Module):
    """CLIP in miniature: a CNN image tower (spatial flatten, so left/right survives) and a CLIPTextModel, both
    projected to `dim` and compared by cosine similarity times a learned temperature (Radford et al. 2021)."""

    def __init__(self, vocab_size: int, width: int = 64, layers: int = 2, dim: int = 64, channels: int = 32,
                 image_size: int = 32, seed: int = 0) -> None:
        super().__init__()
        self.config = dict(vocab_size=vocab_size, width=width, layers=layers, dim=dim, channels=channels,
                           image_size=image_size, seed=seed)
        self.text = make_text_encoder(vocab_size, width, layers, seed)
        torch.manual_seed(seed)
        c = channels
        self.image = nn.Sequential(  # (N, 3, S, S) -> (N, 2c, S/8, S/8) -> (N, dim)
            nn.Conv2d(3, c, 3, padding=1), nn.GELU(),
            nn.Conv2d(c, c, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(c, 2 * c, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(2 * c, 2 * c, 3, stride=2, padding=1), nn.GELU(),
            nn.Flatten(), nn.Linear(2 * c * (image_size // 8) ** 2, dim),
        )
        self.text_proj = nn.Linear(width, dim, bias=False)
        self.tokenizer = build_tokenizer()
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def embed_images(self, images: Any) -> torch.Tensor:
        """Images (N, 3, S, S) uint8 or [-1, 1] -> unit vectors (N, dim)."""
        x = to_model_range(images, 3, self.config["image_size"], torch.float32, self.logit_scale.device)
        return F.normalize(self.image(x), dim=-1)

    def embed_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """Token ids (N, MAX_LEN) -> unit vectors (N, dim) from the <eos> state."""
        return F.normalize(self.text_proj(self.text(ids.to(self.logit_scale.device)).pooler_output), dim=-1)

    def loss(self, images: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """Symmetric InfoNCE over the batch (CLIP's loss): image i belongs with caption i."""
        logits = self.logit_scale.exp().clamp(max=100) * self.embed_images(images) @ self.embed_ids(ids).T  # (B, B)
        target = torch.arange(len(logits), device=logits.device)
        return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2

    @torch.inference_mode()
    def similarity(self, images: Any, texts: Sequence[str]) -> torch.Tensor:
        """Cosine similarity of image i with caption i: (N,) (CLIP's zero-shot score)."""
        return (self.embed_images(images) * self.embed_ids(tokenize(self.tokenizer, texts))).sum(-1)

    def save_pretrained(self, folder: str | Path) -> Path:
        """model.safetensors + config.json + tokenizer/."""
        from safetensors.torch import save_file

        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}, out / "model.safetensors")
        (out / "config.json").write_text(json.dumps(self.config, indent=2), encoding="utf-8")
        self.tokenizer.save_pretrained(out / "tokenizer")
        return out

    @classmethod
    def from_pretrained(cls, folder: str | Path, device: str | torch.device = "cpu") -> "ContrastiveModel":
        """Load what save_pretrained wrote (safetensors only: no pickles)."""
        from safetensors.torch import load_file

        src = Path(folder)
        if not (src / "model.safetensors").is_file():
            raise FileNotFoundError(f"{src} has no model.safetensors; train a model and call save_pretrained first.")
        model = cls(**json.loads((src / "config.json").read_text(encoding="utf-8")))
        model.load_state_dict(load_file(src / "model.safetensors"))
        if (src / "tokenizer").is_dir():
            from transformers import PreTrainedTokenizerFast

            model.tokenizer = PreTrainedTokenizerFast.from_pretrained(src / "tokenizer")
        return model.to(device).eval()
