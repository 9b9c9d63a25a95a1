"""AVSBench-semantic (AVSS) release layout and ``metadata.csv`` (reference/avss.md 1, 3).

``{root}/metadata.csv``, ``{root}/label2idx.json`` and one folder per clip:
``{root}/{subset}/{uid}/frames/{i}.jpg`` (0-based), ``labels_rgb/{i}.png``
(palette RGB), ``labels_semantic/{i}.png`` and ``audio.wav``. ``subset`` is the
metadata's ``label`` column (``v1s`` = S4 clips, ``v1m`` = MS3, ``v2`` = 10-s
clips). Columns are read by name, as the official loader does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

import numpy as np

from avsprep.audio import read_wav, waveform_to_examples
from avsprep.datasets import avss_loader
from avsprep.datasets.avss_classes import AVSS_CLASSES, decode_rgb_mask, read_label2idx
from avsprep.common.errors import DataError
from avsprep.datasets.steps import AVSS_REAL_STEPS, STEPS_PER_CLIP

SUBSETS = ("v1s", "v1m", "v2")
SPLITS = ("train", "val", "test")
META_FILE = "metadata.csv"
LABEL_FILE = "label2idx.json"
META_COLUMNS = ["uid", "label", "split", "a_obj"]


@dataclass(frozen=True)
class AVSSClip:
    """One clip row of ``metadata.csv``."""

    name: str  # uid = folder name
    split: str
    subset: str  # the ``label`` column: v1s / v1m / v2
    a_obj: tuple[str, ...]  # sounding-class tokens of ``a_obj`` (split on '_'; may hold non-classes)

    @property
    def frames(self) -> int:
        return AVSS_REAL_STEPS[self.subset]

    @property
    def category(self) -> str:
        """What the box table stores as ``category`` for AVSS: the subset."""
        return self.subset


def parse_a_obj(value: str) -> tuple[str, ...]:
    """``woman_piano`` -> ('woman', 'piano'); class names contain '-' but never '_'."""
    return tuple(t for t in str(value).split("_") if t != "")


def is_avss_root(root: Path | str) -> bool:
    root = Path(root)
    return (root / META_FILE).is_file() and (root / LABEL_FILE).is_file()


def read_avss_metadata(path: Path | str):
    """``metadata.csv`` with every field a string; checks the columns the toolkit reads."""
    import pandas as pd

    path = Path(path)
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read the metadata CSV ({exc}); use the file of the AVSS release") from None
    missing = [c for c in META_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)} (the AVSS header is "
                        "vid,uid,s_min,s_sec,a_obj,split,label)")
    bad = df[~df["split"].isin(SPLITS)]
    if len(bad):
        raise DataError(f"{path} line {bad.index[0] + 2}: split {bad['split'].iloc[0]!r} is not one of "
                        f"{', '.join(SPLITS)}")
    bad = df[~df["label"].isin(SUBSETS)]
    if len(bad):
        raise DataError(f"{path} line {bad.index[0] + 2}: label {bad['label'].iloc[0]!r} is not one of "
                        f"{', '.join(SUBSETS)} (the subset column)")
    dup = df[df["uid"].duplicated()]
    if len(dup):
        raise DataError(f"{path}: uid {dup['uid'].iloc[0]!r} is listed twice; each clip must appear once")
    return df


def parse_subsets(value: Optional[str | Iterable[str]]) -> tuple[str, ...]:
    """``"v1s,v2"`` / list / None (= all) -> checked tuple in canonical order."""
    if value is None or value == "" or value == ():
        return SUBSETS
    items = value.split(",") if isinstance(value, str) else [s for v in value for s in str(v).split(",")]
    items = [s.strip() for s in items if s.strip()]
    bad = [s for s in items if s not in SUBSETS]
    if bad:
        raise DataError(f"unknown subset {bad[0]!r}; use any of {', '.join(SUBSETS)} (comma-separated)")
    return tuple(s for s in SUBSETS if s in items)


class AVSSLayout:
    """Paths of one AVSS release root, restricted to the chosen subsets."""

    setting = "avss"

    def __init__(self, root: Path | str, subsets=None):
        self.root = Path(root)
        self.subsets = parse_subsets(subsets)
        self._meta = None
        self._clips: Optional[list[AVSSClip]] = None

    @classmethod
    def from_root(cls, root: Path | str, subsets=None) -> "AVSSLayout":
        root = Path(root)
        if not root.is_dir():
            raise DataError(f"{root} is not a folder; pass the AVSS release root (holding metadata.csv)")
        for name in (META_FILE, LABEL_FILE):
            if not (root / name).is_file():
                raise DataError(f"{root} has no {name}; pass the AVSS release root "
                                "(metadata.csv, label2idx.json, v1s/, v1m/, v2/)")
        read_label2idx(root / LABEL_FILE)
        return cls(root, subsets)

    @property
    def meta_path(self) -> Path:
        return self.root / META_FILE

    @property
    def metadata(self):
        if self._meta is None:
            self._meta = read_avss_metadata(self.meta_path)
        return self._meta

    def all_clips(self) -> list[AVSSClip]:
        """Every row of the metadata (all subsets), in file order (the official iteration order)."""
        if self._clips is None:
            df = self.metadata
            self._clips = [AVSSClip(u, s, lab, parse_a_obj(a))
                           for u, s, lab, a in zip(df["uid"], df["split"], df["label"], df["a_obj"])]
        return list(self._clips)

    def clips(self, splits: Optional[Iterable[str]] = None) -> list[AVSSClip]:
        """Clips of the chosen subsets and splits, sorted by name."""
        wanted = set(splits) if splits is not None else set(SPLITS)
        out = [c for c in self.all_clips() if c.subset in self.subsets and c.split in wanted]
        return sorted(out, key=lambda c: c.name)

    def csv_clips(self, splits: Optional[Iterable[str]] = None) -> list[AVSSClip]:
        """Clips of the chosen subsets and splits in metadata.csv row order (the official loader's)."""
        wanted = set(splits) if splits is not None else set(SPLITS)
        return [c for c in self.all_clips() if c.subset in self.subsets and c.split in wanted]

    def clip_index(self) -> dict[str, AVSSClip]:
        return {c.name: c for c in self.clips()}

    def classes(self) -> list[str]:
        return list(AVSS_CLASSES)

    def mask_frames(self, clip: AVSSClip) -> list[int]:
        """0-based frames with a mask: ``v1s`` train has only ``0.png`` (reference 1.3)."""
        if clip.subset == "v1s" and clip.split == "train":
            return [0]
        return list(range(clip.frames))

    # -- paths ----------------------------------------------------------------------

    def clip_dir(self, clip: AVSSClip) -> Path:
        return self.root / clip.subset / clip.name

    def frames_dir(self, clip: Optional[AVSSClip] = None) -> Path:
        """A clip's ``frames/`` folder; without a clip the root (annotation search starts there)."""
        return self.root if clip is None else self.clip_dir(clip) / "frames"

    def frame_path(self, clip: AVSSClip, i: int) -> Path:
        return self.clip_dir(clip) / "frames" / f"{i}.jpg"

    def mask_path(self, clip: AVSSClip, i: int) -> Path:
        return self.clip_dir(clip) / "labels_rgb" / f"{i}.png"

    def semantic_mask_path(self, clip: AVSSClip, i: int) -> Path:
        return self.clip_dir(clip) / "labels_semantic" / f"{i}.png"

    def wav_path(self, clip: AVSSClip) -> Path:
        return self.clip_dir(clip) / "audio.wav"

    # -- one shard item (avsprep.build.clip) ------------------------------------------
    # What a clip becomes in a shard, as the official loader makes it (avsprep.datasets.avss_loader).

    steps = STEPS_PER_CLIP["avss"]  # v1 clips are padded from 5
    table_frames = range(STEPS_PER_CLIP["avss"])  # the box table's 0-based ``frame``
    crop_labels = True  # ``crop_label``: the class of the cropped box per step

    def frame_indices(self, clip: AVSSClip) -> range:
        """The clip's real frames in step order (step ``i`` is frame ``i``); later steps are padding."""
        return range(clip.frames)

    def geometry(self, width: int, height: int, split: str) -> avss_loader.Geometry:
        """train: short edge 224 + centre crop; val/test: resize to 224x224."""
        return avss_loader.geometry(width, height, split)

    def decode_mask(self, image) -> np.ndarray:
        """An RGB ``labels_rgb`` mask -> class indices through the palette (off-palette colours: 0)."""
        return decode_rgb_mask(np.asarray(image))[0]

    def clip_audio(self, clip: AVSSClip) -> tuple[np.ndarray, str]:
        """10 log-mel examples ``[10, 96, 64]`` from ``audio.wav`` (zeros after the real ones), "wav"."""
        wav = self.wav_path(clip)
        wave, sr = read_wav(wav)
        return avss_loader.audio_examples(waveform_to_examples(wave, sr), name=str(wav)), "wav"

    def box_class(self, label: str) -> int:
        """AVSS class index of a box label (exact spelling, the h orse typo mapped), -1 when unknown."""
        from avsprep.validate.avss_release import TYPOS  # it imports this module

        label = TYPOS.get(label.strip(), label.strip())
        return AVSS_CLASSES.index(label) if label in AVSS_CLASSES else -1

    def clip_label(self, clip: AVSSClip) -> int:
        """The clip's ``label``: its first sounding class (0 when a_obj names none)."""
        from avsprep.validate.avss_release import clip_classes  # it imports this module

        return (clip_classes(clip.a_obj) or [0])[0]

    def step_flags(self, clip: AVSSClip) -> dict:
        """The official loader's frame-valid and GT flags ``[10]``, and the subset."""
        frame_valid, gt_flag = avss_loader.flags(clip.subset)
        return {"frame_valid": frame_valid, "gt_flag": gt_flag, "subset": clip.subset}

    def record_extras(self) -> dict:
        """Build options beyond the common ones (manifest ``options``): subsets, what the loader did."""
        return {"subsets": list(self.subsets), **avss_loader.LOADER_NOTES}

    def shard_attrs(self, clips: list) -> dict:
        """Shard attributes beyond the common ones: its subsets, what the loader did, real steps."""
        return {"subsets": json.dumps(sorted({c.subset for c in clips})), **avss_loader.LOADER_NOTES,
                "frames_real": json.dumps(AVSS_REAL_STEPS)}
