"""Where and in what precision an adapter runs: devices named by the user (`cpu`, `cuda`, `cuda:1`, `mps`) and dtypes
(`fp16`, `bf16`, `fp32`), checked before any tensor moves: a clear error, not an AssertionError from deep inside
torch, when the machine lacks the device."""
from __future__ import annotations

import torch

__all__ = ["default_device", "resolve_device", "resolve_dtype"]

DTYPES = {"fp16": torch.float16, "float16": torch.float16, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
          "fp32": torch.float32, "float32": torch.float32}


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """`fp16`/`bf16`/`fp32` (or a torch dtype); None picks fp16 on CUDA (as the paper) and fp32 elsewhere."""
    if dtype is None:
        return torch.float16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, torch.dtype) and dtype in DTYPES.values():
        return dtype
    if isinstance(dtype, str) and dtype.lower() in DTYPES:
        return DTYPES[dtype.lower()]
    raise ValueError(f"dtype {dtype!r} is not supported; use one of fp16, bf16, fp32.")


def default_device() -> torch.device:
    """cuda when torch sees a GPU, else cpu."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_device(spec: str | torch.device | None = None) -> torch.device:
    """None -> cuda when available, else cpu; otherwise the named device, or ValueError saying what to do instead."""
    if spec is None:
        return default_device()
    name = str(spec).strip().lower()
    try:
        dev = torch.device("cuda" if name == "gpu" else name)
    except RuntimeError:
        raise ValueError(f"device {spec!r} is not a device name; use cpu, cuda, cuda:1 or mps.") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = "torch was built without CUDA" if torch.version.cuda is None else "torch sees no CUDA GPU"
            raise ValueError(f"device {spec!r} was requested but this machine has none ({why}); use --device cpu, or on "
                             "Colab pick Runtime > Change runtime type > GPU.")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {spec!r}: this machine has {torch.cuda.device_count()} CUDA GPU(s), numbered from 0.")
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(f"device {spec!r} was requested but MPS (Apple GPU) is not available here; use --device cpu.")
    elif dev.type != "cpu":
        raise ValueError(f"device {spec!r} is not supported; use cpu, cuda, cuda:N or mps.")
    return dev
