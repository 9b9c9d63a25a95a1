"""Device choice, autocast, the evaluation forward and seeding: the few lines every loop shares."""

from __future__ import annotations

import random
from typing import Optional

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


def eval_forward(model: torch.nn.Module, batch: dict, device: torch.device, cfg: Optional[TrainConfig] = None,
                 zero_audio: bool = False) -> dict:
    """The model's outputs on a device batch for evaluate, predict, the report and TensorBoard:
    no grad, no crop head, and fp32 unless ``cfg.eval_amp`` on CUDA (the official test loop is
    fp32; bf16 autocast is for training steps)."""
    amp = device.type == "cuda" and cfg is not None and bool(cfg.eval_amp)
    with torch.no_grad(), torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
        return model(batch, crops=False, zero_audio=zero_audio)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
