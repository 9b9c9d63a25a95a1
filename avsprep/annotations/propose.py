"""Box proposals an annotator only has to check: labelImg XML files for frames with no annotation yet.

``avsprep propose --from masks`` boxes each GT mask (S4: frame 1 of train clips
and every frame of val/test; MS3: every frame); ``avstrain predict --labelimg``
does the same from predicted masks (so frames 2-5 of S4 train clips get one).
Both go through :class:`ProposalWriter`:

* a box is the bounding box of the largest 8-connected blob of the mask
  (``all_blobs``: one box per blob), in pixel edges, written in labelImg's
  1-based convention (:mod:`avsprep.annotations.convention`) with labelImg's own bytes
  (:mod:`avsprep.annotations.labelimg_xml`), ``verified`` unset, and
  ``<source><database>`` = ``avsprep-propose:SOURCE``; labelImg writes
  ``Unknown`` there whenever the annotator saves, so ``validate`` can count
  the frames still carrying unchecked proposals;
* a frame that already has an annotation file of any format (``{stem}.xml``,
  ``.txt``, ``.json`` anywhere under the annotation folder, or an image entry
  of a CreateML file) is skipped, and a file is only ever created with an
  exclusive link, so human work is never overwritten, even by a race.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from pathlib import Path
from typing import Optional

import numpy as np
from scipy import ndimage

from avsprep.annotations import createml
from avsprep.common.atomic import write_new
from avsprep.common.clikit import progress
from avsprep.common.errors import DataError
from avsprep.common.images import open_guarded
from avsprep.common.outputs import writing
from avsprep.common.paths import inside
from avsprep.datasets.avsbench import AVSBenchLayout
from avsprep.datasets.base import safe_name, walk_files
from avsprep.importer import classify
from avsprep.annotations.convention import LABELIMG_1BASED, coord_texts, from_edges
from avsprep.annotations.labelimg_xml import PROPOSAL_DATABASE, XmlFile, XmlObject, labelimg_xml_bytes

SOURCES = ("masks",)


def mask_boxes(mask: np.ndarray, all_blobs: bool = False) -> list[tuple[int, int, int, int]]:
    """Pixel-edge boxes ``(x0, y0, x1, y1)`` of a binary mask: its largest 8-connected blob, or every
    blob (largest first) with ``all_blobs``. Empty mask -> []."""
    fg = np.asarray(mask) > 0
    if not fg.any():
        return []
    labels, n = ndimage.label(fg, structure=np.ones((3, 3), dtype=bool))
    sizes = np.bincount(labels.ravel())[1:]
    order = sorted(range(n), key=lambda i: (-int(sizes[i]), i))
    slices = ndimage.find_objects(labels)
    out = []
    for i in order if all_blobs else order[:1]:
        sy, sx = slices[i]
        out.append((int(sx.start), int(sy.start), int(sx.stop), int(sy.stop)))
    return out


def existing_annotation_stems(ann_dir: Path) -> set[str]:
    """Frame stems that already have an annotation file of any format under ``ann_dir``."""

    stems: set[str] = set()
    if not ann_dir.is_dir():
        return stems
    for p in walk_files(ann_dir):
        kind = classify(p)
        if kind not in ("voc", "yolo", "createml"):
            continue
        name = p.name[2:] if p.name.startswith("._") else p.name
        stems.add(name.rsplit(".", 1)[0])
        if kind == "createml" and p.stat().st_size < createml.MAX_JSON_BYTES:
            try:
                res = createml.parse_createml(p.read_text(encoding="utf-8-sig"), p.name)
            except (OSError, UnicodeDecodeError):
                continue
            for img in res.images:
                base = img.image.replace("\\", "/").rsplit("/", 1)[-1]
                stems.add(base.rsplit(".", 1)[0] if "." in base else base)
    return stems


def proposal_bytes(boxes, label: str, width: int, height: int, depth: int, folder: str, filename: str,
                   path: Optional[str], source: str) -> bytes:
    """One labelImg XML file holding ``boxes`` (pixel edges) for one frame."""
    objs = [XmlObject(label, *coord_texts(from_edges(*b, LABELIMG_1BASED)), 0) for b in boxes]
    return labelimg_xml_bytes(XmlFile(folder, filename, width, height, depth, path=path,
                                      database=f"{PROPOSAL_DATABASE}:{source}", objects=objs))


class ProposalWriter:
    """Writes proposals under ``ann_dir``, skipping every frame that already has an annotation."""

    def __init__(self, ann_dir: Path, source: str, dry_run: bool = False):
        self.ann_dir = Path(ann_dir)
        self.source = source
        self.dry_run = dry_run
        self.existing = existing_annotation_stems(self.ann_dir)
        self.counts = Counter()
        self.planned: list[str] = []

    def propose(self, rel_dir: Path, stem: str, boxes, label: str, width: int, height: int, depth: int = 3,
                folder: Optional[str] = None, filename: Optional[str] = None, path: Optional[str] = None) -> str:
        """``written``, ``would-write`` (dry run) or ``skipped-existing``."""
        target = inside(self.ann_dir, self.ann_dir / rel_dir / f"{stem}.xml", "a box proposal")
        if stem in self.existing or target.exists():
            self.counts["skipped_existing"] += 1
            return "skipped-existing"
        if self.dry_run:
            self.counts["would_write"] += 1
            self.planned.append(str(target))
            return "would-write"
        data = proposal_bytes(boxes, label, width, height, depth, folder or rel_dir.name or stem,
                              filename or f"{stem}.png", path, self.source)
        if not write_new(target, data):
            self.counts["skipped_existing"] += 1
            return "skipped-existing"
        self.existing.add(stem)
        self.counts["written"] += 1
        self.counts["boxes"] += len(boxes)
        if not boxes:
            self.counts["empty_masks"] += 1
        return "written"


def propose_predicted(writer: ProposalWriter, setting: str, split: str, category: str, video: str, k: int,
                      mask: np.ndarray, all_blobs: bool = False) -> str:
    """A predicted mask of frame ``k`` -> a proposal at the frame's place in the AVSBench frame tree
    (S4 ``split/category/video/video_k.xml``, MS3 ``video/video.mp4_k.xml``) under the writer's folder."""
    for name in (video, category):
        why = safe_name(name) if name else None
        if why is not None:
            raise DataError(f"clip/category name {name!r} {why}; no proposal written under {writer.ann_dir} - "
                            "rebuild the shards from a fixed metadata CSV")
    layout = AVSBenchLayout(Path("."), setting)  # only its paths relative to the frame tree are used
    clip = layout.video_clip(video, split, category)
    frame = layout.frame_path(clip, k)
    rel_dir = frame.parent.relative_to(layout.frames_dir())
    h, w = mask.shape[:2]
    return writer.propose(rel_dir, frame.stem, mask_boxes(mask, all_blobs), layout.box_label(clip), w, h, 3,
                          folder=video, filename=frame.name)


def run_propose(root, source: str = "masks", annotations=None, setting: Optional[str] = None,
                all_blobs: bool = False, dry_run: bool = False, splits=None, quiet: bool = False) -> dict:
    """``avsprep propose``: one labelImg XML per frame with a GT mask and no annotation file."""

    if source not in SOURCES:
        raise DataError(f"--from {source!r}: only 'masks' here; model proposals come from "
                        "`avstrain predict CKPT SHARDS --labelimg DIR`")
    layout = AVSBenchLayout.from_root(root, setting)
    clips = layout.clips(splits)
    ann_dir = Path(annotations) if annotations is not None else layout.frames_dir()
    # all or nothing: a failure (a full disk included) removes the proposals this run wrote
    guard = contextlib.nullcontext() if dry_run else writing(ann_dir, what="annotation folder (-a)")
    with guard:
        writer = ProposalWriter(ann_dir, source, dry_run=dry_run)
        no_mask = _propose_clips(layout, clips, writer, all_blobs, dry_run, quiet)
    c = writer.counts
    verb = "Would write" if dry_run else "Wrote"
    n = c["would_write"] if dry_run else c["written"]
    lines = [f"{verb} {n} proposal(s) from {source} under {ann_dir} ({c['boxes']} box(es); "
             f"{c['empty_masks']} empty mask(s) gave a file with no box); skipped {c['skipped_existing']} "
             f"frame(s) that already have an annotation file; {no_mask} mask file(s) missing."]
    if dry_run:
        lines += [f"  {p}" for p in writer.planned[:20]]
        if len(writer.planned) > 20:
            lines.append(f"  ... and {len(writer.planned) - 20} more")
    elif n:
        lines.append("Next: check them in labelImg (Space = verify, then save), then avsprep import.")
    return {"text": "\n".join(lines), "source": source, "annotations": str(ann_dir), "dry_run": dry_run,
            "proposed": {source: n}, "boxes": c["boxes"], "skipped_existing": c["skipped_existing"],
            "empty_masks": c["empty_masks"], "masks_missing": no_mask, "planned": writer.planned}


def _propose_clips(layout, clips, writer: ProposalWriter, all_blobs: bool, dry_run: bool, quiet: bool) -> int:
    """Propose for every GT-mask frame of ``clips``; returns the number of mask files missing."""
    no_mask = 0
    for clip in progress(clips, quiet=quiet, desc="propose", unit="clip"):
        label = layout.box_label(clip)
        for k in layout.mask_frames(clip):
            mpath = layout.mask_path(clip, k)
            if not mpath.is_file():
                no_mask += 1
                continue
            frame = layout.frame_path(clip, k)
            rel_dir = frame.parent.relative_to(layout.frames_dir())
            stem = frame.name.rsplit(".", 1)[0]
            if stem in writer.existing and not dry_run:
                writer.counts["skipped_existing"] += 1
                continue
            try:  # the guarded opener's size check; a corrupt mask keeps propose's own message
                with open_guarded(mpath, f"clip {clip.name}: mask {k} ") as im:
                    mask = np.asarray(im.convert("L"))
            except (OSError, ValueError) as exc:
                raise DataError(f"{mpath}: cannot read the mask ({exc}); fix or remove it") from None
            try:
                with open_guarded(frame, f"clip {clip.name}: frame {k} ") as im:  # header only
                    (w, h), depth = im.size, len(im.getbands())
            except (OSError, ValueError):
                (h, w), depth = mask.shape, 3
            writer.propose(rel_dir, stem, mask_boxes(mask, all_blobs), label, w, h, depth,
                           folder=frame.parent.name, filename=frame.name, path=str(frame.absolute()))
    return no_mask
