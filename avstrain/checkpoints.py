"""Checkpoints: written atomically with only tensors and primitives, read back with
``weights_only=True``, and turned back into a model (strict load)."""

from __future__ import annotations

import io
import os
import random
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import nn

from avsprep.common.atomic import atomic_write
from avsprep.common.errors import DataError, IntegrityError
from avsprep.common.tensors import bad_tensors, refuse_bad_tensors
from avstrain.config import ConfigError, TrainConfig, from_dict
from avstrain.models.weights import detect_backbone, fit_problems, official_to_ours, read_weights, unwrap_state_dict
from avstrain.system import PARTS, TrainableAVS, build_system, unwrap

CHECKPOINT_FORMAT = "avstrain-checkpoint-1"


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
        **{name: getattr(m, name).state_dict() if getattr(m, name) is not None else None
           for name in PARTS},
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
    bad = [b for name in ("model",) + PARTS if isinstance(ckpt.get(name), dict)
           for b in bad_tensors(ckpt[name], prefix=f"{name}.")]
    if bad:
        raise IntegrityError(f"checkpoint {path}: {len(bad)} tensor(s) hold NaN/inf: "
                             + ", ".join(bad[:4]) + (f" (+{len(bad) - 4} more)" if len(bad) > 4 else "")
                             + "; the run diverged or the file is damaged: use an earlier checkpoint")
    return ckpt


# what a checkpoint's own fields may hold, checked before anything is built from them
AUDIO_KINDS = ("precomputed", "vggish", "tiny")
MAX_CLASSES = 1000


def checkpoint_config(ckpt: dict, path: os.PathLike | str) -> TrainConfig:
    """The checkpoint's config, validated (types and ranges, ``config.from_dict``), with its
    ``num_classes`` and ``audio_kind``, before any module is built from them: a bad value is one
    line naming the file and the key."""
    doc = ckpt.get("config")
    if not isinstance(doc, dict):
        raise IntegrityError(f"checkpoint {path}: key 'config' is {type(doc).__name__}, not a mapping of "
                             "config keys; the file is damaged")
    try:
        cfg = from_dict(doc, source=f"config in checkpoint {path}")
    except ConfigError as exc:
        raise IntegrityError(str(exc)) from None
    n = ckpt.get("num_classes")
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_CLASSES:
        raise IntegrityError(f"checkpoint {path}: key 'num_classes' must be an integer in 1..{MAX_CLASSES}, "
                             f"got {n!r}; the file is damaged")
    if ckpt.get("audio_kind") not in AUDIO_KINDS:
        raise IntegrityError(f"checkpoint {path}: key 'audio_kind' must be one of {', '.join(AUDIO_KINDS)}, "
                             f"got {ckpt.get('audio_kind')!r}; the file is damaged")
    return cfg


def restore_parts(system: TrainableAVS, ckpt: dict, path: os.PathLike | str, exact: bool) -> list[str]:
    """Load the checkpoint's parts beside the AVS model (``system.PARTS``: audio encoder, crop
    head, audio projection) into ``system``, each strictly and whole; returns the names loaded.

    ``exact`` (a checkpoint of this very config: resume, evaluate): a part on one side only is an
    IntegrityError, and a part that does not fit raises load_state_dict's RuntimeError for the
    caller to word. Otherwise (``--init-from``) a part is loaded where both sides have it, the
    rest keep their own initialisation, and a part that does not fit is a DataError naming it."""
    loaded = []
    for name in PARTS:
        mod, sd = getattr(system, name), ckpt.get(name)
        if exact and (mod is None) != (sd is None):
            raise IntegrityError(f"checkpoint {path}: {name} does not match its config")
        if mod is None or sd is None:
            continue
        refuse_bad_tensors(sd, f"checkpoint {path}", mod.state_dict(), prefix=f"{name}.")
        try:
            mod.load_state_dict(sd, strict=True)
        except RuntimeError as exc:
            if exact:
                raise
            raise DataError(f"--init-from {path}: its {name} does not fit this config's "
                            f"({str(exc).splitlines()[0][:200]})") from None
        loaded.append(name)
    return loaded


def restore_training_state(model: TrainableAVS, optimizer, ckpt: dict, path: os.PathLike | str) -> dict:
    """``--resume``: the model, optimiser and RNG states of ``ckpt`` (last.pt of the same run),
    and where the loop continues: ``{"epoch", "step", "skip", "best", "history", "partial"}``
    (``skip``: batches of the next epoch already trained; ``partial``: their loss sums)."""
    model.avs.load_state_dict(ckpt["model"])
    restore_parts(model, ckpt, path, exact=True)
    optimizer.load_state_dict(ckpt["optimizer"])
    set_rng_state(ckpt["rng"])
    skip = ckpt["batch_in_epoch"]
    return {"epoch": ckpt["epoch"], "step": ckpt["step"], "skip": skip, "best": ckpt["best_miou"],
            "history": list(ckpt["history"]),
            "partial": ckpt.get("epoch_partial") if skip else None}  # absent in older checkpoints


def empty_system(cfg: TrainConfig, ckpt: dict) -> TrainableAVS:
    """The modules a checkpoint's (validated) config describes, with their own initialisation: the
    weights come from the checkpoint, so the original weight files are not read again. Built on
    the ``meta`` device (``with torch.device("meta")``) it costs no memory and gives the dtypes."""
    cfg_build = TrainConfig(**{**cfg.to_dict(), "backbone_weights": None, "crop_backbone_weights": None,
                               "vggish_weights": None})
    return build_system(cfg_build, num_classes=ckpt["num_classes"], has_vggish=ckpt["audio_kind"] == "precomputed",
                        audio_kind=ckpt["audio_kind"])


def system_from_checkpoint(ckpt: dict, path: os.PathLike | str = "checkpoint") -> tuple[TrainableAVS, TrainConfig]:
    """Rebuild the modules of a checkpoint and load their weights (strict); its config is
    checked first (``checkpoint_config``), its tensors before they are loaded."""
    cfg = checkpoint_config(ckpt, path)
    model = empty_system(cfg, ckpt)
    refuse_bad_tensors(ckpt["model"], f"checkpoint {path}", model.avs.state_dict(), prefix="model.")
    try:
        model.avs.load_state_dict(ckpt["model"], strict=True)
        restore_parts(model, ckpt, path, exact=True)
    except RuntimeError as exc:
        raise IntegrityError(f"checkpoint {path} does not fit the model its config describes: "
                             f"{str(exc).splitlines()[0]}") from exc
    return model, cfg


def init_from(system: TrainableAVS, path: os.PathLike | str) -> list[str]:
    """``train --init-from FILE``: fill ``system`` from an avstrain checkpoint or an official
    AVSBench state dict (renamed by ``avstrain.models.weights``), strictly: the AVS model gets every tensor
    or nothing (DataError naming the tensors). Of the other parts (audio encoder, crop head,
    audio projection), each one the checkpoint holds and ``system`` has is loaded whole; the
    rest keep their own initialisation. Returns the names of the parts loaded."""
    obj = read_weights(path)
    own = system.avs.state_dict()
    if isinstance(obj, dict) and obj.get("format") == CHECKPOINT_FORMAT:
        sd, extra, source, unmapped = obj["model"], obj, "avstrain checkpoint", []
    else:
        try:
            sd = unwrap_state_dict(obj)
        except ValueError:
            raise DataError(f"--init-from {path}: holds no state dict; give an avstrain checkpoint or an "
                            "official AVSBench .pth") from None
        backbone = detect_backbone(sd)
        if backbone is None:
            raise DataError(f"--init-from {path}: neither an avstrain checkpoint nor an official AVSBench "
                            "Pred_endecoder state dict (no resnet.* / encoder_backbone.* keys)")
        mapped = official_to_ours(sd, backbone)
        sd, unmapped = mapped.state_dict, mapped.unexpected
        extra, source = {}, f"official AVSBench {backbone} file"
    problems = fit_problems({k: tuple(v.shape) for k, v in own.items()},
                            {k: tuple(v.shape) for k, v in sd.items()}, unmapped)
    if problems:
        raise DataError(f"--init-from {path} ({source}) does not fit this config's model: "
                        + "; ".join(problems) + "; make --preset/--set match the checkpoint's model")
    refuse_bad_tensors(sd, f"--init-from {path}", own)
    system.avs.load_state_dict(sd, strict=True)
    return ["model"] + restore_parts(system, extra, path, exact=False)
