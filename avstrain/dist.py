"""DDP in a handful of helpers: torchrun's environment in, one process group, rank-0 guards.

``torchrun --nproc_per_node K -m avstrain train ...`` sets RANK, LOCAL_RANK and
WORLD_SIZE; without them everything runs as a single process (rank 0 of 1).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    local_rank: int = 0
    world: int = 1

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_info() -> DistInfo:
    """Read torchrun's variables (nanoGPT's one-liner: DDP iff RANK is set)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ:
        return DistInfo(int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0")),
                        int(os.environ["WORLD_SIZE"]))
    return DistInfo()


def init(device_type: str) -> DistInfo:
    """Join the process group (gloo on CPU, nccl on CUDA) when launched by torchrun."""
    info = env_info()
    if info.enabled and not dist.is_initialized():
        if device_type == "cuda":
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    return info


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum ``t`` over ranks in place (no-op in a single process)."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_gather_object(obj) -> Optional[list]:
    """Every rank's ``obj``, in rank order (so every rank merges them in the same order), or
    None in a single process (no process group, or a group of one)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return None
    gathered: list = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def broadcast_object(obj, src: int = 0):
    """Send a picklable object from rank ``src`` to all ranks."""
    if not (dist.is_available() and dist.is_initialized()):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]
