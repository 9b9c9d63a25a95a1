"""What every release layout offers the stages: the :class:`Layout`, :class:`Clip` and :class:`Matcher`
protocols, and the facts all layouts share (splits, the GT-mask rule, frame numbering).

Implementations: :class:`avsprep.datasets.avsbench.AVSBenchLayout` (S4 / MS3) and
:class:`avsprep.datasets.avss.AVSSLayout` (AVSBench-semantic); :func:`avsprep.datasets.open_layout`
picks one for a root. ``import``, ``validate`` and ``build`` call these methods instead of asking which
release they have.

Frame numbering (the box table's ``frame`` column, ``clip`` / ``frame`` of a finding): a frame is
named by the number in its image file's name, as the release writes it, so the same number names the
same image on disk, in the table and in every message:

- S4 / MS3: ``k`` of ``{name}_{k}.png`` / ``{id}.mp4_{k}.png``, 1-based: 1..5;
- AVSS: ``i`` of ``frames/{i}.jpg``, 0-based: 0..4 (v1) or 0..9 (v2).

:meth:`Layout.frame_indices` lists a clip's frame numbers in time order; :func:`step_of` turns a frame
number into the 0-based time step of a shard item. Tables written before keep their meaning: the
values were always these.

The box table's ``category`` column holds :meth:`Layout.table_category`: the S4 category, ``""`` for
MS3, the subset (v1s / v1m / v2) for AVSS.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Optional, Protocol, Sequence, runtime_checkable

from avsprep.common.findings import Finding

if TYPE_CHECKING:  # annotations only
    import numpy as np

# Every release splits its clips the same three ways, in this order.
SPLITS: tuple[str, ...] = ("train", "val", "test")


def mask_frames(frames: Sequence[int], split: str, single_source: bool) -> list[int]:
    """Frames with a ground-truth mask: a single-source train clip (S4, AVSS v1s) has only its first
    frame's mask (semi-supervised); every other clip has one per frame."""
    return [frames[0]] if single_source and split == "train" else list(frames)


def step_of(layout: "Layout", clip: "Clip", frame: int) -> int:
    """0-based time step of a frame number (see the module docstring) in a shard item."""
    return list(layout.frame_indices(clip)).index(frame)


# Longest file-name component most file systems allow (ext4, APFS, NTFS: 255).
MAX_NAME_BYTES = 255


def safe_name(value: object) -> Optional[str]:
    """Why ``value`` (a clip name, uid, category, subset, video id or file stem read from a metadata
    CSV, an annotation file or a shard) cannot be used as ONE path component, or None when it can.

    The one rule for every name that becomes a path: not empty; no ``/`` or ``\\`` (so never
    absolute, never a path into another folder); not ``.`` or ``..``; no NUL or other control
    character (newline, TAB, DEL ...); no Windows drive (``C:``); at most 255 bytes in UTF-8. Anything
    else (spaces, commas, quotes, a leading ``-``, non-ASCII letters) is an ordinary file name."""
    if not isinstance(value, str):
        return f"is not text ({type(value).__name__})"
    if value == "":
        return "is empty"
    if "/" in value or "\\" in value:
        return "contains a path separator ('/' or '\\')"
    if value in (".", ".."):
        return f"is {value!r}, a folder reference"
    bad = next((c for c in value if ord(c) < 32 or 0x7F <= ord(c) < 0xA0), None)
    if bad is not None:
        return f"contains the control character {bad!r}"
    if len(value) >= 2 and value[1] == ":" and value[0].isalpha():
        return "starts with a Windows drive (X:)"
    if len(value.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        return f"is longer than {MAX_NAME_BYTES} bytes"
    return None


def check_name_columns(path: Path, df, columns: Sequence[str], optional: Sequence[str] = ()) -> None:
    """Refuse the first metadata row whose value in ``columns`` is not a :func:`safe_name` (``optional``
    columns may also be empty): one line naming the file, its CSV line and the column. Readers call
    this before any stage builds a path from a row."""
    from avsprep.common.errors import DataError  # here: base stays import-light

    for col in columns:
        if col not in df.columns:
            continue
        for row, value in enumerate(df[col]):
            if value == "" and col in optional:
                continue
            why = safe_name(value)
            if why is not None:
                raise DataError(f"{path} line {row + 2}: {col} {value!r} {why}; it names a folder or file, so it "
                                "must be a single plain file name - fix that row")


def walk_files(folder: Path) -> list[Path]:
    """Every file under ``folder`` (dotfiles included), sorted by relative path."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        found += [Path(dirpath) / n for n in filenames]
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


@runtime_checkable
class Clip(Protocol):
    """One clip of a release's metadata; each layout adds its own fields (S4 category, AVSS subset)."""

    name: str  # folder / file-name id: S4 name, MS3 video_id, AVSS uid
    split: str  # one of SPLITS


@runtime_checkable
class Matcher(Protocol):
    """Where an annotation file (a CreateML image entry) belongs: (clip name, frame number), by the
    layout's own rule. Methods are pure."""

    # severity of ``yolo-classes-differ``: "warning" where one class list per import is expected
    # (S4/MS3), "info" where labelImg writes one classes.txt per clip folder (AVSS)
    classes_differ_severity: str

    def where(self, stem: str, parts: tuple = (), image_parts: tuple = ()) -> Optional[tuple[str, int]]:
        """(clip name, frame number) of a file, from its stem / its path parts under the annotation folder
        (``image_parts``: a CreateML entry's image path), or None when it names no frame."""
        ...

    def bad_name(self, what: str) -> str:
        """Message of ``xml-bad-name`` for a file (``what``: "file name" / "image '...'")."""
        ...

    def no_clip(self, name: str, frame: int, rel: str) -> Finding:
        """The ``xml-no-clip`` finding for a frame of a clip that is not selected."""
        ...

    def frame_problem(self, clip, frame: int) -> Optional[str]:
        """Why ``frame`` is not a frame of ``clip`` (``frame-bad-index``), or None."""
        ...

    def hint(self) -> str:
        """Where annotation files are looked for, for the "no annotation files" error."""
        ...


@runtime_checkable
class Layout(Protocol):
    """One release root as the stages see it."""

    setting: str  # "s4" | "ms3" | "avss": the manifest's and the table sidecar's word for the layout
    root: Path
    steps: int  # time steps of a shard item: 5 (S4/MS3) or 10 (AVSS, v1 clips padded)

    @property
    def meta_path(self) -> Path: ...

    def describe(self) -> str:
        """What ``import`` says it read: ``s4``, ``ms3`` or ``avss; subsets v1s, v2``."""
        ...

    # -- clips and classes ---------------------------------------------------------------

    def clips(self, splits: Optional[Iterable[str]] = None) -> list[Clip]:
        """Selected clips of the chosen splits (all when None), sorted by name."""
        ...

    def csv_clips(self, splits: Optional[Iterable[str]] = None) -> list[Clip]:
        """Selected clips in metadata row order (the official test loop's order)."""
        ...

    def clip_index(self) -> dict[str, Clip]: ...

    def classes(self) -> list[str]:
        """Class list of the setting (AVSS: with background at 0)."""
        ...

    def box_classes(self) -> list[str]:
        """Classes a box label may name (AVSS: not background)."""
        ...

    def label_category(self, clip: Clip) -> Optional[str]:
        """The one class every box of ``clip`` must have (S4: its category), or None."""
        ...

    def allowed_labels(self, clip: Clip) -> Optional[set[str]]:
        """The classes a box of ``clip`` may name (AVSS: its a_obj classes), or None for no limit."""
        ...

    def table_category(self, clip: Clip) -> str:
        """What the box table's ``category`` column holds for ``clip`` (see the module docstring)."""
        ...

    # -- frames ---------------------------------------------------------------------------

    def frame_indices(self, clip: Clip) -> range:
        """The clip's frame numbers in time order (see "Frame numbering" above)."""
        ...

    def mask_frames(self, clip: Clip) -> list[int]:
        """Frame numbers with a GT mask (:func:`mask_frames`)."""
        ...

    def frame_path(self, clip: Clip, frame: int) -> Path: ...

    def mask_path(self, clip: Clip, frame: int) -> Path: ...

    def annotation_name(self, clip: Clip, frame: int) -> str:
        """The annotation file labelImg saves for a frame (``validate`` names it for a missing frame)."""
        ...

    # -- import ---------------------------------------------------------------------------

    def matcher(self) -> Matcher: ...

    def default_annotation_dir(self) -> Path:
        """Where ``import`` looks without ``--annotations``."""
        ...

    def annotation_files(self, ann_dir: Path) -> list[Path]:
        """Every file under ``ann_dir`` that import must account for, sorted."""
        ...

    # -- validate -------------------------------------------------------------------------

    def coverage_groups(self) -> list[str]:
        """Rows of the second coverage table (S4: classes, AVSS: subsets, MS3: none)."""
        ...

    def coverage_group(self, clip: Clip) -> str:
        """The row of that table ``clip`` counts in."""
        ...

    def size_frames(self, clip: Clip, annotated: Iterable[int]) -> list[int]:
        """Frames whose real size ``validate`` reads: the annotated ones (S4/MS3) or all (AVSS, whose
        release checks compare every mask with its frame)."""
        ...

    def extra_checks(self, clips: list[Clip], sizes: dict, errors: dict, quiet: bool = True) -> list[Finding]:
        """Checks of the release itself for ``validate`` (AVSS: metadata, files, masks, audio); [] for S4/MS3.
        ``sizes`` / ``errors``: :func:`avsprep.datasets.frames.read_frame_sizes` of :meth:`size_frames`."""
        ...

    # Two ways the layouts' validate runs have always differed; kept so reports stay as they were.
    # table_checks: also check the table against the metadata (rows of clips not in it, split/category
    # drift, unchecked proposals; import findings about clips outside the metadata kept): S4/MS3 yes.
    table_checks: bool
    no_box_hint: str  # the ``frame-no-box`` message's guess, in the layout's words

    def summary_fields(self) -> dict:
        """Layout-specific keys of the validate summary, after ``setting`` (AVSS: ``subsets``)."""
        ...

    # -- extract (avsprep.extract): real videos -> this layout ------------------------------

    frame_format: str  # image format of an extracted frame: "png" (S4/MS3) or "jpg" (AVSS)
    frame_quality: Optional[int]  # JPEG quality of an extracted frame (AVSS 95), None for PNG
    frame_size: Optional[int]  # side of the square extracted frames are resized to (S4/MS3 224), None: source size
    audio_rate: Optional[int]  # rate the wav keeps the decoded stream at (AVSS 48 kHz), None: moviepy's 16 kHz
    raw_meta_file: Optional[str]  # metadata CSV found next to the raw videos (S4/MS3), None: no raw-video tree
    meta_header: list[str]  # header of the metadata CSV ``extract`` writes
    meta_key: str  # the metadata column naming a clip (S4 name, MS3 video_id, AVSS uid)

    def read_meta(self, path: Path) -> "pandas.DataFrame":  # noqa: F821
        """A metadata CSV of this layout, every field a string, checked."""
        ...

    def missing_option(self, category: Optional[str], subset: Optional[str]) -> Optional[str]:
        """Why videos without a metadata CSV cannot be placed (S4: no --category; AVSS: no --label / --category), or None."""
        ...

    def video_clip(self, name: str, split: str, category: Optional[str], start: int = 0,
                   subset: Optional[str] = None) -> Clip:
        """The clip a source video becomes, from the ``extract`` options."""
        ...

    def row_clip(self, row, where: str) -> Clip:
        """The clip of a metadata row (``where``: ``{csv} line {n}`` for its errors)."""
        ...

    def clip_seconds(self, clip: Clip) -> int:
        """Seconds a clip lasts (S4 start rule; MS3 5; AVSS 5 or 10 by subset)."""
        ...

    def extract_frame_paths(self, clip: Clip) -> list[Path]:
        """The frame files ``extract`` writes for a clip, in time order."""
        ...

    def raw_video_path(self, clip: Clip) -> Optional[Path]:
        """Where the official layout keeps a clip's raw video (None: AVSS has no raw-video tree)."""
        ...

    def metadata_row(self, clip: Clip, video: str, start: int = 0, category: Optional[str] = None) -> dict:
        """The metadata CSV row ``extract`` writes for a clip cut ``start`` s into ``video``."""
        ...

    def seed_files(self) -> dict[str, str]:
        """Files a written root needs besides the metadata, name -> text (AVSS ``label2idx.json``)."""
        ...

    # -- one shard item (avsprep.build.clip) ------------------------------------------------

    table_frames: range  # box-table ``frame`` values a shard item can hold (S4/MS3 1..5, AVSS 0..9)
    crop_labels: bool  # whether a shard item carries the class of each step's cropped box (AVSS)

    def geometry(self, width: int, height: int, split: str):
        """How a frame of ``width`` x ``height`` becomes a stored 224 x 224 frame
        (:class:`avsprep.datasets.avss_loader.Geometry`)."""
        ...

    def decode_mask(self, image) -> "np.ndarray":
        """A GT mask image (already in its setting's PIL mode) -> the stored uint8 mask."""
        ...

    def audio_files(self, clip: Clip) -> list[Path]:
        """Every file ``clip_audio`` may read for ``clip`` (the build's input record)."""
        ...

    def clip_audio(self, clip: Clip) -> tuple["np.ndarray", str]:
        """The clip's log-mel examples ``[steps, 96, 64]`` and their source ("pickle" | "wav")."""
        ...

    def wav_examples(self, wave: "np.ndarray", sample_rate: int, name: str) -> "np.ndarray":
        """A clip's wav samples (float in [-1, 1]) -> its log-mel examples ``[steps, 96, 64]``, as
        ``clip_audio`` makes them from the wav (``avstrain segment`` feeds decoded windows here)."""
        ...

    def box_class(self, label: str) -> int:
        """Class index of a box label, -1 when it names no class."""
        ...

    def clip_label(self, clip: Clip) -> int:
        """The clip's class index stored as the shard item's ``label``."""
        ...

    def step_flags(self, clip: Clip) -> dict:
        """Per-clip arrays beyond the common ones (AVSS: ``frame_valid``, ``gt_flag``, subset)."""
        ...

    def record_extras(self) -> dict:
        """Build options beyond the common ones, for the manifest."""
        ...

    def shard_attrs(self, clips: list) -> dict:
        """Shard attributes beyond the common ones."""
        ...
