"""TensorBoard logging of a training run (``--set tensorboard=true``), into ``RUN/tb/``.

An optional extra: ``pip install 'avsprep[tensorboard]'``. Written by rank 0 only:

* every step: ``train/<term>`` (each loss term and ``train/total``) and ``train/lr``;
* every validation: ``val/miou``, ``val/fscore``, ``epoch/train_<term>`` (the epoch means)
  and the image ``val/overlays``: the first validation clips, prediction painted in cyan
  stripes and the GT outlined in white (``avstrain.overlays``), one row per clip.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from avsprep.common.errors import AvsError
from avstrain.overlays import clip_strip, vstack
from avstrain.prediction import predict_masks

TB_DIR = "tb"
EXTRA_HINT = "pip install 'avsprep[tensorboard]' (or: pip install tensorboard)"


class TensorBoardMissing(AvsError):
    """``tensorboard=true`` without the optional extra installed."""


def require_tensorboard() -> None:
    """Raise a one-line error naming the extra when the ``tensorboard`` package is missing."""
    try:
        import tensorboard  # noqa: F401
    except ImportError as exc:
        raise TensorBoardMissing("tensorboard=true needs the optional extra 'tensorboard', which is not "
                                 f"installed: {EXTRA_HINT}; or drop --set tensorboard=true") from exc


class TensorBoardLog:
    """A ``SummaryWriter`` on ``RUN/tb`` with the few calls the training loop makes."""

    def __init__(self, run_dir: Path, overlay_clips: int = 2):
        require_tensorboard()
        from torch.utils.tensorboard import SummaryWriter  # lazy: tensorboard is an optional extra

        self.dir = Path(run_dir) / TB_DIR
        self.writer = SummaryWriter(log_dir=str(self.dir))
        self.overlay_clips = overlay_clips

    def step(self, step: int, terms: dict, lr: float) -> None:
        for k, v in terms.items():
            self.writer.add_scalar(f"train/{k}", v, step)
        self.writer.add_scalar("train/lr", lr, step)

    def epoch(self, epoch: int, row: dict) -> None:
        for k, v in row.items():
            if k.startswith("val_"):
                self.writer.add_scalar(f"val/{k[4:]}", v, epoch)
            elif k.startswith("train_"):
                self.writer.add_scalar(f"epoch/{k}", v, epoch)

    def overlays(self, epoch: int, model, cfg, device, val_ds) -> None:
        """The first ``overlay_clips`` validation clips painted with the current predictions."""
        idx = list(range(min(self.overlay_clips, len(val_ds))))
        if not idx:
            return
        was_training = model.training
        preds = predict_masks(model, cfg, device, val_ds, idx)
        model.train(was_training)
        rows = []
        for i in idx:
            item = val_ds[i]
            rows.append(clip_strip(item["frames"].numpy(), preds[i], item["masks"].numpy(),
                                   item["mask_valid"].numpy()))
        grid = vstack(rows)
        self.writer.add_image("val/overlays", np.ascontiguousarray(grid), epoch, dataformats="HWC")

    def close(self) -> None:
        self.writer.flush()
        self.writer.close()
