"""Shard dataset, batching and device transfer for training and evaluation.

Items stay uint8 on the CPU (frames, masks, crops): the float conversion and
ImageNet normalisation happen on the device in ``to_device``, which is what
makes the loader cheap. The data order is a pure function of (seed, epoch):
``DistributedSampler.set_epoch`` under DDP, a generator seeded with
``seed + epoch`` otherwise, so a resumed run sees the same batches.
"""

from __future__ import annotations

import copy
import os
import random
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler, Sampler, SequentialSampler
from torch.utils.data.distributed import DistributedSampler

from avsprep.common.errors import DataError
from avsprep.shards import ShardSet
from avstrain.tasks import BINARY_STEPS, SUBSET_OF_TASK, TASKS, check_shards

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_TENSOR_KEYS = ("frames", "masks", "mask_valid", "crops", "crop_valid", "audio_logmel", "audio_vggish",
                "frame_valid", "gt_flag", "crop_label")  # the last three: AVSS shards only


def augmentation_pipeline(steps: int = BINARY_STEPS):
    """Light augmentation applied identically to the clip's frames and masks (crops untouched)."""
    import albumentations as A  # lazy: ~0.7 s to import, and only augmenting training runs need it

    targets = {f"image{t}": "image" for t in range(1, steps)}
    targets.update({f"mask{t}": "mask" for t in range(1, steps)})
    return A.Compose([A.HorizontalFlip(p=0.5),
                      A.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.0, p=0.5)],
                     additional_targets=targets)


def apply_augmentation(pipeline, frames: np.ndarray, masks: np.ndarray):
    """frames [T,S,S,3] uint8, masks [T,S,S] uint8 -> the same, one random draw for all T."""
    steps = len(frames)
    kw = {"image": frames[0], "mask": masks[0]}
    for t in range(1, steps):
        kw[f"image{t}"] = frames[t]
        kw[f"mask{t}"] = masks[t]
    out = pipeline(**kw)
    f = np.stack([out["image"]] + [out[f"image{t}"] for t in range(1, steps)])
    m = np.stack([out["mask"]] + [out[f"mask{t}"] for t in range(1, steps)])
    return np.ascontiguousarray(f), np.ascontiguousarray(m)


class ShardDataset(Dataset):
    """One split of a shard folder as a map-style dataset of uint8 tensors.

    ``ShardSet`` opens the HDF5 files lazily in each process, so DataLoader
    workers never share a handle. ``audio_from[i]`` = j makes item i carry the
    audio of clip j (the ``shuffle`` audio ablation).

    ``shards_setting`` is what the shards were built for (the manifest's ``setting``: s4, ms3,
    avss; None in old manifests); ``task`` is what the items are shaped for: the ``task`` given
    (a config's ``setting``), else ``shards_setting``. AVSS shards serve every task: read as S4
    or MS3, each item is the binary view of a v1s/v1m clip (``binary_view``).
    """

    def __init__(self, shards_dir: os.PathLike | str, split: str = "train", augment: bool = False,
                 audio_from: Optional[Sequence[int]] = None, task: Optional[str] = None):
        self.shards_dir = Path(shards_dir)
        self.split = split
        self.augment = augment
        # Integrity (docs/RELIABILITY.md): shards covered by the verification record that
        # build/verify wrote are trusted without hashing; any other is hashed here, in the opening
        # process, so a corrupt shard stops training with its name before a DataLoader worker starts.
        reader = ShardSet(self.shards_dir, split=split, verify=True)
        reader.hash_unverified()
        self._len = len(reader)
        self.names = list(reader.names)
        self.classes = list(reader.classes)
        self.manifest = reader.manifest
        self.has_vggish = bool(reader.has_vggish)
        opts = self.manifest.get("options", {}) if isinstance(self.manifest, dict) else {}
        self.shards_setting = self.manifest.get("setting") or opts.get("setting")  # may be None
        # stored mask value / scale = the official target (avsprep.shards.MASK_DECODING)
        self.mask_scale = float((self.manifest.get("mask_decoding") or {}).get("scale", 1))
        self.audio_from = list(audio_from) if audio_from is not None else None
        if self.audio_from is not None and len(self.audio_from) != self._len:
            raise ValueError(f"audio_from has {len(self.audio_from)} entries for {self._len} clips")
        self._reader = reader  # opens its HDF5 files lazily, per process
        self._aug = None
        self.task = task or self.shards_setting
        built_for = TASKS.get(self.shards_setting)
        if built_for is not None and built_for.semantic and task is not None and task not in TASKS:
            raise ValueError(f"unknown task {task!r} for AVSS shards; use avss, s4 or ms3")
        # semantic shards read as a binary task: each item is the binary view of its clip
        self._binary_view = built_for is not None and built_for.semantic and not TASKS[self.task].semantic
        # the task against the shards, here in the main process, before any DataLoader worker starts
        self.task_warning = (check_shards(task, self.shards_setting, self.shards_dir,
                                          reader.subsets() if self._binary_view else None) if task else None)
        self._perm: Optional[list[int]] = None  # view index -> reader row (in_csv_order)
        self.order_source = "name"

    def in_csv_order(self) -> "ShardDataset":
        """The same clips indexed in the split's metadata CSV order (recorded by ``avsprep
        build`` in the manifest), so the official 4-video test batches group the clips the
        official ``test.py`` groups. Shares this dataset's reader."""
        order = (self.manifest.get("csv_order") or {}).get(self.split)
        if order is None:
            return self
        pos = {n: i for i, n in enumerate(self.names)}
        perm = [pos[n] for n in order if n in pos]  # skipped clips are not in the shards
        perm += [i for i in range(self._len) if i not in set(perm)]  # (defensive: none expected)
        other = copy.copy(self)
        other._perm = perm
        other.names = [self.names[i] for i in perm]
        other.audio_from = None
        other.order_source = "metadata CSV"
        return other

    def _row(self, i: int) -> int:
        return i if self._perm is None else self._perm[i]

    def __len__(self) -> int:
        return self._len

    def with_audio_from(self, audio_from: Sequence[int]) -> "ShardDataset":
        """The same clips with item i carrying the audio of clip ``audio_from[i]``; shares this
        dataset's reader, so the shards are not hashed again."""
        if len(audio_from) != self._len:
            raise ValueError(f"audio_from has {len(audio_from)} entries for {self._len} clips")
        other = copy.copy(self)
        other.audio_from = list(audio_from)
        other._aug = None
        return other

    def __getstate__(self):  # the augmentation pipeline is rebuilt in each worker
        state = self.__dict__.copy()
        state["_aug"] = None
        return state

    def __getitem__(self, i) -> dict:
        """``i``: an index, or ``(index, augmentation seed)`` from the training sampler."""
        i, aug_seed = i if isinstance(i, tuple) else (i, None)
        reader = self._reader
        item = reader[self._row(i)]
        if self.audio_from is not None and self.audio_from[i] != i:
            other = reader[self._row(self.audio_from[i])]
            item = dict(item)
            item["audio_logmel"] = other["audio_logmel"]
            if "audio_vggish" in other:
                item["audio_vggish"] = other["audio_vggish"]
        if self._binary_view:
            item = binary_view(item, self.task, self.shards_dir)
        frames, masks = np.asarray(item["frames"]), np.asarray(item["masks"])
        if self.augment:
            if self._aug is None:
                self._aug = augmentation_pipeline(len(frames))
            if aug_seed is not None:
                self._aug.set_random_seed(aug_seed)
            frames, masks = apply_augmentation(self._aug, frames, masks)
        out = {"frames": frames, "masks": masks}
        for key in _TENSOR_KEYS[2:]:
            if key in item and item[key] is not None:
                out[key] = item[key]
        sample = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in out.items()}
        sample["label"] = torch.tensor(int(item["label"]), dtype=torch.long)
        sample["mask_scale"] = torch.tensor(self.mask_scale, dtype=torch.float32)
        sample["video"] = str(item["video"])
        sample["index"] = i
        return sample


def binary_view(item: dict, task: str, where="the shards") -> dict:
    """One AVSS shard item -> the S4/MS3 item of its ``v1s``/``v1m`` clip: the 5 real steps,
    mask = any sounding class, no AVSS flags."""
    subset = item.get("subset")
    if subset not in SUBSET_OF_TASK.values():
        raise DataError(f"{where}: clip {item.get('video')} is a {subset} clip; the binary {task} task takes "
                        f"v1s/v1m clips: build the shards with --subset {SUBSET_OF_TASK[task]}")
    steps = TASKS[task].steps
    out = {k: v for k, v in item.items() if k not in ("frame_valid", "gt_flag", "crop_label", "subset")}
    for key in ("frames", "mask_valid", "crops", "crop_valid", "audio_logmel", "audio_vggish"):
        if key in out:
            out[key] = out[key][:steps]
    out["masks"] = (np.asarray(item["masks"][:steps]) > 0).astype(np.uint8)
    return out


def _stack(tensors: list[torch.Tensor]) -> torch.Tensor:
    """``torch.stack``; in a DataLoader worker, straight into shared memory (as
    ``default_collate`` does), which saves the copy the worker would make to send it."""
    if torch.utils.data.get_worker_info() is None:
        return torch.stack(tensors)
    t0 = tensors[0]
    storage = t0.untyped_storage()._new_shared(len(tensors) * t0.numel() * t0.element_size(), device="cpu")
    out = t0.new(storage).resize_(len(tensors), *t0.shape)
    return torch.stack(tensors, out=out)


def collate(items: list[dict]) -> dict:
    """Stack per-clip tensors to [B, ...]; names and indices stay lists."""
    batch = {k: _stack([it[k] for it in items]) for k in items[0] if isinstance(items[0][k], torch.Tensor)}
    batch["video"] = [it["video"] for it in items]
    batch["index"] = [it["index"] for it in items]
    return batch


def _normalise(x_uint8: torch.Tensor, device, channels_last: bool) -> torch.Tensor:
    """[N,S,S,3] uint8 -> [N,3,S,S] float32, ImageNet-normalised, on ``device``."""
    x = x_uint8.to(device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255.0)  # [N,S,S,3] -> [N,3,S,S]
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
    x = (x - mean) / std
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    else:
        x = x.contiguous()
    return x


def _targets(batch: dict, device) -> torch.Tensor:
    """Stored masks -> the official loaders' float targets: ``stored / mask_scale`` (S4: PIL '1'
    values 0/1, scale 1; MS3: PIL 'P' values, scale 255, as ``ToTensor`` divides them)."""
    m = batch["masks"].to(device, non_blocking=True).float()  # [B,T,S,S]
    if "mask_scale" in batch:
        m = m / batch["mask_scale"].to(device).view(-1, 1, 1, 1)
    return m


def to_device(batch: dict, device, channels_last: bool = False, image_size: Optional[int] = None) -> dict:
    """Move a collated batch to ``device``: float conversion and normalisation happen there.

    Frames and masks are flattened clip-major (row ``b*T + t``, T steps per clip), as the model
    and the reference losses expect. ``image_size`` resizes the frames (bilinear)
    for a cheaper model input; masks keep the shard size (the model's logits are
    resized back to it, so losses and metrics always see the GT resolution).
    """
    B, T = batch["frames"].shape[:2]  # T = the task's steps (avstrain.tasks)
    S = batch["frames"].shape[2]
    frames = _normalise(batch["frames"].reshape(B * T, S, S, 3), device, False)  # [B*T,3,S,S]
    if "frame_valid" in batch:  # AVSS: padded steps are zero after normalisation, as officially
        frames = frames * batch["frame_valid"].to(device).reshape(B * T, 1, 1, 1)
    if image_size and image_size != S:
        frames = torch.nn.functional.interpolate(frames, size=(image_size, image_size), mode="bilinear",
                                                 align_corners=False, antialias=True)
    if channels_last:
        frames = frames.contiguous(memory_format=torch.channels_last)
    out = {
        "frames": frames,                                                                      # [B*T,3,s,s]
        "masks": _targets(batch, device).reshape(B * T, S, S),                                 # [B*T,S,S] float
        "mask_valid": batch["mask_valid"].to(device).reshape(B * T),                           # [B*T] bool
        "label": batch["label"].to(device),                                                    # [B]
        "audio_logmel": batch["audio_logmel"].to(device, non_blocking=True)
                         .reshape(B * T, 1, *batch["audio_logmel"].shape[2:]).float(),         # [B*T,1,96,64]
        "video": batch["video"],
        "index": batch["index"],
        "batch_size": B,
    }
    if "crops" in batch:
        C = batch["crops"].shape[2]
        out["crops"] = _normalise(batch["crops"].reshape(B * T, C, C, 3), device, channels_last)  # [B*T,3,C,C]
        out["crop_valid"] = batch["crop_valid"].to(device).reshape(B * T)                       # [B*T] bool
    if "audio_vggish" in batch:
        out["audio_vggish"] = batch["audio_vggish"].to(device, non_blocking=True).reshape(B * T, -1).float()
    for key in ("frame_valid", "gt_flag", "crop_label"):  # AVSS semantic
        if key in batch:
            out[key] = batch[key].to(device).reshape(B * T)
    return out


def seed_worker(worker_id: int) -> None:
    """Seed numpy and python ``random`` in a worker from torch's per-worker seed."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def item_seed(seed: int, epoch: int, index: int) -> int:
    """The augmentation seed of one item in one epoch: a pure function, so a resumed run
    (mid-epoch included) and any number of DataLoader workers draw the same augmentations."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0])


class _ResumableSampler(Sampler):
    """Wraps the epoch's sampler, drops its first ``skip`` indices (mid-epoch resume) and
    yields ``(index, item_seed(seed, epoch, index))`` so augmentation is reproducible."""

    def __init__(self, base: Sampler, seed: int = 0):
        self.base = base
        self.skip = 0
        self.seed = seed
        self.epoch = 0

    def __iter__(self):
        it = iter(self.base)
        for _ in range(self.skip):
            next(it, None)
        return ((i, item_seed(self.seed, self.epoch, i)) for i in it)

    def __len__(self) -> int:
        return max(0, len(self.base) - self.skip)


def make_loader(ds: Dataset, batch_size: int, shuffle: bool, seed: int = 0, workers: int = 0,
                distributed: bool = False, drop_last: bool = False) -> DataLoader:
    """A training DataLoader whose order depends only on (seed, epoch).

    Under DDP a ``DistributedSampler`` splits the clips across ranks; otherwise
    a ``RandomSampler`` draws from a generator reseeded with ``seed + epoch``.
    Call ``set_loader_epoch`` before each pass.
    """
    generator = torch.Generator()
    generator.manual_seed(seed)
    if distributed:
        base = DistributedSampler(ds, shuffle=shuffle, seed=seed, drop_last=drop_last)
    elif shuffle:
        base = RandomSampler(ds, generator=generator)
    else:
        base = SequentialSampler(ds)
    return DataLoader(ds, batch_size=batch_size, sampler=_ResumableSampler(base, seed),
                      num_workers=workers, collate_fn=collate, pin_memory=torch.cuda.is_available(),
                      drop_last=drop_last, generator=generator, worker_init_fn=seed_worker)


def set_loader_epoch(loader: DataLoader, seed: int, epoch: int, skip_batches: int = 0) -> None:
    """Make the coming pass's order a function of (seed, epoch) only; optionally skip the
    first ``skip_batches`` batches (already trained on before an interruption)."""
    sampler = loader.sampler
    if hasattr(sampler.base, "set_epoch"):
        sampler.base.set_epoch(epoch)
    loader.generator.manual_seed(seed + epoch)
    sampler.skip = skip_batches * loader.batch_size
    sampler.seed, sampler.epoch = seed, epoch


def epoch_steps(loader: DataLoader) -> int:
    """Steps in a full epoch of a ``make_loader`` loader (``len(loader)`` shrinks after a mid-epoch resume)."""
    n = len(loader.sampler.base)
    return n // loader.batch_size if loader.drop_last else -(-n // loader.batch_size)


def eval_batches(n: int, batch_videos: int, rank: int = 0, world: int = 1) -> list[list[int]]:
    """Consecutive groups of ``batch_videos`` clips (the official test batching), dealt
    round-robin to ranks: the groups, hence the per-batch metrics, do not depend on the
    number of processes, and no clip is padded or repeated (unlike DistributedSampler)."""
    groups = [list(range(i, min(i + batch_videos, n))) for i in range(0, n, batch_videos)]
    return groups[rank::world]


def make_eval_loader(ds: Dataset, batch_videos: int, workers: int = 0, rank: int = 0,
                     world: int = 1) -> DataLoader:
    """In-order loader over this rank's evaluation batches (see ``eval_batches``)."""
    return DataLoader(ds, batch_sampler=eval_batches(len(ds), batch_videos, rank, world),
                      num_workers=workers, collate_fn=collate, pin_memory=torch.cuda.is_available())
