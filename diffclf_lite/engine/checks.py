"""Argument checks shared by the engine: whole numbers that mean counts, and class labels that index classes."""
from __future__ import annotations

import numbers
from typing import Any

import torch

__all__ = ["integer", "positive", "class_labels", "tensor"]


def integer(value: Any, name: str, minimum: int | None = None) -> int:
    """`value` as an int; TypeError for a bool, a fraction (2.7 is not 2) or a non-number, ValueError below `minimum`."""
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_floating_point():
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a whole number (an int), got {value!r} of type {type(value).__name__}.")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}.")
    return int(value)


def positive(value: Any, name: str) -> float:
    """`value` as a float that is finite and > 0; TypeError for a bool or a non-number, ValueError otherwise."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a positive number, got {value!r} of type {type(value).__name__}.")
    if not 0 < value < float("inf"):
        raise ValueError(f"{name} must be a positive, finite number, got {value}.")
    return float(value)


def tensor(value: Any, name: str, dtype: torch.dtype | None = None) -> torch.Tensor:
    """`torch.as_tensor(value, dtype)` on the CPU; a TypeError naming `name` for what torch cannot read as numbers."""
    try:
        return torch.as_tensor(value, dtype=dtype).cpu()
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(f"{name} must be a tensor or a (nested) sequence of numbers, got {type(value).__name__} "
                        f"({str(err).splitlines()[0][:120]}).") from None


def class_labels(labels: Any, n_classes: int, n: int | None = None, name: str = "labels") -> torch.Tensor:
    """Labels as a (n,) long CPU tensor of class indices in [0, n_classes); TypeError or ValueError saying what is wrong."""
    y = tensor(labels, name)
    if y.dtype == torch.bool or y.is_complex():
        raise TypeError(f"{name} must hold integer class indices, got dtype {y.dtype}.")
    if n is not None and tuple(y.shape) != (n,):
        raise ValueError(f"{name} of shape {tuple(y.shape)} do not match {n} samples: give one class index per sample.")
    if y.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional (one class index per sample), got shape {tuple(y.shape)}.")
    if y.is_floating_point() and not bool((y == y.round()).all()):
        raise ValueError(f"{name} must be whole class indices, got fractional or NaN values such as "
                         f"{y[y != y.round()][0].item()}.")
    y = y.long()
    bad = (y < 0) | (y >= n_classes)
    if bool(bad.any()):
        raise ValueError(f"{name} must lie in [0, {n_classes}) for {n_classes} classes, got {y[bad][0].item()} "
                         f"({int(bad.sum())} of {len(y)} out of range).")
    return y
