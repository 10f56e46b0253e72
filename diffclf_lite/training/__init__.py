"""Training recipes for the small models the book trains on a CPU, and a per-machine cache of their checkpoints.

- `ddpm`: class-conditional DDPM training (Ho et al. 2020, Alg. 1) of a diffusers UNet2DModel.
- `digits`: chapter 3's digits model, trained once per machine (`digits_checkpoint`).
- `miniature`: the miniature Stable Diffusion and CLIP (chapters 2 and 4), trained once per machine
  (`miniature_models`).
"""
from .ddpm import MODEL_PRESETS, TrainConfig, TrainResult, make_scheduler, make_unet, save_checkpoint, train
from .digits import DIGITS_CONFIG, cache_dir, digits_checkpoint, digits_checkpoint_path, train_digits_model
from .miniature import MINIATURE_CONFIG, MINIATURE_SMOKE, MiniatureConfig, miniature_models, train_miniature

__all__ = ["TrainConfig", "TrainResult", "MODEL_PRESETS", "make_unet", "make_scheduler", "train", "save_checkpoint",
           "DIGITS_CONFIG", "train_digits_model", "digits_checkpoint", "digits_checkpoint_path", "cache_dir",
           "MiniatureConfig", "MINIATURE_CONFIG", "MINIATURE_SMOKE", "train_miniature", "miniature_models"]
