"""The run directory: config.json, metrics.csv, curves.png, last.pt / best.pt; what may be
overwritten or resumed, and the saved config of a run."""

from __future__ import annotations

import csv
import io
import os
import shutil
from pathlib import Path
from typing import Optional

from avsprep.common.atomic import atomic_write, write_text
from avsprep.common.errors import DataError, OutputExistsError
from avsprep.common.jsonread import loads_limited
from avsprep.common.outputs import has_entries
from avstrain.config import TrainConfig, apply, from_dict

RUN_FILES = ("config.json", "metrics.csv", "curves.png", "last.pt", "best.pt")


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
    import matplotlib  # lazy: importing avstrain must not pick a matplotlib backend (and costs 0.2 s)

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
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise DataError(f"nothing to resume: {path} does not exist; start without --resume")
    try:
        doc = loads_limited(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise DataError(f"{path} is not valid JSON ({exc}); start over with --overwrite") from exc
    if isinstance(doc, dict):
        doc.pop("warnings", None)  # recorded beside the config, not a config key
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
    if has_entries(run_dir):
        if not overwrite:
            raise OutputExistsError(f"RUN {run_dir} is not empty; use --overwrite to start over "
                                    "or --resume to continue")
        for name in RUN_FILES:
            (run_dir / name).unlink(missing_ok=True)
        shutil.rmtree(run_dir / "tb", ignore_errors=True)  # TensorBoard events of the old run
    run_dir.mkdir(parents=True, exist_ok=True)
