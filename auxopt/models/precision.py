"""Mixed precision: whether a run uses bf16 on its device, and the autocast context for it."""

from __future__ import annotations

import contextlib

import torch


def autocast(device: torch.device, bf16: bool):
    """bf16 autocast on ``device`` when asked, else a no-op context."""
    if bf16:
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def use_bf16(setting: bool | str, device: torch.device) -> bool:
    if setting == "auto":
        return device.type == "cuda" and torch.cuda.is_bf16_supported()
    return bool(setting)
