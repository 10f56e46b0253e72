"""The one model contract every adapter implements (Stable Diffusion, class-conditional nets, Gaussian mixtures)."""
from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch

__all__ = ["EpsModel", "check_model", "check_encoded", "check_eps_output"]


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


def _same_device(a: torch.device, b: torch.device) -> bool:
    """cuda and cuda:0 are the same place; cuda:0 and cuda:1 are not."""
    return a.type == b.type and (a.index is None or b.index is None or a.index == b.index)


def _check_tensor(model: Any, what: str, out: Any, shape: tuple | None, device: torch.device | None) -> None:
    name = f"{type(model).__name__}.{what}"
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"{name} must return a torch.Tensor, got {type(out).__name__}.")
    if not out.is_floating_point():
        raise TypeError(f"{name} must return a floating-point tensor, got dtype {out.dtype}.")
    if shape is not None and tuple(out.shape) != shape:
        raise ValueError(f"{name} returned shape {tuple(out.shape)}; expected {shape}, one entry per input "
                         "(nothing is broadcast: a wrong shape would score every pair against the wrong prediction).")
    if device is not None and not _same_device(out.device, torch.device(device)):
        raise ValueError(f"{name} returned a tensor on {out.device}; expected it on {device}.")


def check_encoded(model: Any, x0: Any, images: Any) -> None:
    """What `encode` returns: a floating tensor (N, *shape) on model.device, one row per image, finite (one check)."""
    n = len(images) if isinstance(images, (list, tuple)) else None
    _check_tensor(model, "encode", x0, None, torch.device(model.device))
    if x0.ndim < 2 or (n is not None and len(x0) != n):
        raise ValueError(f"{type(model).__name__}.encode returned shape {tuple(x0.shape)}; expected "
                         f"({n if n is not None else 'N'}, *shape), one row per image.")
    if len(x0) and not bool(torch.isfinite(x0).all()):
        raise ValueError(f"{type(model).__name__}.encode returned NaN or inf; check the input data.")


def check_eps_output(model: Any, pred: Any, x_t: torch.Tensor) -> None:
    """What `eps` returns, checked per batch from metadata only (no host sync): a floating tensor shaped and placed
    like x_t. Its finiteness is checked once per round on the errors, which are NaN or inf wherever it is."""
    _check_tensor(model, "eps", pred, tuple(x_t.shape), x_t.device)
