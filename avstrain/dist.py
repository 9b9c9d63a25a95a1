"""DDP in a handful of helpers: torchrun's environment in, one process group, rank-0 guards.

``torchrun --nproc_per_node K -m avstrain train ...`` sets RANK, LOCAL_RANK and
WORLD_SIZE; without them everything runs as a single process (rank 0 of 1).
"""

from __future__ import annotations

import contextlib
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


@contextlib.contextmanager
def session(device_type: str):
    """The process group for a block of work: joined on entry when launched by torchrun, left on
    exit only by the block that joined it. So ``avstrain ablate`` holds one group across all its
    runs, and each run's ``engine.train`` inside it neither rejoins nor tears it down (a second
    ``init_process_group`` under torchrun's store hangs)."""
    owner = env_info().enabled and not (dist.is_available() and dist.is_initialized())
    info = init(device_type)
    try:
        yield info
    finally:
        if owner:
            shutdown()


_LOCAL = False  # inside ``local()``: this rank works alone, every collective is a no-op


@contextlib.contextmanager
def local():
    """A block that one rank runs alone while the others wait (``avstrain ablate``: rank 0
    evaluates a finished run, the others sit at the barrier after it): the helpers below act
    as in a single process, so a metric's gather does not wait for ranks that never come."""
    global _LOCAL
    old, _LOCAL = _LOCAL, True
    try:
        yield
    finally:
        _LOCAL = old


def _grouped() -> bool:
    return not _LOCAL and dist.is_available() and dist.is_initialized()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum ``t`` over ranks in place (no-op in a single process)."""
    if _grouped():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_gather_object(obj) -> Optional[list]:
    """Every rank's ``obj``, in rank order (so every rank merges them in the same order), or
    None in a single process (no process group, or a group of one)."""
    if not _grouped() or dist.get_world_size() == 1:
        return None
    gathered: list = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def barrier() -> None:
    if _grouped():
        dist.barrier()


def broadcast_object(obj, src: int = 0):
    """Send a picklable object from rank ``src`` to all ranks."""
    if not _grouped():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]
