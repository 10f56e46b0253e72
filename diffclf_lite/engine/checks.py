"""Argument checks shared by the engine: whole numbers that mean counts, and class labels that index classes."""
from __future__ import annotations

import numbers
from typing import Any

import torch

__all__ = ["integer", "class_labels"]


def integer(value: Any, name: str, minimum: int | None = None) -> int:
    """`value` as an int; TypeError for a bool, a fraction (2.7 is not 2) or a non-number, ValueError below `minimum`."""
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_floating_point():
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a whole number (an int), got {value!r} of type {type(value).__name__}.")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}.")
    return int(value)


def class_labels(labels: Any, n_classes: int, n: int | None = None, name: str = "labels") -> torch.Tensor:
    """Labels as a (n,) long CPU tensor of class indices in [0, n_classes); TypeError or ValueError saying what is wrong."""
    try:
        y = torch.as_tensor(labels).cpu()
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(f"{name} must be a sequence or tensor of class indices, got {type(labels).__name__} ({err}).") from None
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
