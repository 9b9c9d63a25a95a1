"""Device choice, autocast and seeding: the few lines every loop shares."""

from __future__ import annotations

import random

import numpy as np
import torch

from avsprep.common.errors import AvsError
from avstrain import dist
from avstrain.config import TrainConfig


def pick_device(name: str) -> torch.device:
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise AvsError("--device cuda asked for, but no CUDA device is visible; use --device cpu")
        return torch.device("cuda", dist.env_info().local_rank)
    return torch.device("cpu")


def autocast(device: torch.device, cfg: TrainConfig):
    """bf16 autocast on CUDA (no GradScaler needed for bf16); fp32 on CPU."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16,
                          enabled=device.type == "cuda" and cfg.amp)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
