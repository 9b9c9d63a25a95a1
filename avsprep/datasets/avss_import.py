"""``avsprep import`` for an AVSS release: where an annotation file lies -> (uid, frame i).

labelImg saves ``frames/{i}.xml`` (VOC), ``frames/{i}.txt`` (YOLO, with
``classes.txt`` beside it) or ``frames/{i}.json`` (CreateML) next to
``frames/{i}.jpg``. The frame names carry no uid, so a file is matched by its
place: the folder above ``frames/`` is the uid (under ``--annotations DIR`` also
``DIR/{uid}/{i}.xml``). A CreateML file may hold several images: each entry is
frame i of its own image name (``3.jpg``) in the clip the JSON lies in (or, when
that is no clip, the clip its image path names). Everything else - reading the
three formats, the YOLO class files, one box convention per import, the real
frame size for YOLO - is :func:`avsprep.importer.import_annotations`, the same as
for S4/MS3. In the box table, for AVSS, ``category`` is the subset (v1s/v1m/v2)
and ``frame`` the 0-based file index i. Labels are kept as written; ``validate``
checks each against the clip's a_obj classes (:mod:`avsprep.validate.avss`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Optional

from avsprep.datasets.avss import LABEL_FILE, META_FILE, SUBSETS, AVSSLayout
from avsprep.common.findings import Finding

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
    """AVSS: a file is frame i of clip uid by its place, ``{uid}/frames/{i}.{ext}`` (pure methods)."""

    # labelImg writes one classes.txt per folder, i.e. per clip: differing lists are expected here
    classes_differ_severity = "info"

    def __init__(self, layout: AVSSLayout):
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
        if frame >= clip.frames:
            return (f"frame {frame} but a {clip.subset} clip has frames 0..{clip.frames - 1}; "
                    "not imported")
        return None

    def hint(self) -> str:
        return (f"save the labelImg files next to the frames ({PLACE}) or pass --annotations DIR")


def avss_source(root, subsets=None, annotations=None):
    """What :func:`avsprep.importer.run_import` needs for an AVSS release: (layout, annotation folder,
    matcher, a function listing the files to read)."""
    layout = AVSSLayout.from_root(root, subsets)
    layout.clips()  # read and check the metadata before walking the tree
    ann_dir = Path(annotations) if annotations is not None else layout.root
    return layout, ann_dir, PlaceMatcher(layout), lambda: annotation_files(ann_dir, layout.root)

