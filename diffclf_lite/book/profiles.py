"""Profiles: one notebook, three machines. `smoke` (CI, seconds), `cpu` (real where a CPU can be), `gpu` (paper-sized)."""
from __future__ import annotations

import os
from typing import TypeVar

import torch

__all__ = ["PROFILES", "get_profile", "pick"]

PROFILES = ("smoke", "cpu", "gpu")
T = TypeVar("T")


def get_profile() -> str:
    """The profile named by DIFFCLF_PROFILE, else `gpu` when CUDA is available, else `cpu`."""
    name = os.environ.get("DIFFCLF_PROFILE", "").strip().lower()
    if not name:
        return "gpu" if torch.cuda.is_available() else "cpu"
    if name not in PROFILES:
        raise ValueError(f"DIFFCLF_PROFILE={name!r} is not a profile; use one of {', '.join(PROFILES)}.")
    if name == "gpu" and not torch.cuda.is_available():
        raise ValueError(
            "DIFFCLF_PROFILE=gpu but no CUDA GPU is visible to torch. On Colab choose Runtime > Change runtime type > GPU; "
            "elsewhere unset DIFFCLF_PROFILE or set it to cpu."
        )
    return name


def pick(smoke: T, cpu: T, gpu: T, profile: str | None = None) -> T:
    """The value for the current profile, e.g. `n_points = pick(smoke=50, cpu=2000, gpu=20000)`."""
    return {"smoke": smoke, "cpu": cpu, "gpu": gpu}[profile or get_profile()]
