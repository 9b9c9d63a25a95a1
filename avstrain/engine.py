"""The training loop: ``train`` (set up, or resume) -> ``fit`` (the epochs) -> ``train_one_epoch``,
validation each ``val_every`` epochs.

Plain functions in call order (torchvision's ``references/segmentation/train.py``
style). The pieces it uses live in modules named for them: ``system`` (the model and
its losses, per ``tasks``), ``checkpoints`` (save, load, resume), ``rundir`` (config.json,
metrics.csv, curves), ``evaluation`` and ``prediction`` (the evaluate / predict commands),
``devices``.

Single process::

    avstrain train SHARDS -o RUN --preset demo

DDP (one process per GPU, or ``gloo`` on CPU)::

    torchrun --nproc_per_node 2 -m avstrain train SHARDS -o RUN --preset demo

The data order is a function of (seed, epoch) and the checkpoint holds the RNG
states, so ``--resume`` continues exactly where ``last.pt`` left off.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import time
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from avsprep.common.atomic import write_text
from avsprep.common.clikit import progress
from avsprep.common.errors import AvsError
from avstrain import dist
from avstrain import reachability as reach
from avstrain.checkpoints import (
    checkpoint_config,
    init_from,
    load_checkpoint,
    restore_training_state,
    save_checkpoint,
)
from avstrain.config import TrainConfig
from avstrain.data import (
    ShardDataset,
    collate,
    epoch_steps,
    make_eval_loader,
    make_loader,
    set_loader_epoch,
    to_device,
)
from avstrain.devices import autocast, pick_device, seed_everything
from avstrain.evaluation import evaluate
from avstrain.report.tensorboard_log import TensorBoardLog, require_tensorboard
from avstrain.rundir import plot_curves, prepare_run_dir, write_metrics_csv
from avstrain.system import (
    build_system,
    loss_weights,
    missing_pretrained,
    random_init_warnings,
    unwrap,
)

log = logging.getLogger("avstrain")


class TrainingStopped(AvsError):
    """Training stopped early (SIGTERM or a non-finite loss); exit 1 with the reason."""


class _StopFlag:
    """Set by SIGTERM; the loop finishes the current step, saves last.pt and stops."""

    def __init__(self):
        self.set = False
        self._old = None

    def _handler(self, signum, frame):
        self.set = True

    def __enter__(self):
        try:
            self._old = signal.signal(signal.SIGTERM, self._handler)
        except ValueError:  # not the main thread (e.g. some test runners): no handler
            self._old = None
        return self

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGTERM, self._old)
        return False


def gather_partial(sums: dict[str, float], n: int) -> dict:
    """Every rank's running loss sums and step count of an unfinished epoch, as saved in
    last.pt (``epoch_partial``): ``{"keys": [...], "sums": float64 [world, K], "n": int64 [world]}``.
    A collective: every rank calls it. float64 holds the Python float sums exactly."""
    info = dist.env_info()
    keys = sorted(sums)
    table = torch.zeros(info.world, len(keys) + 1, dtype=torch.float64)
    table[info.rank] = torch.tensor([sums[k] for k in keys] + [float(n)], dtype=torch.float64)
    dist.all_reduce_sum(table)  # each row is one rank's, the others add zeros: exact
    return {"keys": keys, "sums": table[:, :-1].clone(), "n": table[:, -1].to(torch.int64)}


def restore_partial(partial: Optional[dict]) -> tuple[dict[str, float], int]:
    """This rank's (sums, n) from ``gather_partial``'s record, so a resumed epoch's means cover
    the steps before the stop too, summed in the same order. With another number of processes
    than the stopped run, rank 0 takes the totals (the means stay right, the rounding may not)."""
    if not partial:
        return {}, 0
    info = dist.env_info()
    sums, n = partial["sums"].to(torch.float64), partial["n"].to(torch.int64)
    if sums.shape[0] == info.world:
        row, count = sums[info.rank], int(n[info.rank])
    elif info.rank == 0:
        row, count = sums.sum(dim=0), int(n.sum())
    else:
        return {}, 0
    return {k: float(row[j]) for j, k in enumerate(partial["keys"])}, count


def lr_at(cfg: TrainConfig, step: int, total_steps: int) -> float:
    """Learning rate for optimizer step ``step`` (0-based): a pure function of the step, so
    ``--resume`` continues the schedule exactly. ``constant`` is the reference recipe."""
    if cfg.lr_schedule == "constant" or total_steps <= 0:
        return cfg.lr
    if cfg.lr_schedule == "cosine":
        return 0.5 * cfg.lr * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps))
    raise ValueError(f"unknown lr_schedule {cfg.lr_schedule!r}; choose constant or cosine")


def set_lr(optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def train_one_epoch(model: nn.Module, optimizer, loader, device, cfg: TrainConfig, epoch: int,
                    start_step: int, skip_batches: int = 0, stop: Optional[_StopFlag] = None,
                    quiet: bool = False, on_stop=None, partial: Optional[dict] = None,
                    on_step=None) -> tuple[dict, int]:
    """One pass over the training loader; returns (mean loss per term, global step).

    ``partial``: the ``epoch_partial`` record of a checkpoint saved mid-epoch, whose loss sums
    this pass continues. Stops (``TrainingStopped``) on a non-finite loss, naming the epoch and
    step, and on SIGTERM after the current step, once ``on_stop(batch_in_epoch, step, partial)``
    has saved last.pt. ``on_step(step, terms, lr)``: called after each optimizer step (TensorBoard).
    """
    model.train()
    m = unwrap(model)
    if m.audio_encoder is not None and not any(p.requires_grad for p in m.audio_encoder.parameters()):
        m.audio_encoder.eval()  # frozen VGGish stays in eval mode
    weights = loss_weights(cfg)
    sums, n = restore_partial(partial)
    step = start_step
    channels_last = device.type == "cuda" and cfg.channels_last
    total = len(loader)
    if cfg.max_steps_per_epoch:
        total = min(total, max(0, cfg.max_steps_per_epoch - skip_batches))
    full = epoch_steps(loader)
    total_steps = (cfg.lr_decay_epochs or cfg.epochs) * min(full, cfg.max_steps_per_epoch or full)
    bar = progress(total=total, quiet=quiet, desc=f"epoch {epoch}", unit="step", leave=False)
    with bar:
        for i, cpu_batch in enumerate(loader):
            if i >= total:
                break
            batch_in_epoch = skip_batches + i + 1
            batch = to_device(cpu_batch, device, channels_last, cfg.image_size if cfg else None)
            with autocast(device, cfg):
                out = model(batch, weights=weights)
            loss, terms = out["loss"], out["terms"]
            # one all-reduce so every rank agrees to stop (else DDP would hang in backward)
            flags = torch.tensor([0.0 if math.isfinite(terms["total"]) else 1.0,
                                  1.0 if (stop is not None and stop.set) else 0.0])
            dist.all_reduce_sum(flags)
            if flags[0] > 0:
                raise TrainingStopped(
                    f"loss is not finite at epoch {epoch} step {batch_in_epoch} (global step {step + 1}): "
                    + ", ".join(f"{k}={v:.4g}" for k, v in terms.items())
                    + "; lower the learning rate (--lr) or check the shards with avsprep verify")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            lr = lr_at(cfg, step, total_steps)
            set_lr(optimizer, lr)
            optimizer.step()
            step += 1
            if on_step is not None:
                on_step(step, terms, lr)
            n += 1
            for k, v in terms.items():  # "total" and each term, floats already
                sums[k] = sums.get(k, 0.0) + v
            bar.update(1)
            bar.set_postfix(loss=f"{terms['total']:.4f}")
            if flags[1] > 0:
                record = gather_partial(sums, n)
                if on_stop is not None:
                    on_stop(batch_in_epoch, step, record)
                raise TrainingStopped(f"stopped by SIGTERM at epoch {epoch} step {batch_in_epoch}; "
                                      "last.pt saved: continue with --resume")
    # mean over this rank's steps, then over ranks (equal step counts per rank)
    keys = sorted(sums)
    vec = torch.tensor([sums[k] for k in keys] + [float(n)], dtype=torch.float64)
    dist.all_reduce_sum(vec)
    count = max(vec[-1].item(), 1.0)
    return {k: vec[j].item() / count for j, k in enumerate(keys)}, step


def check_pretrained(cfg: TrainConfig, has_vggish: bool) -> list[str]:
    """Refuse a ``require_pretrained`` config (the paper presets) whose pretrained files are not
    given, naming each and its option; with ``allow_random_init`` return the warnings instead."""
    missing = missing_pretrained(cfg, has_vggish)
    if not missing:
        return []
    if not cfg.allow_random_init:
        raise AvsError("this recipe needs pretrained files that were not given: " + "; ".join(missing)
                       + ". Pass them, or --set allow_random_init=true to train from random init anyway")
    warnings = random_init_warnings(missing)
    for w in warnings:
        log.warning(w)
    return warnings


def train(cfg: TrainConfig, shards: os.PathLike | str, run_dir: os.PathLike | str, resume: bool = False,
          overwrite: bool = False, quiet: bool = False) -> dict:
    """Train on SHARDS/train, validate on SHARDS/val each ``val_every`` epochs, write RUN.

    Returns the last history row (epoch, losses, val metrics). Raises ``TrainingStopped``
    on SIGTERM (after saving last.pt) or on a non-finite loss.
    """
    run_dir = Path(run_dir)
    device = pick_device(cfg.device)
    with dist.session(device.type) as info:  # joins the group under torchrun; leaves it if it joined
        return _train(cfg, shards, run_dir, device, info, resume, overwrite, quiet)


def _train(cfg: TrainConfig, shards, run_dir: Path, device: torch.device, info, resume: bool, overwrite: bool,
           quiet: bool) -> dict:
    tb = None
    try:
        if cfg.tensorboard:
            require_tensorboard()  # every rank: a missing extra fails before any work
        if info.is_main:
            prepare_run_dir(run_dir, resume, overwrite)
            if cfg.tensorboard:
                tb = TensorBoardLog(run_dir)
        dist.barrier()
        ckpt = load_checkpoint(run_dir / "last.pt") if resume else None
        if ckpt is not None:
            cfg = resumed_config(cfg, ckpt, run_dir / "last.pt")
        seed_everything(cfg.seed)  # same init on every rank; DDP also broadcasts rank 0's weights

        train_ds, val_ds = open_datasets(cfg, shards)
        warnings = list(ckpt.get("warnings", [])) if ckpt is not None else check_pretrained(cfg, train_ds.has_vggish)
        model = build_model(cfg, train_ds, device, init=ckpt is None)
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.Adam(params, lr=cfg.lr)  # reference: Adam 1e-4, constant, no weight decay
        state = {"epoch": 0, "step": 0, "skip": 0, "best": -1.0, "history": [], "partial": None}
        if ckpt is not None:
            state = restore_training_state(model, optimizer, ckpt, run_dir / "last.pt")
            log.info("resuming %s at epoch %d%s", run_dir, state["epoch"] + 1,
                     f" batch {state['skip'] + 1}" if state["skip"] else "")
        if info.is_main and ckpt is None:
            check_reachability(model, cfg, shards, device, run_dir)
        if info.is_main:
            doc = cfg.to_dict()
            if warnings:
                doc["warnings"] = warnings  # not a config key: rundir.saved_config drops it
            write_text(run_dir / "config.json", json.dumps(doc, indent=2) + "\n")
            log.info("training %s on %s: %d train / %d val clips, device %s, %d process(es)",
                     cfg.backbone, shards, len(train_ds), len(val_ds), device, info.world)
        return fit(model, optimizer, cfg, train_ds, val_ds, run_dir, device, state, warnings, tb, quiet)
    finally:
        if tb is not None:
            tb.close()


def check_reachability(model: nn.Module, cfg: TrainConfig, shards, device, run_dir: Path) -> dict:
    """Which loss terms reach which module groups, on the first ``batch_size`` train clips (a
    fresh, unaugmented reader, so the training data path is untouched): logged as a table, saved to
    RUN/reachability.json, and one warning line when a crop loss cannot change the masks."""
    ds = ShardDataset(shards, "train", task=cfg.setting)
    items = [ds[i] for i in range(min(cfg.batch_size, len(ds)))]
    batch = to_device(collate(items), device, device.type == "cuda" and cfg.channels_last, cfg.image_size)
    doc = reach.reachability(unwrap(model), batch, loss_weights(cfg))
    doc["warning"] = reach.warning(doc)
    write_text(run_dir / "reachability.json", json.dumps(doc, indent=2) + "\n")
    log.info("%s", reach.format_table(doc))
    if doc["warning"]:
        log.warning("warning: %s", doc["warning"])
    return doc


def resumed_config(cfg: TrainConfig, ckpt: dict, path: Path) -> TrainConfig:
    """The run's own config from its checkpoint, except what may change between sessions."""
    saved = checkpoint_config(ckpt, path)
    return TrainConfig(**{**saved.to_dict(), "epochs": cfg.epochs, "device": cfg.device, "workers": cfg.workers})


def open_datasets(cfg: TrainConfig, shards) -> tuple[ShardDataset, torch.utils.data.Dataset]:
    """The train and val splits, shaped for ``cfg.setting`` (refused when the shards cannot serve
    it); val capped at ``max_eval_clips``."""
    train_ds = ShardDataset(shards, "train", augment=cfg.augment, task=cfg.setting)
    val_ds = ShardDataset(shards, "val", task=cfg.setting)
    if train_ds.task_warning:  # (a task the shards cannot serve was refused when train_ds opened)
        log.warning(train_ds.task_warning)
    if cfg.max_eval_clips:
        val_ds = torch.utils.data.Subset(val_ds, range(min(cfg.max_eval_clips, len(val_ds))))
    return train_ds, val_ds


def build_model(cfg: TrainConfig, train_ds: ShardDataset, device, init: bool) -> nn.Module:
    """The system for ``cfg`` on ``device``; ``init``: filled from ``cfg.init_from`` if given (a
    fresh run; a resumed one gets its weights from last.pt)."""
    model = build_system(cfg, num_classes=len(train_ds.classes), has_vggish=train_ds.has_vggish).to(device)
    if cfg.init_from and init:
        parts = init_from(unwrap(model), cfg.init_from)
        log.info("initialised %s from %s (fresh optimiser, epoch 0)", ", ".join(parts), cfg.init_from)
    if device.type == "cuda" and cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def fit(model: nn.Module, optimizer, cfg: TrainConfig, train_ds: ShardDataset, val_ds, run_dir: Path, device,
        state: dict, warnings: list, tb, quiet: bool) -> dict:
    """The epochs from ``state`` (``restore_training_state``'s keys) to ``cfg.epochs``: train,
    validate every ``val_every`` epochs, write metrics.csv, curves.png, last.pt and best.pt
    (rank 0). Returns the last history row."""
    info = dist.env_info()
    ddp_model = model
    if info.enabled:
        # find_unused_parameters: the reference decoder's path4.resConfUnit1 is built but never used
        ddp_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True)
    loader = make_loader(train_ds, cfg.batch_size, shuffle=True, seed=cfg.seed, workers=cfg.workers,
                         distributed=info.enabled)
    val_loader = make_eval_loader(val_ds, 1, workers=min(cfg.workers, 1), rank=info.rank, world=info.world)
    step, skip, best, history, partial = (state[k] for k in ("step", "skip", "best", "history", "partial"))
    extra = {"warnings": warnings} if warnings else None
    last_row: dict = history[-1] if history else {}

    def save(name: str, epoch: int, step_now: int, **kw) -> None:
        save_checkpoint(run_dir / name, model, optimizer, cfg, epoch, step_now, best=best, history=history,
                        classes=train_ds.classes, extra=extra, **kw)

    with _StopFlag() as stop:
        for epoch in range(state["epoch"], cfg.epochs):
            t0 = time.time()
            set_loader_epoch(loader, cfg.seed, epoch, skip_batches=skip)

            def on_stop(batch_in_epoch, step_now, record, epoch=epoch):
                if info.is_main:
                    save("last.pt", epoch, step_now, batch_in_epoch=batch_in_epoch, partial=record)
                dist.barrier()

            losses, step = train_one_epoch(ddp_model, optimizer, loader, device, cfg, epoch + 1, step,
                                           skip_batches=skip, stop=stop, quiet=quiet or not info.is_main,
                                           on_stop=on_stop, partial=partial,
                                           on_step=tb.step if tb is not None else None)
            skip, partial = 0, None
            row = {"epoch": epoch + 1, **{f"train_{k}": v for k, v in losses.items()}}
            if (epoch + 1) % cfg.val_every == 0 or epoch + 1 == cfg.epochs:
                val = evaluate(model, val_loader, device, cfg, batch_videos=1, quiet=quiet or not info.is_main,
                               desc=f"val {epoch + 1}")
                row["val_miou"] = val["miou"]
                row["val_fscore"] = val["fscore"]
            row["time_s"] = round(time.time() - t0, 2)
            history.append(row)
            last_row = row
            improved = "val_miou" in row and row["val_miou"] > best
            if improved:
                best = row["val_miou"]
            if tb is not None:
                tb.epoch(epoch + 1, row)
                if "val_miou" in row:
                    tb.overlays(epoch + 1, model, cfg, device, val_ds)
            if info.is_main:
                write_metrics_csv(run_dir / "metrics.csv", history)
                plot_curves(run_dir / "curves.png", history)
                save("last.pt", epoch + 1, step)
                if improved:
                    save("best.pt", epoch + 1, step)
                log.info("epoch %d/%d  %s", epoch + 1, cfg.epochs, epoch_line(row))
            dist.barrier()
    return last_row


def epoch_line(row: dict) -> str:
    """The log line of one history row: total loss, each term, val mIoU and F, time."""
    return "loss %.4f  %s  val mIoU %s  F %s  %.1fs" % (
        row.get("train_total", math.nan),
        " ".join(f"{k[6:]} {v:.4f}" for k, v in row.items() if k.startswith("train_") and k != "train_total"),
        f"{row['val_miou']:.4f}" if "val_miou" in row else "-",
        f"{row['val_fscore']:.4f}" if "val_fscore" in row else "-", row["time_s"])
