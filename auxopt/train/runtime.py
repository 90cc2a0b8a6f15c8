"""Where and how reproducibly a run executes: the torch device it asks for, and seeding every RNG."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from auxopt.errors import AuxoptError

#: the device a worker process was given (``auxopt run --workers N`` / ``--gpus``); ``"auto"`` takes it
DEVICE_ENV = "AUXOPT_DEVICE"


def resolve_device(device: str = "auto") -> torch.device:
    """``device`` as a torch device. ``"auto"``: the device this worker process was placed on
    (:data:`DEVICE_ENV`, set by ``auxopt run --workers N`` and ``--gpus``), else CUDA when present."""
    if device == "auto":
        placed = os.environ.get(DEVICE_ENV)
        if not placed:
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        device = placed
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
