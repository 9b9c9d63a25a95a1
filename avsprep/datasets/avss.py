"""AVSBench-semantic (AVSS) release layout and ``metadata.csv`` (docs/reference/avss.md 1, 3).

``{root}/metadata.csv``, ``{root}/label2idx.json`` and one folder per clip:
``{root}/{subset}/{uid}/frames/{i}.jpg`` (0-based), ``labels_rgb/{i}.png``
(palette RGB), ``labels_semantic/{i}.png`` and ``audio.wav``. ``subset`` is the
metadata's ``label`` column (``v1s`` = S4 clips, ``v1m`` = MS3, ``v2`` = 10-s
clips). Columns are read by name, as the official loader does. Frame numbers are
0-based (``i`` of ``frames/{i}.jpg``; :mod:`avsprep.datasets.base`).

Import (:class:`PlaceMatcher`, :func:`annotation_files`): labelImg saves
``frames/{i}.xml`` (VOC), ``frames/{i}.txt`` (YOLO, with ``classes.txt`` beside it)
or ``frames/{i}.json`` (CreateML) next to ``frames/{i}.jpg``. The frame names
carry no uid, so a file is matched by its place: the folder above ``frames/`` is
the uid (under ``--annotations DIR`` also ``DIR/{uid}/{i}.xml``). A CreateML file
may hold several images: each entry is frame i of its own image name (``3.jpg``)
in the clip the JSON lies in (or, when that is no clip, the clip its image path
names). Labels are kept as written; ``validate`` checks each against the clip's
a_obj classes (:meth:`AVSSLayout.allowed_labels`).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

import numpy as np

from avsprep.audio import read_wav, waveform_to_examples
from avsprep.common.errors import DataError
from avsprep.common.findings import Finding
from avsprep.datasets import avss_loader
from avsprep.datasets.avss_classes import (
    AVSS_CLASSES, box_class, clip_classes, decode_rgb_mask, label2idx_json, read_label2idx,
)
from avsprep.datasets.base import SPLITS, check_name_columns, mask_frames
from avsprep.datasets.steps import AVSS_REAL_STEPS, STEPS_PER_CLIP

SUBSETS = ("v1s", "v1m", "v2")
META_FILE = "metadata.csv"
LABEL_FILE = "label2idx.json"
META_COLUMNS = ["uid", "label", "split", "a_obj"]
# The full header of the release's metadata.csv (the toolkit reads META_COLUMNS; ``extract`` writes all).
META_HEADER = ["vid", "uid", "s_min", "s_sec", "a_obj", "split", "label"]
# Extracted clips (no official script; reference/avss.md 1.3): frames JPEG at the source resolution
# (one per second), audio.wav 48 kHz stereo 16-bit.
AUDIO_RATE = 48000
JPEG_QUALITY = 95


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
                        f"{','.join(META_HEADER)})")
    bad = df[~df["split"].isin(SPLITS)]
    if len(bad):
        raise DataError(f"{path} line {bad.index[0] + 2}: split {bad['split'].iloc[0]!r} is not one of "
                        f"{', '.join(SPLITS)}")
    bad = df[~df["label"].isin(SUBSETS)]
    if len(bad):
        raise DataError(f"{path} line {bad.index[0] + 2}: label {bad['label'].iloc[0]!r} is not one of "
                        f"{', '.join(SUBSETS)} (the subset column)")
    check_name_columns(path, df, ["uid"])
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
    """Paths of one AVSS release root, restricted to the chosen subsets (a
    :class:`avsprep.datasets.base.Layout`)."""

    setting = "avss"
    steps = STEPS_PER_CLIP["avss"]  # time steps of a shard item; v1 clips are padded from 5
    table_checks = False
    no_box_hint = "sound source off-screen?"

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

    def box_classes(self) -> list[str]:
        """A box never says "background"."""
        return AVSS_CLASSES[1:]

    def label_category(self, clip: AVSSClip) -> None:
        return None

    def allowed_labels(self, clip: AVSSClip) -> Optional[set[str]]:
        """The clip's a_obj classes (typos mapped); None when a_obj names none (off-the-screen,
        background): nothing to compare with."""
        return {AVSS_CLASSES[c] for c in clip_classes(clip.a_obj)} or None

    def table_category(self, clip: AVSSClip) -> str:
        """The table's ``category`` for AVSS: the subset."""
        return clip.subset

    def describe(self) -> str:
        return f"avss; subsets {', '.join(self.subsets)}"

    def frame_indices(self, clip: AVSSClip) -> range:
        """Frame numbers 0..n-1 (``i`` of ``frames/{i}.jpg``; n = 5 for v1, 10 for v2)."""
        return range(clip.frames)

    def mask_frames(self, clip: AVSSClip) -> list[int]:
        """0-based frames with a mask: ``v1s`` train has only ``0.png`` (docs/reference/avss.md 1.3)."""
        return mask_frames(self.frame_indices(clip), clip.split, single_source=clip.subset == "v1s")

    # -- import ---------------------------------------------------------------------

    def matcher(self) -> "PlaceMatcher":
        return PlaceMatcher(self)

    def default_annotation_dir(self) -> Path:
        return self.root

    def annotation_files(self, ann_dir: Path) -> list[Path]:
        return annotation_files(ann_dir, self.root)

    # -- validate -------------------------------------------------------------------

    def annotation_name(self, clip: AVSSClip, i: int) -> str:
        return f"frames/{i}.xml"

    def coverage_groups(self) -> list[str]:
        """One coverage row per selected subset."""
        return list(self.subsets)

    def coverage_group(self, clip: AVSSClip) -> str:
        return clip.subset

    def size_frames(self, clip: AVSSClip, annotated: Iterable[int]) -> list[int]:
        """Every frame: the release checks compare each mask with its frame."""
        return list(self.frame_indices(clip))

    def extra_checks(self, clips: list[AVSSClip], sizes: dict, errors: dict, quiet: bool = True) -> list[Finding]:
        """The release checks of :mod:`avsprep.validate.avss_release` (metadata, files, masks, audio)."""
        # imported here: avsprep.validate imports this package
        from avsprep.validate.avss_release import check_release

        return check_release(self, clips, sizes, errors, quiet=quiet)

    def summary_fields(self) -> dict:
        return {"subsets": list(self.subsets)}

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

    # -- extract (avsprep.extract): real videos -> this layout ------------------------------

    frame_format = "jpg"  # image format of an extracted frame
    frame_quality: Optional[int] = JPEG_QUALITY  # JPEG quality of an extracted frame
    frame_size: Optional[int] = None  # extracted frames keep the source size
    audio_rate: Optional[int] = AUDIO_RATE  # audio.wav: the decoded stream at 48 kHz stereo
    raw_meta_file: Optional[str] = None  # no official raw-video tree, so no CSV next to raw videos
    meta_header = META_HEADER  # header of the metadata.csv ``extract`` writes
    meta_key = "uid"  # the metadata column naming a clip

    def read_meta(self, path: Path | str):
        """A ``metadata.csv``, every field a string (:func:`read_avss_metadata`)."""
        return read_avss_metadata(path)

    def missing_option(self, category: Optional[str], subset: Optional[str]) -> Optional[str]:
        """Why videos cannot be placed with these options (AVSS needs ``--label`` and ``--category``), or None."""
        if subset not in AVSS_REAL_STEPS:
            return ("AVSS videos need --label v1s|v1m|v2 (the subset: 5-s single-source, 5-s "
                    "multi-source, 10-s clips)")
        if not category:
            return ("AVSS videos need --category: the sounding classes joined by '_' (a_obj, e.g. "
                    "--category dog or --category woman_piano)")
        return None

    def video_clip(self, name: str, split: str, category: Optional[str], start: int = 0,
                   subset: Optional[str] = None) -> AVSSClip:
        """The clip a source video becomes (``category``: the a_obj text, ``subset``: ``--label``)."""
        return AVSSClip(name, split, subset, parse_a_obj(category or ""))

    def row_clip(self, row, where: str) -> AVSSClip:
        """The clip of a ``metadata.csv`` row (``where`` unused: the row was checked when read)."""
        return AVSSClip(row["uid"], row["split"], row["label"], parse_a_obj(row["a_obj"]))

    def clip_seconds(self, clip: AVSSClip) -> int:
        """Seconds a clip lasts: 5 (v1s, v1m) or 10 (v2)."""
        return AVSS_REAL_STEPS[clip.subset]

    def extract_frame_paths(self, clip: AVSSClip) -> list[Path]:
        """The frame files ``extract`` writes for a clip, in time order (0..seconds-1)."""
        return [self.frame_path(clip, i) for i in range(self.clip_seconds(clip))]

    def raw_video_path(self, clip: AVSSClip) -> None:
        """None: the AVSS release has no raw-video tree."""
        return None

    def metadata_row(self, clip: AVSSClip, video: str, start: int = 0, category: Optional[str] = None) -> dict:
        """The ``metadata.csv`` row of a clip cut ``start`` s into ``video`` (``category``: the a_obj
        text as given; the clip's classes joined by '_' when None)."""
        a_obj = category if category is not None else "_".join(clip.a_obj)
        return {"vid": Path(video).stem, "uid": clip.name, "s_min": str(start // 60), "s_sec": str(start % 60),
                "a_obj": a_obj, "split": clip.split, "label": clip.subset}

    def seed_files(self) -> dict[str, str]:
        """Files a written root needs besides the metadata, name -> text (``label2idx.json``: the 71 classes)."""
        return {LABEL_FILE: label2idx_json()}  # as released: values 1..71 in class order

    # -- one shard item (avsprep.build.clip) ------------------------------------------
    # What a clip becomes in a shard, as the official loader makes it (avsprep.datasets.avss_loader).

    table_frames = range(STEPS_PER_CLIP["avss"])  # the box table's 0-based ``frame``
    crop_labels = True  # ``crop_label``: the class of the cropped box per step

    def geometry(self, width: int, height: int, split: str) -> avss_loader.Geometry:
        """train: short edge 224 + centre crop; val/test: resize to 224x224."""
        return avss_loader.geometry(width, height, split)

    def decode_mask(self, image) -> np.ndarray:
        """An RGB ``labels_rgb`` mask -> class indices through the palette (off-palette colours: 0)."""
        return decode_rgb_mask(np.asarray(image))[0]

    def audio_files(self, clip: AVSSClip) -> list[Path]:
        """The files ``clip_audio`` reads: ``audio.wav``."""
        return [self.wav_path(clip)]

    def clip_audio(self, clip: AVSSClip) -> tuple[np.ndarray, str]:
        """10 log-mel examples ``[10, 96, 64]`` from ``audio.wav`` (zeros after the real ones), "wav"."""
        wav = self.wav_path(clip)
        wave, sr = read_wav(wav)
        return self.wav_examples(wave, sr, str(wav)), "wav"

    def wav_examples(self, wave: np.ndarray, sample_rate: int, name: str) -> np.ndarray:
        """``[10, 96, 64]``: the wav's examples, zeros after them (v1 clips), as the official forward."""
        return avss_loader.audio_examples(waveform_to_examples(wave, sample_rate), name=name)

    def box_class(self, label: str) -> int:
        """AVSS class index of a box label (exact spelling, the h orse typo mapped), -1 when unknown."""
        return box_class(label)

    def clip_label(self, clip: AVSSClip) -> int:
        """The clip's ``label``: its first sounding class (0 when a_obj names none)."""
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

# -- import: where an annotation file lies -> (uid, frame i) ----------------------------------

_INDEX = re.compile(r"^(0|[1-9][0-9]?)\.(xml|txt|json|jpe?g|png)$", re.I)
PLACE = "{subset}/{uid}/frames/{i}.xml|.txt|.json"
# per clip folder: what the release itself holds besides frames/ (never annotation files)
RELEASE_DIRS = ("labels_rgb", "labels_semantic")
RELEASE_FILES = ("audio.wav",)


def match_path(rel_parts: tuple[str, ...]) -> Optional[tuple[str, int]]:
    """Path parts (relative) -> (uid, i) for ``.../{uid}/frames/{i}.{xml,txt,json,jpg}`` or
    ``{uid}/{i}.{ext}`` (pure)."""
    if len(rel_parts) < 2:
        return None
    m = _INDEX.match(rel_parts[-1])
    if not m:
        return None
    i = int(m.group(1))
    if rel_parts[-2] == "frames":
        return (rel_parts[-3], i) if len(rel_parts) >= 3 else None
    return rel_parts[-2], i


def is_release_file(rel_parts: tuple[str, ...]) -> bool:
    """True for the release's own files (metadata.csv, label2idx.json, masks, audio.wav), given
    their path parts relative to the release root (pure)."""
    if len(rel_parts) == 1:
        return rel_parts[0] in (META_FILE, LABEL_FILE)
    if len(rel_parts) >= 3 and rel_parts[0] in SUBSETS:
        return rel_parts[2] in RELEASE_DIRS or (len(rel_parts) == 3 and rel_parts[2] in RELEASE_FILES)
    return False


def annotation_files(ann_dir: Path, root: Path) -> list[Path]:
    """Every file under ``ann_dir`` except the release's own (when ``ann_dir`` is in the release),
    sorted; the mask folders are not walked at all."""
    ann_dir, root = Path(ann_dir), Path(root)
    try:
        base = ann_dir.absolute().relative_to(root.absolute()).parts
    except ValueError:
        base = None
    found = []
    for dirpath, dirnames, filenames in os.walk(ann_dir):
        here = Path(dirpath)
        rel = None if base is None else base + here.relative_to(ann_dir).parts
        if rel is not None:
            dirnames[:] = [d for d in dirnames if not is_release_file(rel + (d, "x"))]
        dirnames.sort()
        found += [here / n for n in filenames if rel is None or not is_release_file(rel + (n,))]
    return sorted(found, key=lambda p: p.relative_to(ann_dir).as_posix())


class PlaceMatcher:
    """AVSS: a file is frame i of clip uid by its place, ``{uid}/frames/{i}.{ext}`` (a
    :class:`avsprep.datasets.base.Matcher`; pure methods)."""

    # labelImg writes one classes.txt per folder, i.e. per clip: differing lists are expected here
    classes_differ_severity = "info"

    def __init__(self, layout: "AVSSLayout"):
        self.layout = layout
        self.all_uids = {c.name for c in layout.all_clips()}

    def where(self, stem: str, parts: tuple = (), image_parts: tuple = ()) -> Optional[tuple[str, int]]:
        """(uid, i) from the file's place; a CreateML entry whose JSON lies in no clip's folder falls
        back to the clip its image path names (``.../{uid}/frames/3.jpg``)."""
        placed = match_path(tuple(parts))
        if image_parts and (placed is None or placed[0] not in self.all_uids):
            by_image = match_path(tuple(image_parts))
            if by_image is not None and by_image[0] in self.all_uids:
                return by_image
        return placed

    def bad_name(self, what: str) -> str:
        return f"{what}: not at {PLACE} (i = 0..9); not imported"

    def no_clip(self, uid: str, frame: int, rel: str) -> Finding:
        known = uid in self.all_uids
        why = "its subset is not selected (--subset)" if known else f"uid {uid!r} is not listed in {META_FILE}"
        return Finding("xml-no-clip", "info" if known else "warning", f"{why}; not imported", rel, uid, frame)

    def frame_problem(self, clip, frame: int) -> Optional[str]:
        frames = self.layout.frame_indices(clip)
        if frame not in frames:
            return (f"frame {frame} but a {clip.subset} clip has frames {frames[0]}..{frames[-1]}; "
                    "not imported")
        return None

    def hint(self) -> str:
        return (f"save the labelImg files next to the frames ({PLACE}) or pass --annotations DIR")
