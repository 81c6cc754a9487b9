"""Where models run: the device and dtype a config asks for, and CPU threads for small models."""

from __future__ import annotations

import torch

from release.errors import ReleaseError


def pick_device(device: str = "auto") -> torch.device:
    """`auto` is cuda when a GPU is visible, else cpu; asking for cuda without one is an error."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ReleaseError("search.device is cuda but no CUDA GPU is visible: use device: auto or cpu")
    return torch.device(device)


def pick_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """`auto` is bf16 on GPU (what the search and the shipped child run in) and fp32 on CPU."""
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return getattr(torch, dtype)


def tune_cpu_threads(model: torch.nn.Module) -> None:
    """Small models on CPU: one thread. Their ops are too short to split, and OpenMP threads that spin
    beside another busy process slowed a tiny model's evaluation 20x here."""
    on_cpu = next(model.parameters()).device.type == "cpu"
    if on_cpu and sum(p.numel() for p in model.parameters()) < 50_000_000:
        torch.set_num_threads(1)
