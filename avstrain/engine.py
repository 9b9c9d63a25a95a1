"""Training and evaluation loops, checkpoints and the run directory.

Plain functions in call order (torchvision's ``references/segmentation/train.py``
style): ``build_system`` -> ``train`` -> ``train_one_epoch`` / ``evaluate`` ->
``save_checkpoint`` / ``load_checkpoint``.

Single process::

    avstrain train SHARDS -o RUN --preset demo

DDP (one process per GPU, or ``gloo`` on CPU)::

    torchrun --nproc_per_node 2 -m avstrain train SHARDS -o RUN --preset demo

The data order is a function of (seed, epoch) and the checkpoint holds the RNG
states, so ``--resume`` continues exactly where ``last.pt`` left off.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
import random
import signal
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import nn

from avsprep.atomic import atomic_write, write_text
from avsprep.clikit import progress
from avsprep.errors import AvsError, DataError, IntegrityError, OutputExistsError
from avstrain import dist
from avstrain.config import TrainConfig, from_dict
from avstrain.data import ShardDataset, epoch_steps, make_eval_loader, make_loader, set_loader_epoch, to_device

log = logging.getLogger("avstrain")

CHECKPOINT_FORMAT = "avstrain-checkpoint-1"
RUN_FILES = ("config.json", "metrics.csv", "curves.png", "last.pt", "best.pt")


class TrainingStopped(AvsError):
    """Training stopped early (SIGTERM or a non-finite loss); exit 1 with the reason."""


# ----------------------------------------------------------------------------- model

class AVSSystem(nn.Module):
    """Everything that trains together: the AVS model, the audio encoder (absent when the
    shards carry VGGish embeddings), the crop head and the audio projection P (128 -> 512)
    of the audio-crop loss. One module, so DDP wraps it once."""

    def __init__(self, avs: nn.Module, audio_encoder: Optional[nn.Module],
                 crop_head: Optional[nn.Module], audio_proj: Optional[nn.Module]):
        super().__init__()
        self.avs = avs
        self.audio_encoder = audio_encoder
        self.crop_head = crop_head
        self.audio_proj = audio_proj

    def encode_audio(self, batch: dict) -> torch.Tensor:
        """[B*5,128] audio features: the shards' VGGish embeddings or the encoder's output."""
        if self.audio_encoder is None:
            if "audio_vggish" not in batch:
                raise DataError("these shards carry no audio_vggish embeddings; train with "
                                "--set audio_encoder=tiny or give --set vggish_weights=FILE")
            return batch["audio_vggish"]
        return self.audio_encoder(batch["audio_logmel"])  # [B*5,1,96,64] -> [B*5,128]

    def forward(self, batch: dict, crops: bool = True, zero_audio: bool = False, weights=None) -> dict:
        """Model outputs; with ``weights`` (``LossWeights``) also ``loss`` and ``terms``, computed
        here so that every trained module (the audio projection too) is used inside the DDP
        forward."""
        audio = self.encode_audio(batch)
        if zero_audio:
            audio = torch.zeros_like(audio)
        logits, feature_maps, audio_feats = self.avs(batch["frames"], audio)[:3]
        size = batch["masks"].shape[-2:]
        if logits.shape[-2:] != size:  # model ran at a reduced image_size: back to the GT resolution
            logits = nn.functional.interpolate(logits, size=size, mode="bilinear", align_corners=False)
        out = {"logits": logits, "feature_maps": feature_maps, "audio_feats": audio_feats, "audio_emb": audio}
        if crops and self.crop_head is not None:
            out["crop_feat"], out["crop_logits"] = self.crop_head(batch["crops"])  # [B*5,512], [B*5,K]
        if weights is not None:
            out["loss"], out["terms"] = compute_losses(self, out, batch, weights)
        return out


def resolve_audio_encoder(cfg: TrainConfig, has_vggish: bool) -> str:
    """auto: the shards' embeddings if present, else frozen VGGish if weights given, else tiny."""
    if cfg.audio_encoder != "auto":
        return cfg.audio_encoder
    if has_vggish:
        return "precomputed"
    return "vggish" if cfg.vggish_weights else "tiny"


def build_system(cfg: TrainConfig, num_classes: int, has_vggish: bool,
                 audio_kind: Optional[str] = None) -> AVSSystem:
    """Build the modules named by ``cfg`` (weights loaded from the paths it gives, if any).

    ``audio_kind`` forces the audio encoder (used when rebuilding from a checkpoint, whose
    frozen VGGish weights are inside it rather than in a file)."""
    from avstrain.models import build_avs_model
    from avstrain.models.audio import AudioEncoder

    avs = build_avs_model(backbone=cfg.backbone, tpavi_stages=tuple(cfg.tpavi_stages),
                          pretrained=cfg.backbone_weights, channel=cfg.channel,
                          head_channels=tuple(cfg.head_channels))
    kind = audio_kind or resolve_audio_encoder(cfg, has_vggish)
    audio_encoder = None
    if kind == "precomputed":
        if not has_vggish:
            raise DataError("audio_encoder=precomputed needs shards built with --vggish-weights "
                            "(audio_vggish); or use --set audio_encoder=tiny")
    elif audio_kind is not None:  # rebuilding from a checkpoint: its state dict is loaded next
        audio_encoder = AudioEncoder(kind, weights_from_checkpoint=True)
    else:
        audio_encoder = AudioEncoder(kind, weights=cfg.vggish_weights)
    crop_head = audio_proj = None
    if cfg.crop_losses_on():
        from avstrain.models.crop_head import CropHead

        crop_head = CropHead(num_classes, feat_dim=512, backbone=cfg.crop_backbone,
                             pretrained=cfg.crop_backbone_weights, logits_relu=cfg.crop_logits_relu)
        if cfg.w_audio > 0:
            audio_proj = nn.Linear(128, 512)  # P in 1 - cos(P a, f)
    system = AVSSystem(avs, audio_encoder, crop_head, audio_proj)
    system.audio_kind = kind
    system.num_classes = num_classes
    return system


# ----------------------------------------------------------------------------- losses

def loss_weights(cfg: TrainConfig):
    """The config's loss weights as ``avstrain.losses.LossWeights`` (crop terms 0 without a crop head)."""
    from avstrain.losses import LossWeights

    crop = cfg.crop_losses_on()
    return LossWeights(seg=1.0, avm=cfg.avm_weight(), ce=cfg.w_ce if crop else 0.0,
                       pairwise=cfg.w_pairwise if crop else 0.0, audio=cfg.w_audio if crop else 0.0,
                       avm_stages=tuple(cfg.tpavi_stages))


def compute_losses(model: AVSSystem, out: dict, batch: dict, weights) -> tuple[torch.Tensor, dict]:
    """``avstrain.losses.total_loss`` on a device batch -> (loss, {term: float, "total": float})."""
    from avstrain.losses import total_loss

    B = batch["batch_size"]
    lb = {"masks": batch["masks"], "mask_valid": batch["mask_valid"], "label": batch["label"]}
    if "crop_valid" in batch:
        lb["crop_valid"] = batch["crop_valid"].reshape(B, -1)  # [B*5] -> [B,5]
    out = dict(out, logits=out["logits"].float())
    return total_loss(out, lb, weights, audio_proj=model.audio_proj)


# ----------------------------------------------------------------------------- helpers

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


def rng_state() -> dict:
    """Python, numpy and torch (CPU + CUDA) RNG states as tensors/primitives (weights_only-safe)."""
    py = random.getstate()
    npk = np.random.get_state()
    state = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": {"keys": torch.from_numpy(npk[1].astype(np.int64)), "pos": int(npk[2]),
                  "has_gauss": int(npk[3]), "gauss": float(npk[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def unwrap(model: nn.Module) -> AVSSystem:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


# ----------------------------------------------------------------------------- checkpoints

def save_checkpoint(path: os.PathLike | str, model: nn.Module, optimizer, cfg: TrainConfig, epoch: int,
                    step: int, batch_in_epoch: int = 0, best: float = -1.0, history: Optional[list] = None,
                    classes: Optional[list] = None, extra: Optional[dict] = None,
                    partial: Optional[dict] = None) -> None:
    """Write the checkpoint atomically (tmp name, fsync, os.replace): only tensors, primitives
    and dicts, so ``torch.load(weights_only=True)`` can read it back. ``partial``: the
    unfinished epoch's loss sums (``gather_partial``) when stopping mid-epoch."""
    m = unwrap(model)
    ckpt = {
        "format": CHECKPOINT_FORMAT,
        "model": m.avs.state_dict(),
        "audio_encoder": m.audio_encoder.state_dict() if m.audio_encoder is not None else None,
        "crop_head": m.crop_head.state_dict() if m.crop_head is not None else None,
        "audio_proj": m.audio_proj.state_dict() if m.audio_proj is not None else None,
        "audio_kind": m.audio_kind,
        "num_classes": int(m.num_classes),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "epoch": int(epoch),                  # completed epochs
        "batch_in_epoch": int(batch_in_epoch),  # batches done in the epoch after them (mid-epoch stop)
        "epoch_partial": partial if batch_in_epoch else None,  # their loss sums, for metrics.csv
        "step": int(step),                    # optimizer steps so far
        "best_miou": float(best),
        "history": list(history or []),
        "classes": list(classes or []),
        "rng": rng_state(),
        "config": cfg.to_dict(),
    }
    if extra:
        ckpt.update(extra)
    buf = io.BytesIO()
    torch.save(ckpt, buf)
    with atomic_write(path, "wb") as fh:
        fh.write(buf.getbuffer())


def load_checkpoint(path: os.PathLike | str, map_location="cpu") -> dict:
    """Read a checkpoint with ``weights_only=True``; a truncated, corrupt or foreign file
    raises ``IntegrityError`` naming it."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # zip errors, unpickling refusals, EOF: all mean "not ours / damaged"
        msg = str(exc).strip().splitlines()[0].split(". ")[0] if str(exc).strip() else type(exc).__name__
        raise IntegrityError(f"checkpoint {path} cannot be read ({msg[:160]}); it is truncated, corrupt "
                             "or not an avstrain checkpoint") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise IntegrityError(f"checkpoint {path} is not an avstrain checkpoint (no '{CHECKPOINT_FORMAT}' "
                             "format tag); give RUN/best.pt or RUN/last.pt")
    return ckpt


def system_from_checkpoint(ckpt: dict, path: os.PathLike | str = "checkpoint") -> tuple[AVSSystem, TrainConfig]:
    """Rebuild the modules of a checkpoint and load their weights (strict)."""
    cfg = from_dict(ckpt["config"], source=f"config in {path}")
    # the weights come from the checkpoint: do not read the original weight files again
    cfg_build = TrainConfig(**{**cfg.to_dict(), "backbone_weights": None, "crop_backbone_weights": None,
                               "vggish_weights": None})
    model = build_system(cfg_build, num_classes=ckpt["num_classes"], has_vggish=ckpt["audio_kind"] == "precomputed",
                         audio_kind=ckpt["audio_kind"])
    try:
        model.avs.load_state_dict(ckpt["model"], strict=True)
        for name in ("audio_encoder", "crop_head", "audio_proj"):
            mod, sd = getattr(model, name), ckpt[name]
            if (mod is None) != (sd is None):
                raise IntegrityError(f"checkpoint {path}: {name} does not match its config")
            if mod is not None:
                mod.load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        raise IntegrityError(f"checkpoint {path} does not fit the model its config describes: "
                             f"{str(exc).splitlines()[0]}") from exc
    return model, cfg


# ----------------------------------------------------------------------------- loops

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
                    quiet: bool = False, on_stop=None, partial: Optional[dict] = None) -> tuple[dict, int]:
    """One pass over the training loader; returns (mean loss per term, global step).

    ``partial``: the ``epoch_partial`` record of a checkpoint saved mid-epoch, whose loss sums
    this pass continues. Stops (``TrainingStopped``) on a non-finite loss, naming the epoch and
    step, and on SIGTERM after the current step, once ``on_stop(batch_in_epoch, step, partial)``
    has saved last.pt.
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
            set_lr(optimizer, lr_at(cfg, step, total_steps))
            optimizer.step()
            step += 1
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


@torch.no_grad()
def evaluate(model: nn.Module, loader, device, cfg: Optional[TrainConfig] = None, batch_videos: int = 4,
             audio_ablation: str = "none", classes: Optional[list] = None, quiet: bool = True,
             desc: str = "eval") -> dict:
    """AVSBench metrics of ``model`` over ``loader`` (``avstrain.metrics.MetricAccumulator``).

    ``miou``/``fscore``: official protocol, videos in dataset order in batches of
    ``batch_videos`` (1 = the reference's validation, 4 = its test); ``*_dataset``: all
    frames pooled. Only frames with a GT mask count. Each rank records its videos by
    dataset index and the records are gathered, so DDP evaluation equals a single process.
    ``audio_ablation``: none | zero (zeroed audio features); shuffle is the dataset's job
    (``ShardDataset.with_audio_from``).
    """
    from avstrain.metrics import MetricAccumulator

    m = unwrap(model)
    m.eval()
    use_cuda = device.type == "cuda"
    channels_last = use_cuda and (cfg.channels_last if cfg else False)
    acc = MetricAccumulator(batch_videos=batch_videos)
    for cpu_batch in progress(loader, quiet=quiet, desc=desc, unit="batch", leave=False):
        batch = to_device(cpu_batch, device, channels_last, cfg.image_size if cfg else None)
        B = batch["batch_size"]
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_cuda and (cfg.amp if cfg else False)):
            out = m(batch, crops=False, zero_audio=audio_ablation == "zero")
        logits = out["logits"].float().squeeze(1)  # [B*5,1,S,S] -> [B*5,S,S]
        acc.update(logits, batch["masks"], batch["index"], class_ids=cpu_batch["label"],
                   frame_valid=batch["mask_valid"].reshape(B, -1))
    acc.all_reduce()
    result = acc.compute()
    if "per_class" in result:
        names = classes or []
        result["per_class"] = {(names[c] if 0 <= c < len(names) else str(c)): v
                               for c, v in result["per_class"].items()}
    return result


# ----------------------------------------------------------------------------- run dir

def write_metrics_csv(path: Path, history: list[dict]) -> None:
    keys: list[str] = []
    for row in history:
        keys += [k for k in row if k not in keys]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    w.writeheader()
    for row in history:
        w.writerow({k: (repr(v) if isinstance(v, float) else v) for k, v in row.items()})
    write_text(path, buf.getvalue())


def plot_curves(path: Path, history: list[dict]) -> None:
    """Loss terms and val mIoU per epoch (matplotlib Agg, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for k in [k for k in history[-1] if k.startswith("train_")]:
        ax1.plot(epochs, [r.get(k, float("nan")) for r in history], marker="o", label=k[6:])
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("train loss")
    ax1.legend()
    ax2.plot(epochs, [r.get("val_miou", float("nan")) for r in history], marker="o", color="C3")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("val mIoU")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    with atomic_write(path, "wb") as fh:
        fh.write(buf.getvalue())


def saved_config(run_dir: os.PathLike | str, overrides: Optional[dict] = None) -> TrainConfig:
    """The config of an existing run (RUN/config.json) with ``overrides`` applied (for --resume)."""
    import json

    from avstrain.config import apply

    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise DataError(f"nothing to resume: {path} does not exist; start without --resume")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise DataError(f"{path} is not valid JSON ({exc}); start over with --overwrite") from exc
    return apply(from_dict(doc, source=str(path)), {k: v for k, v in (overrides or {}).items() if v is not None},
                 "command-line overrides")


def prepare_run_dir(run_dir: Path, resume: bool, overwrite: bool) -> None:
    """Refuse a non-empty RUN unless --resume or --overwrite; --overwrite removes our files."""
    if run_dir.exists() and not run_dir.is_dir():
        raise OutputExistsError(f"{run_dir} exists and is not a directory; choose another RUN")
    if resume:
        if not (run_dir / "last.pt").is_file():
            raise DataError(f"nothing to resume: {run_dir / 'last.pt'} does not exist; start without --resume")
        return
    if run_dir.is_dir() and any(run_dir.iterdir()):
        if not overwrite:
            raise OutputExistsError(f"RUN {run_dir} is not empty; use --overwrite to start over "
                                    "or --resume to continue")
        for name in RUN_FILES:
            (run_dir / name).unlink(missing_ok=True)
    run_dir.mkdir(parents=True, exist_ok=True)


# ----------------------------------------------------------------------------- train

def train(cfg: TrainConfig, shards: os.PathLike | str, run_dir: os.PathLike | str, resume: bool = False,
          overwrite: bool = False, quiet: bool = False) -> dict:
    """Train on SHARDS/train, validate on SHARDS/val each ``val_every`` epochs, write RUN.

    Returns the last history row (epoch, losses, val metrics). Raises ``TrainingStopped``
    on SIGTERM (after saving last.pt) or on a non-finite loss.
    """
    import json

    run_dir = Path(run_dir)
    device = pick_device(cfg.device)
    info = dist.init(device.type)
    try:
        if info.is_main:
            prepare_run_dir(run_dir, resume, overwrite)
        dist.barrier()
        ckpt = None
        if resume:
            ckpt = load_checkpoint(run_dir / "last.pt")
            saved = from_dict(ckpt["config"], source=f"{run_dir / 'last.pt'}")
            # the run's own config wins, except what may change between sessions
            cfg = TrainConfig(**{**saved.to_dict(), "epochs": cfg.epochs, "device": cfg.device,
                                 "workers": cfg.workers})
        seed_everything(cfg.seed)  # same init on every rank; DDP also broadcasts rank 0's weights

        train_ds = ShardDataset(shards, "train", augment=cfg.augment)
        val_ds = ShardDataset(shards, "val")
        if cfg.max_eval_clips:
            val_ds = torch.utils.data.Subset(val_ds, range(min(cfg.max_eval_clips, len(val_ds))))
        if cfg.setting == "s4" and getattr(train_ds, "setting", None) == "ms3":
            log.warning("the shards are MS3 but the config says setting=s4")
        model = build_system(cfg, num_classes=len(train_ds.classes), has_vggish=train_ds.has_vggish).to(device)
        if device.type == "cuda" and cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.Adam(params, lr=cfg.lr)  # reference: Adam 1e-4, constant, no weight decay

        start_epoch, step, skip, best, history, partial = 0, 0, 0, -1.0, [], None
        if ckpt is not None:
            m = model
            m.avs.load_state_dict(ckpt["model"])
            for name in ("audio_encoder", "crop_head", "audio_proj"):
                if getattr(m, name) is not None:
                    getattr(m, name).load_state_dict(ckpt[name])
            optimizer.load_state_dict(ckpt["optimizer"])
            start_epoch, step, skip = ckpt["epoch"], ckpt["step"], ckpt["batch_in_epoch"]
            best, history = ckpt["best_miou"], list(ckpt["history"])
            partial = ckpt.get("epoch_partial") if skip else None  # absent in older checkpoints
            set_rng_state(ckpt["rng"])
            log.info("resuming %s at epoch %d%s", run_dir, start_epoch + 1,
                     f" batch {skip + 1}" if skip else "")
        if info.is_main:
            write_text(run_dir / "config.json", json.dumps(cfg.to_dict(), indent=2) + "\n")
            log.info("training %s on %s: %d train / %d val clips, device %s, %d process(es)",
                     cfg.backbone, shards, len(train_ds), len(val_ds), device, info.world)

        ddp_model = model
        if info.enabled:
            # find_unused_parameters: the reference decoder's path4.resConfUnit1 is built but never used
            ddp_model = nn.parallel.DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True)
        loader = make_loader(train_ds, cfg.batch_size, shuffle=True, seed=cfg.seed, workers=cfg.workers,
                             distributed=info.enabled)
        val_loader = make_eval_loader(val_ds, 1, workers=min(cfg.workers, 1), rank=info.rank, world=info.world)

        last_row: dict = history[-1] if history else {}
        with _StopFlag() as stop:
            for epoch in range(start_epoch, cfg.epochs):
                t0 = time.time()
                set_loader_epoch(loader, cfg.seed, epoch, skip_batches=skip)

                def on_stop(batch_in_epoch, step_now, record, epoch=epoch):
                    if info.is_main:
                        save_checkpoint(run_dir / "last.pt", model, optimizer, cfg, epoch, step_now,
                                        batch_in_epoch=batch_in_epoch, best=best, history=history,
                                        classes=train_ds.classes, partial=record)
                    dist.barrier()

                losses, step = train_one_epoch(ddp_model, optimizer, loader, device, cfg, epoch + 1, step,
                                               skip_batches=skip, stop=stop, quiet=quiet or not info.is_main,
                                               on_stop=on_stop, partial=partial)
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
                if info.is_main:
                    write_metrics_csv(run_dir / "metrics.csv", history)
                    plot_curves(run_dir / "curves.png", history)
                    save_checkpoint(run_dir / "last.pt", model, optimizer, cfg, epoch + 1, step,
                                    best=best, history=history, classes=train_ds.classes)
                    if improved:
                        save_checkpoint(run_dir / "best.pt", model, optimizer, cfg, epoch + 1, step,
                                        best=best, history=history, classes=train_ds.classes)
                    log.info("epoch %d/%d  loss %.4f  %s  val mIoU %s  F %s  %.1fs", epoch + 1, cfg.epochs,
                             row.get("train_total", math.nan),
                             " ".join(f"{k[6:]} {v:.4f}" for k, v in row.items()
                                      if k.startswith("train_") and k != "train_total"),
                             f"{row['val_miou']:.4f}" if "val_miou" in row else "-",
                             f"{row['val_fscore']:.4f}" if "val_fscore" in row else "-", row["time_s"])
                dist.barrier()
        return last_row
    finally:
        dist.shutdown()


# ----------------------------------------------------------------------------- evaluate / predict CLI

def derangement(n: int, seed: int = 0) -> list[int]:
    """A fixed, seeded permutation with no fixed point (n >= 2): clip i gets the audio of clip
    ``audio_from[i] != i``. One random cycle through all clips."""
    if n < 2:
        return list(range(n))
    order = np.random.default_rng(seed).permutation(n)
    audio_from = [0] * n
    for i in range(n):
        audio_from[order[i]] = int(order[(i + 1) % n])
    return audio_from


PROTOCOL = {
    "miou": "official: mean over batches of the AVSBench mask_iou on each batch's frames",
    "fscore": "official: mean over batches of Eval_Fmeasure (max over 255 thresholds within each batch)",
    "miou_dataset": "per-dataset: mean IoU over all frames with a GT mask",
    "fscore_dataset": "per-dataset: one max over thresholds of the frame-mean F (all frames pooled)",
}


def run_evaluate(checkpoint, shards, split: str = "test", ablations=("none",), per_class: bool = False,
                 batch_videos: int = 4, device: str = "auto", workers: int = 0, quiet: bool = True,
                 seed: int = 0) -> dict:
    """``avstrain evaluate``: metrics of a checkpoint on one split, plus audio ablations."""
    ckpt = load_checkpoint(checkpoint)
    model, cfg = system_from_checkpoint(ckpt, checkpoint)
    dev = pick_device(device)
    model.to(dev)
    ds = ShardDataset(shards, split)
    classes = ds.classes if per_class else None
    res = evaluate(model, make_eval_loader(ds, batch_videos, workers), dev, cfg, batch_videos, classes=classes,
                   quiet=quiet, desc=f"evaluate {split}")
    doc = {"miou": res["miou"], "fscore": res["fscore"], "miou_dataset": res["miou_dataset"],
           "fscore_dataset": res["fscore_dataset"], "clips": res["clips"], "frames": res["frames"],
           "split": split, "checkpoint": str(checkpoint),
           "protocol": {**PROTOCOL, "batch_videos": batch_videos}}
    if per_class:
        doc["per_class"] = res["per_class"]
    extra = [a for a in ablations if a != "none"]
    if extra:
        doc["ablations"] = {}
    for name in extra:
        if name == "shuffle":
            ds_a = ds.with_audio_from(derangement(len(ds), seed))
            r = evaluate(model, make_eval_loader(ds_a, batch_videos, workers), dev, cfg, batch_videos, quiet=quiet,
                         desc="audio shuffle")
        else:
            r = evaluate(model, make_eval_loader(ds, batch_videos, workers), dev, cfg, batch_videos, audio_ablation=name,
                         quiet=quiet, desc=f"audio {name}")
        doc["ablations"][name] = {"miou": r["miou"], "fscore": r["fscore"],
                                  "miou_dataset": r["miou_dataset"], "fscore_dataset": r["fscore_dataset"]}
    return doc


@torch.no_grad()
def run_predict(checkpoint, shards, out_dir, split: str = "test", device: str = "auto", batch_videos: int = 4,
                quiet: bool = False) -> dict:
    """``avstrain predict``: sigmoid > 0.5 masks as 0/255 single-channel PNGs named like the GT
    (S4 ``OUT/split/category/video/video_k.png``, MS3 ``OUT/split/video/video_k.png``, k = 1..5)."""
    from PIL import Image

    from avsprep.atomic import write_bytes

    ckpt = load_checkpoint(checkpoint)
    model, cfg = system_from_checkpoint(ckpt, checkpoint)
    dev = pick_device(device)
    model.to(dev).eval()
    ds = ShardDataset(shards, split)
    out_dir = Path(out_dir)
    written = 0
    for cpu_batch in progress(make_eval_loader(ds, batch_videos), quiet=quiet, desc="predict", unit="batch"):
        batch = to_device(cpu_batch, dev, False, cfg.image_size)
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda" and cfg.amp):
            logits = model(batch, crops=False)["logits"].float()
        pred = (logits.squeeze(1) > 0).to(torch.uint8).mul_(255).cpu().numpy()  # sigmoid > 0.5 <=> logit > 0
        T_ = pred.shape[0] // batch["batch_size"]
        for b, video in enumerate(batch["video"]):
            if cfg.setting == "s4":
                folder = out_dir / split / ds.classes[int(cpu_batch["label"][b])] / video
            else:
                folder = out_dir / split / video
            folder.mkdir(parents=True, exist_ok=True)
            for t in range(T_):
                buf = io.BytesIO()
                Image.fromarray(pred[b * T_ + t]).save(buf, format="PNG")
                write_bytes(folder / f"{video}_{t + 1}.png", buf.getvalue())
                written += 1
    return {"text": f"wrote {written} masks for {len(ds)} clips under {out_dir / split}", "masks": written,
            "clips": len(ds)}
