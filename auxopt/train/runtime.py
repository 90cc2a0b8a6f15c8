"""Where and how reproducibly a run executes: the torch device it asks for, and seeding every RNG."""

from __future__ import annotations

import random

import numpy as np
import torch

from auxopt.errors import AuxoptError


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise AuxoptError(f"unknown device {device!r}; use 'auto', 'cpu' or 'cuda[:N]'") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise AuxoptError(f"device {device!r} asked for, but no CUDA device is available here")
    return resolved


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
