"""Box proposals an annotator only has to check: labelImg XML files (or Label Studio tasks) for frames
with no annotation yet.

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
* a mask of another size than its frame: the box is scaled to the frame's pixels (the XML's
  ``<size>`` is the frame's) and a ``propose-size-mismatch`` warning names both files;
* a frame that already has an annotation file of any format (``{stem}.xml``,
  ``.txt``, ``.json`` anywhere under the annotation folder, or an image entry
  of a CreateML file) is skipped, and a file is only ever created with an
  exclusive link, so human work is never overwritten, even by a race.

:class:`LabelStudioProposals` takes the same calls and writes the boxes as Label Studio
predictions instead (``propose --format label-studio``, ``predict --label-studio``): one
``tasks.json`` with the labeling config and README (:mod:`avsprep.annotations.label_studio`).
"""

from __future__ import annotations

import contextlib
from collections import Counter
from pathlib import Path
from typing import Optional

import numpy as np
from scipy import ndimage

from avsprep.annotations import createml
from avsprep.annotations import label_studio as ls
from avsprep.annotations.export import frame_image, write_label_studio
from avsprep.common.atomic import write_new
from avsprep.common.clikit import progress
from avsprep.common.errors import DataError
from avsprep.common.findings import Finding
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


def scale_boxes(boxes, mask_size: tuple[int, int], frame_size: tuple[int, int]) -> list[tuple[int, int, int, int]]:
    """Pixel-edge boxes found on a ``mask_size`` (w, h) mask -> the ``frame_size`` frame's pixels,
    rounded outwards (a box never shrinks below what the mask covers) and clamped to the frame."""
    (mw, mh), (fw, fh) = mask_size, frame_size
    sx, sy = fw / mw, fh / mh
    return [(max(0, int(np.floor(x0 * sx))), max(0, int(np.floor(y0 * sy))),
             min(fw, int(np.ceil(x1 * sx))), min(fh, int(np.ceil(y1 * sy)))) for x0, y0, x1, y1 in boxes]


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
                doc, problem = createml.load_json(p.read_text(encoding="utf-8-sig"), p.name)
            except (OSError, UnicodeDecodeError):
                continue
            if problem is not None:
                continue
            if ls.is_label_studio(doc):  # the frames someone submitted in Label Studio
                images = [ls.url_parts(i.url)[-1:] for i in ls.parse_label_studio(doc, p.name).images]
                names = [parts[0] for parts in images if parts]
            else:
                names = [img.image.replace("\\", "/").rsplit("/", 1)[-1]
                         for img in createml.parse_createml_doc(doc, p.name).images]
            for base in names:
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
                folder: Optional[str] = None, filename: Optional[str] = None, path: Optional[str] = None,
                image: Optional[str] = None, scores=None) -> str:
        """``written``, ``would-write`` (dry run) or ``skipped-existing``. ``image`` and ``scores`` are for
        :class:`LabelStudioProposals` (labelImg files have neither)."""
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


class LabelStudioProposals:
    """Collects proposals as Label Studio predictions; :meth:`finish` writes ``tasks.json`` (with the
    labeling config and README) under ``out_dir``. Frames with an annotation file under ``ann_dir``
    (when given) are skipped, as :class:`ProposalWriter` skips them."""

    def __init__(self, out_dir: Path, model_version: str, classes: list[str], document_root: Optional[Path],
                 ann_dir: Optional[Path] = None, dry_run: bool = False):
        self.out_dir = Path(out_dir)
        self.ann_dir = self.out_dir
        self.model_version = model_version
        self.classes = classes
        self.document_root = Path(document_root) if document_root is not None else None  # None: the release root
        self.dry_run = dry_run
        self.existing = existing_annotation_stems(Path(ann_dir)) if ann_dir is not None else set()
        self.counts = Counter()
        self.planned: list[str] = []
        self.frames: list = []

    def propose(self, rel_dir: Path, stem: str, boxes, label: str, width: int, height: int, depth: int = 3,
                folder: Optional[str] = None, filename: Optional[str] = None, path: Optional[str] = None,
                image: Optional[str] = None, scores=None) -> str:
        if stem in self.existing:
            self.counts["skipped_existing"] += 1
            return "skipped-existing"
        if image is None:
            raise ValueError("a Label Studio proposal needs the frame's path under the document root")
        scores = list(scores) if scores is not None else [None] * len(boxes)
        tail = stem.rsplit("_", 1)[-1]  # S4 {name}_{k}, MS3 {id}.mp4_{k}
        video, k = folder or stem, int(tail) if tail.isdigit() else 0
        self.frames.append(ls.OutFrame(video, k, image, width, height,
                                       [ls.OutBox(label, *b, score=s) for b, s in zip(boxes, scores)]))
        self.existing.add(stem)
        key = "would_write" if self.dry_run else "written"
        self.counts[key] += 1
        self.planned.append(image)
        self.counts["boxes"] += len(boxes)
        if not boxes:
            self.counts["empty_masks"] += 1
        return "would-write" if self.dry_run else "written"

    def finish(self) -> list[Path]:
        """Write the tasks (nothing under a dry run)."""
        if self.dry_run:
            return []
        tasks = [ls.frame_task(f, self.model_version) for f in self.frames]
        return write_label_studio(self.out_dir, tasks, self.classes, self.document_root)


def box_scores(boxes, mask: np.ndarray, prob: np.ndarray) -> list[float]:
    """Each box's score: the mean predicted probability over the mask pixels inside it."""
    out = []
    for x0, y0, x1, y1 in boxes:
        inside_mask = np.asarray(mask)[y0:y1, x0:x1] > 0
        out.append(float(np.asarray(prob)[y0:y1, x0:x1][inside_mask].mean()) if inside_mask.any() else 0.0)
    return out


def propose_predicted(writer: ProposalWriter, setting: str, split: str, category: str, video: str, k: int,
                      mask: np.ndarray, all_blobs: bool = False, prob: Optional[np.ndarray] = None) -> str:
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
    boxes = mask_boxes(mask, all_blobs)
    return writer.propose(rel_dir, frame.stem, boxes, layout.box_label(clip), w, h, 3, folder=video,
                          filename=frame.name, image=frame.as_posix(),
                          scores=box_scores(boxes, mask, prob) if prob is not None else None)


def run_propose(root, source: str = "masks", annotations=None, setting: Optional[str] = None,
                all_blobs: bool = False, dry_run: bool = False, splits=None, quiet: bool = False,
                fmt: str = "labelimg", out=None, document_root=None) -> dict:
    """``avsprep propose``: one labelImg XML per frame with a GT mask and no annotation file, or
    (``fmt="label-studio"``) one Label Studio task per such frame in ``out/tasks.json``, its image
    relative to ``document_root`` (default: the release root)."""

    if source not in SOURCES:
        raise DataError(f"--from {source!r}: only 'masks' here; model proposals come from "
                        "`avstrain predict CKPT SHARDS --labelimg DIR`")
    layout = AVSBenchLayout.from_root(root, setting)
    clips = layout.clips(splits)
    ann_dir = Path(annotations) if annotations is not None else layout.frames_dir()
    if fmt == "label-studio":
        if out is None:
            raise DataError("--format label-studio writes OUT/tasks.json: give --out OUT")
        document_root = Path(document_root) if document_root is not None else layout.root
    # all or nothing: a failure (a full disk included) removes the proposals this run wrote
    target, what = (Path(out), "--out OUT") if fmt == "label-studio" else (ann_dir, "annotation folder (-a)")
    guard = contextlib.nullcontext() if dry_run else writing(target, what=what)
    with guard:
        if fmt == "label-studio":
            writer = LabelStudioProposals(Path(out), f"avsprep propose --from {source}", layout.box_classes(),
                                          document_root, ann_dir=ann_dir, dry_run=dry_run)
        else:
            writer = ProposalWriter(ann_dir, source, dry_run=dry_run)
        no_mask, findings = _propose_clips(layout, clips, writer, all_blobs, dry_run, quiet,
                                           document_root if fmt == "label-studio" else None)
        if fmt == "label-studio":
            writer.finish()
    where = Path(out) / "tasks.json" if fmt == "label-studio" else ann_dir
    c = writer.counts
    verb = "Would write" if dry_run else "Wrote"
    n = c["would_write"] if dry_run else c["written"]
    lines = [f"{verb} {n} proposal(s) from {source} {'to' if fmt == 'label-studio' else 'under'} {where} "
             f"({c['boxes']} box(es); {c['empty_masks']} empty mask(s) gave a frame with no box); "
             f"skipped {c['skipped_existing']} "
             f"frame(s) that already have an annotation file; {no_mask} mask file(s) missing."]
    lines += [f.format() for f in findings[:20]]
    if len(findings) > 20:
        lines.append(f"  ... and {len(findings) - 20} more mask(s) of another size than their frame")
    if dry_run:
        lines += [f"  {p}" for p in writer.planned[:20]]
        if len(writer.planned) > 20:
            lines.append(f"  ... and {len(writer.planned) - 20} more")
    elif n and fmt == "label-studio":
        lines.append(f"Next: load them in Label Studio ({Path(out) / 'README.md'}), then export JSON and "
                     "avsprep import it.")
    elif n:
        lines.append("Next: check them in labelImg (Space = verify, then save), then avsprep import.")
    return {"text": "\n".join(lines), "source": source, "annotations": str(ann_dir), "dry_run": dry_run,
            "proposed": {source: n}, "boxes": c["boxes"], "skipped_existing": c["skipped_existing"],
            "empty_masks": c["empty_masks"], "masks_missing": no_mask, "planned": writer.planned,
            "findings": [f.to_dict() for f in findings]}


def _propose_clips(layout, clips, writer, all_blobs: bool, dry_run: bool, quiet: bool,
                   document_root: Optional[Path]) -> tuple[int, list[Finding]]:
    """Propose for every GT-mask frame of ``clips`` (Label Studio tasks when ``document_root`` is
    given); returns the number of mask files missing and the size-mismatch findings."""
    no_mask = 0
    findings: list[Finding] = []
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
            boxes = mask_boxes(mask, all_blobs)
            mh, mw = mask.shape[:2]
            if (mw, mh) != (w, h):  # the XML speaks the frame's pixels: move the boxes there
                boxes = scale_boxes(boxes, (mw, mh), (w, h))
                findings.append(Finding("propose-size-mismatch", "warning",
                                        f"mask {mpath} is {mw}x{mh} but its frame {frame} is {w}x{h}; the box was "
                                        "scaled to the frame: check it (or fix the mask) in labelImg",
                                        file=str(mpath), clip=clip.name, frame=k))
            image = frame_image(layout, clip, k, document_root) if document_root is not None else None
            writer.propose(rel_dir, stem, boxes, label, w, h, depth,
                           folder=frame.parent.name, filename=frame.name, path=str(frame.absolute()), image=image)
    return no_mask, findings
