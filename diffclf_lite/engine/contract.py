"""The one model contract every adapter implements (Stable Diffusion, class-conditional nets, Gaussian mixtures)."""
from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch

__all__ = ["EpsModel", "check_model"]


@runtime_checkable
class EpsModel(Protocol):
    """An eps-prediction model with a fixed list of candidate conditions prepared once up front.

    - `alphas_cumprod`: (T,) float tensor, abar_t of the training schedule; index i is timestep t = i
      (the diffusers convention, so `t` passed to `eps` indexes this tensor directly).
    - `num_conditions`: how many candidate conditions (class labels or prompts) `cond_index` may pick from.
    - `device`: where `eps` wants its inputs.
    - `encode(images) -> x0`: images to the space the diffusion runs in (VAE latents, or pixels), (N, *shape).
    - `eps(x_t, t, cond_index) -> eps_hat`: x_t (B, *shape), t (B,) long, cond_index (B,) long -> (B, *shape).
    """

    alphas_cumprod: torch.Tensor
    num_conditions: int
    device: torch.device

    def encode(self, images: Any) -> torch.Tensor: ...

    def eps(self, x_t: torch.Tensor, t: torch.Tensor, cond_index: torch.Tensor) -> torch.Tensor: ...


def check_model(model: Any) -> None:
    """Raise a ValueError that names what is missing when `model` does not follow the EpsModel contract."""
    missing = [name for name in ("alphas_cumprod", "num_conditions", "device", "encode", "eps") if not hasattr(model, name)]
    if missing:
        raise ValueError(
            f"{type(model).__name__} does not follow the EpsModel contract: missing {', '.join(missing)}. "
            "See diffclf_lite.engine.contract.EpsModel for what an adapter must provide."
        )
    abar = model.alphas_cumprod
    if not isinstance(abar, torch.Tensor) or abar.ndim != 1 or abar.numel() < 2:
        raise ValueError("model.alphas_cumprod must be a 1-D tensor with one entry per training timestep.")
    if not bool(((abar > 0) & (abar < 1)).all()):
        raise ValueError("model.alphas_cumprod must lie strictly between 0 and 1.")
    if int(model.num_conditions) < 1:
        raise ValueError(f"model.num_conditions must be at least 1, got {model.num_conditions}.")
