"""AVSBench S4/MS3 directory layout and metadata CSV (docs/reference/avsbench.md 1.2, 1.3).

An AVSBench root is the folder holding ``s4_meta_data.csv`` and ``s4_data/``
(Single-source) or ``ms3_meta_data.csv`` and ``ms3_data/`` (Multi-sources).
Every path the toolkit opens is derived here from (clip, frame); paths written
inside annotation files are never used. Annotation files are matched to frames by
their own stem (:class:`StemMatcher`). Frame numbers are 1-based (``k`` of
``{name}_{k}.png``; :mod:`avsprep.datasets.base`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

import numpy as np

from avsprep.audio import sources as audio_sources
from avsprep.common.errors import DataError
from avsprep.common.findings import Finding
from avsprep.datasets.avss_loader import SIZE, Geometry
from avsprep.datasets.base import SPLITS, check_name_columns, mask_frames, walk_files
from avsprep.datasets.classes import normalise_label
from avsprep.datasets.frames import frame_image_findings
from avsprep.datasets.steps import STEPS_PER_CLIP

# Exact spelling and order of the AVSBench code (docs/reference/avsbench.md 1.6).
S4_CLASSES: list[str] = [
    "baby_laughter", "female_singing", "male_speech", "dog_barking", "cat_meowing",
    "lions_roaring", "horse_clip-clop", "coyote_howling", "mynah_bird_singing",
    "playing_acoustic_guitar", "playing_tabla", "playing_violin", "playing_piano",
    "playing_ukulele", "playing_glockenspiel", "helicopter", "race_car",
    "driving_buses", "ambulance_siren", "typing_on_computer_keyboard",
    "chainsawing_trees", "cap_gun_shooting", "lawn_mowing",
]
# MS3 has no per-clip category; every box marks "a sounding object".
MS3_CLASSES: list[str] = ["sounding"]

SETTINGS = ("s4", "ms3")
FRAMES = STEPS_PER_CLIP["s4"]  # frames per S4/MS3 clip, numbered 1..5 (datasets.base: frame numbering)
META_FILES = {"s4": "s4_meta_data.csv", "ms3": "ms3_meta_data.csv"}
META_COLUMNS = {"s4": ["name", "start", "category", "split"], "ms3": ["video_id", "split"]}
DATA_DIRS = {"s4": "s4_data", "ms3": "ms3_data"}
RAW_VIDEOS = "raw_videos"  # the official scripts' input: {data_dir}/raw_videos/... (raw_video_path)
CLASSES = {"s4": S4_CLASSES, "ms3": MS3_CLASSES}  # the class list of each setting

_S4_STEM = re.compile(r"^(?P<video>.+)_(?P<k>[1-9][0-9]*)$", re.S)
_MS3_STEM = re.compile(r"^(?P<video>.+)\.mp4_(?P<k>[1-9][0-9]*)$", re.S)


@dataclass(frozen=True)
class Clip:
    """One 5-second clip listed in the metadata (``category``/``start`` None for MS3)."""

    name: str
    split: str
    category: Optional[str] = None
    start: Optional[int] = None


def parse_frame_stem(stem: str, setting: str) -> Optional[tuple[str, int]]:
    """Frame file stem -> (video, k), or None when it is not a frame name.

    S4: ``{name}_{k}`` (split on the last ``_``; names may start with ``-`` and
    contain ``_``). MS3: ``{id}.mp4_{k}``. ``k`` must be 1..5.
    """
    pattern = _S4_STEM if setting == "s4" else _MS3_STEM
    m = pattern.match(stem)
    if not m:
        return None
    k = int(m.group("k"))
    if not 1 <= k <= FRAMES:
        return None
    return m.group("video"), k


def read_metadata(path: Path | str, setting: Optional[str] = None) -> "pandas.DataFrame":  # noqa: F821
    """Read a metadata CSV with every field as a string (ids like ``0001`` stay as written)."""
    import pandas as pd

    path = Path(path)
    if setting is None:
        setting = "ms3" if path.name.startswith("ms3") else "s4"
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read the metadata CSV ({exc}); "
                        "use the file shipped with AVSBench") from exc
    missing = [c for c in META_COLUMNS[setting] if c not in df.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)} "
                        f"(expected header {','.join(META_COLUMNS[setting])})")
    id_col = META_COLUMNS[setting][0]
    bad = df[~df["split"].isin(SPLITS)]
    if len(bad):
        row = bad.index[0] + 2
        raise DataError(f"{path} line {row}: split {bad['split'].iloc[0]!r} is not one of "
                        f"{', '.join(SPLITS)}")
    check_name_columns(path, df, [id_col, "category"], optional=["category"])
    dup = df[df[id_col].duplicated()]
    if len(dup):
        raise DataError(f"{path}: clip {dup[id_col].iloc[0]!r} is listed twice; "
                        "each clip must appear once")
    return df


class AVSBenchLayout:
    """Paths of one AVSBench root for one setting (a :class:`avsprep.datasets.base.Layout`)."""

    steps = FRAMES
    table_checks = True
    no_box_hint = "sounding object off-screen?"

    def __init__(self, root: Path | str, setting: str):
        if setting not in SETTINGS:
            raise DataError(f"unknown setting {setting!r}; use s4 or ms3")
        self.root = Path(root)
        self.setting = setting
        self._meta = None
        self._clips: Optional[list[Clip]] = None

    # -- construction ---------------------------------------------------------------

    @classmethod
    def from_root(cls, root: Path | str, setting: Optional[str] = None) -> "AVSBenchLayout":
        """Open ``root``; infer the setting from the metadata CSV present when not given."""
        root = Path(root)
        if not root.is_dir():
            raise DataError(f"{root} is not a folder; pass the AVSBench root "
                            "(the folder holding s4_meta_data.csv or ms3_meta_data.csv)")
        present = [s for s in SETTINGS if (root / META_FILES[s]).is_file()]
        if setting is None:
            if len(present) != 1:
                what = "both" if present else "neither"
                raise DataError(f"{root} holds {what} of s4_meta_data.csv and ms3_meta_data.csv; "
                                "pass the Single-source or Multi-sources folder, or --setting")
            setting = present[0]
        elif setting not in present:
            raise DataError(f"{root} has no {META_FILES.get(setting, setting)}; "
                            "pass the AVSBench root for that setting")
        return cls(root, setting)

    # -- metadata -------------------------------------------------------------------

    @property
    def meta_path(self) -> Path:
        return self.root / META_FILES[self.setting]

    @property
    def metadata(self):
        if self._meta is None:
            self._meta = read_metadata(self.meta_path, self.setting)
        return self._meta

    def clips(self, splits: Optional[Iterable[str]] = None) -> list[Clip]:
        """Clips of the chosen splits (all when None), sorted by name."""
        if self._clips is None:
            df = self.metadata
            if self.setting == "s4":
                out = []
                for name, start, cat, split in zip(df["name"], df["start"], df["category"], df["split"]):
                    try:
                        start_i = int(start) if start != "" else None
                    except ValueError:
                        raise DataError(f"{self.meta_path}: clip {name!r} has start {start!r}, "
                                        "not an integer number of seconds") from None
                    out.append(Clip(name, split, cat, start_i))
            else:
                out = [Clip(v, s) for v, s in zip(df["video_id"], df["split"])]
            self._csv_clips = out
            self._clips = sorted(out, key=lambda c: c.name)
        if splits is None:
            return list(self._clips)
        wanted = set(splits)
        return [c for c in self._clips if c.split in wanted]

    def csv_clips(self, splits: Optional[Iterable[str]] = None) -> list[Clip]:
        """Clips of the chosen splits in metadata CSV row order (the order the official test loop
        iterates; ``avsprep build`` records it in the manifest)."""
        self.clips()
        wanted = None if splits is None else set(splits)
        return [c for c in self._csv_clips if wanted is None or c.split in wanted]

    def clip_index(self) -> dict[str, Clip]:
        return {c.name: c for c in self.clips()}

    def classes(self) -> list[str]:
        return list(CLASSES[self.setting])

    def box_classes(self) -> list[str]:
        return self.classes()

    def label_category(self, clip: Clip) -> Optional[str]:
        """S4: a box must name the clip's category; MS3: any box is "sounding"."""
        return clip.category if self.setting == "s4" else None

    def allowed_labels(self, clip: Clip) -> None:
        return None

    def box_label(self, clip: Clip) -> str:
        """The label a proposed box of ``clip`` gets: the S4 category; MS3's one class "sounding"."""
        return self.label_category(clip) or MS3_CLASSES[0]

    def table_category(self, clip: Clip) -> str:
        """The table's ``category``: the S4 category, "" for MS3."""
        return clip.category or ""

    def describe(self) -> str:
        return self.setting

    def frame_indices(self, clip: Clip) -> range:
        """Frame numbers 1..5 (``k`` of ``{name}_{k}.png``)."""
        return range(1, FRAMES + 1)

    def mask_frames(self, clip: Clip) -> list[int]:
        """Frames with a GT mask: S4 train has only frame 1 (semi-supervised)."""
        return mask_frames(self.frame_indices(clip), clip.split, single_source=self.setting == "s4")

    # -- import ---------------------------------------------------------------------

    def matcher(self) -> "StemMatcher":
        return StemMatcher(self)

    def default_annotation_dir(self) -> Path:
        return self.frames_dir()

    def annotation_files(self, ann_dir: Path) -> list[Path]:
        """Every file under ``ann_dir`` (dotfiles included), sorted for determinism."""
        return walk_files(ann_dir)

    # -- validate -------------------------------------------------------------------

    def annotation_name(self, clip: Clip, k: int) -> str:
        return f"{self.frame_stem(clip, k)}.xml"

    def coverage_groups(self) -> list[str]:
        """S4: one coverage row per class; MS3: none."""
        return self.classes() if self.setting == "s4" else []

    def coverage_group(self, clip: Clip) -> str:
        return clip.category or ""

    def size_frames(self, clip: Clip, annotated: Iterable[int]) -> list[int]:
        return list(annotated)

    def extra_checks(self, clips: list[Clip], sizes: dict, errors: dict, quiet: bool = True) -> list[Finding]:
        """The annotated frames whose image is missing or unreadable."""
        keys = [(c, k) for c in clips for k in self.frame_indices(c)]
        return frame_image_findings(self, keys, errors)

    def summary_fields(self) -> dict:
        return {}

    # -- paths ----------------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        return self.root / DATA_DIRS[self.setting]

    def frames_dir(self) -> Path:
        """Top of the frame tree; the default folder searched for annotation XMLs."""
        return self.data_dir / "visual_frames"

    def frame_stem(self, clip: Clip, k: int) -> str:
        return f"{clip.name}_{k}" if self.setting == "s4" else f"{clip.name}.mp4_{k}"

    def frame_path(self, clip: Clip, k: int) -> Path:
        if self.setting == "s4":
            return self.frames_dir() / clip.split / clip.category / clip.name / f"{clip.name}_{k}.png"
        return self.frames_dir() / clip.name / f"{clip.name}.mp4_{k}.png"

    def mask_path(self, clip: Clip, k: int) -> Path:
        base = self.data_dir / "gt_masks" / clip.split
        if self.setting == "s4":
            base = base / clip.category
        return base / clip.name / f"{clip.name}_{k}.png"

    def logmel_path(self, clip: Clip) -> Path:
        base = self.data_dir / "audio_log_mel" / clip.split
        if self.setting == "s4":
            base = base / clip.category
        return base / f"{clip.name}.pkl"

    def wav_path(self, clip: Clip) -> Path:
        base = self.data_dir / "audio_wav" / clip.split
        if self.setting == "s4":
            base = base / clip.category
        return base / f"{clip.name}.wav"

    # -- extract (avsprep.extract): real videos -> this layout ------------------------------
    # The official preprocess_s4.py / preprocess_ms3.py: 224x224 PNG frames, the 16 kHz wav as
    # moviepy 1.x writes it (avsprep.extract.audio).

    frame_format = "png"  # image format of an extracted frame
    frame_quality: Optional[int] = None  # JPEG quality of an extracted frame (None: PNG)
    frame_size: Optional[int] = SIZE  # side of the square an extracted frame is resized to (None: source size)
    audio_rate: Optional[int] = None  # rate the wav keeps the decoded stream at (None: moviepy's 16 kHz write)

    @property
    def raw_meta_file(self) -> Optional[str]:
        """Name of the metadata CSV that lies next to the raw videos (None: no official raw-video tree)."""
        return META_FILES[self.setting]

    @property
    def meta_header(self) -> list[str]:
        """Header of the metadata CSV ``extract`` writes."""
        return list(META_COLUMNS[self.setting])

    @property
    def meta_key(self) -> str:
        """The metadata column naming a clip (S4 ``name``, MS3 ``video_id``)."""
        return META_COLUMNS[self.setting][0]

    def read_meta(self, path: Path | str):
        """A metadata CSV of this setting, every field a string (:func:`read_metadata`)."""
        return read_metadata(path, self.setting)

    def missing_option(self, category: Optional[str], subset: Optional[str]) -> Optional[str]:
        """Why videos without a metadata CSV cannot be placed with these options (S4 needs
        ``--category``), or None."""
        if self.setting == "s4" and not category:
            return ("S4 videos without a metadata CSV need --category (e.g. --category "
                    "dog_barking) or --csv listing name,start,category,split")
        return None

    def video_clip(self, name: str, split: str, category: Optional[str], start: int = 0,
                   subset: Optional[str] = None) -> Clip:
        """The clip a source video becomes (``category``: S4's ``--category``; ``subset`` unused)."""
        return Clip(name, split, category if self.setting == "s4" else None, start)

    def row_clip(self, row, where: str) -> Clip:
        """The clip of a metadata row (``where``: ``{csv} line {n}``, for the S4 start error)."""
        if self.setting != "s4":
            return Clip(row[self.meta_key], row["split"], None, 0)
        try:
            start = int(float(row["start"] or 0))
        except ValueError:
            raise DataError(f"{where}: start {row['start']!r} is not a number of seconds; fix the row") from None
        return Clip(row["name"], row["split"], row.get("category"), start)

    def clip_seconds(self, clip: Clip) -> int:
        """Seconds a clip lasts: S4 ``5 if start <= 5 else 10 - start`` (the official rule), MS3 5."""
        start = clip.start or 0
        return FRAMES if start <= 5 else 10 - start

    def extract_frame_paths(self, clip: Clip) -> list[Path]:
        """The frame files ``extract`` writes for a clip, in time order (1..seconds)."""
        return [self.frame_path(clip, k) for k in range(1, self.clip_seconds(clip) + 1)]

    def raw_video_path(self, clip: Clip) -> Optional[Path]:
        """Where the official layout keeps a clip's raw video (S4 ``raw_videos/{split}/{category}/``)."""
        base = self.data_dir / RAW_VIDEOS
        if self.setting == "s4":
            return base / clip.split / clip.category / f"{clip.name}.mp4"
        return base / f"{clip.name}.mp4"

    def seed_files(self) -> dict[str, str]:
        """Files a written root needs besides the metadata: none."""
        return {}

    def metadata_row(self, clip: Clip, video: str, start: int = 0, category: Optional[str] = None) -> dict:
        """The metadata CSV row ``extract`` writes for a clip cut ``start`` s into ``video``
        (S4/MS3 need neither; ``category``: the ``--category`` text as given)."""
        if self.setting == "s4":
            return {"name": clip.name, "start": str(clip.start), "category": clip.category, "split": clip.split}
        return {"video_id": clip.name, "split": clip.split}

    # -- one shard item (avsprep.build.clip) ------------------------------------------
    # What a clip becomes in a shard; AVSSLayout answers the same questions for AVSS.

    crop_labels = False  # no per-step class of the cropped box (AVSS shards have one)

    @property
    def table_frames(self) -> range:
        """Box-table ``frame`` values a shard item can hold: 1..5."""
        return range(1, self.steps + 1)

    def geometry(self, width: int, height: int, split: str) -> Geometry:
        """Every split: resize to 224x224 (= the AVSS val/test geometry)."""
        return Geometry(width, height, SIZE, SIZE, 0, 0, SIZE)

    def decode_mask(self, image) -> np.ndarray:
        """A GT mask already converted to its setting's PIL mode -> stored uint8 (mode '1': 0/1;
        mode 'P': the palette index, which the official ``ToTensor`` divides by 255)."""
        return np.asarray(image, dtype=np.uint8) if image.mode != "1" else np.asarray(image).astype(np.uint8)

    def audio_files(self, clip: Clip) -> list[Path]:
        """The files ``clip_audio`` may read: the log-mel pickle (used when present), then the wav."""
        return [self.logmel_path(clip), self.wav_path(clip)]

    def clip_audio(self, clip: Clip) -> tuple[np.ndarray, str]:
        """The clip's 5 log-mel examples ``[5, 96, 64]`` and their source ("pickle" or "wav")."""
        return audio_sources.clip_audio(self, clip)

    def wav_examples(self, wave: np.ndarray, sample_rate: int, name: str) -> np.ndarray:
        """5 examples ``[5, 96, 64]``: the last repeated when short, the first 5 kept when long
        (the official loader's rule, ``clip_examples``; what ``clip_audio`` does with a wav)."""
        return audio_sources.clip_examples(wave, sample_rate, audio_sources.CLIP_EXAMPLES, name=name)

    def box_class(self, label: str) -> int:
        """Class index of a box label (case/whitespace drift accepted), -1 when unknown."""
        if getattr(self, "_box_index", None) is None:
            self._box_index = {normalise_label(n): i for i, n in enumerate(self.classes())}
        return self._box_index.get(normalise_label(str(label)), -1)

    def clip_label(self, clip: Clip) -> int:
        """The clip's ``label``: the S4 category's class index (0 when none, and for MS3)."""
        classes = self.classes()
        return classes.index(clip.category) if clip.category in classes else 0

    def step_flags(self, clip: Clip) -> dict:
        """Per-clip arrays beyond the common ones: none for S4/MS3."""
        return {}

    def record_extras(self) -> dict:
        """Build options beyond the common ones (manifest ``options``): none for S4/MS3."""
        return {}

    def shard_attrs(self, clips: list) -> dict:
        """Shard attributes beyond the common ones: none for S4/MS3."""
        return {}

class StemMatcher:
    """S4/MS3: a file (a CreateML image) is a frame by its own stem, ``{name}_{k}`` / ``{id}.mp4_{k}``
    (a :class:`avsprep.datasets.base.Matcher`; :class:`avsprep.datasets.avss.PlaceMatcher` matches AVSS
    files by their place instead). Methods are pure."""

    classes_differ_severity = "warning"

    def __init__(self, layout: AVSBenchLayout):
        self.layout = layout
        self.pattern = "{name}_{k}" if layout.setting == "s4" else "{id}.mp4_{k}"

    def where(self, stem: str, parts: tuple = (), image_parts: tuple = ()) -> Optional[tuple[str, int]]:
        """(video, frame) of a file stem, or None when it is not a frame name."""
        return parse_frame_stem(stem, self.layout.setting)

    def bad_name(self, what: str) -> str:
        return f"{what} is not a frame name ({self.pattern}, k = 1..5); not imported"

    def no_clip(self, video: str, frame: int, rel: str) -> Finding:
        return Finding("xml-no-clip", "warning",
                       f"video {video!r} is not listed in {self.layout.meta_path.name}; not imported",
                       rel, video, frame)

    def frame_problem(self, clip, frame: int) -> Optional[str]:
        return None  # the stem pattern already limits k to 1..5

    def hint(self) -> str:
        return "save the labelImg annotations there or pass --annotations DIR"
