"""``avsprep import``: every annotation file under a folder -> the box table + reader findings.

Formats (``--format auto|voc|yolo|createml``; auto goes by extension, then
content): Pascal-VOC XML (:mod:`avsprep.annotations.voc`), YOLO txt with its class file
(:mod:`avsprep.annotations.yolo`), CreateML JSON (:mod:`avsprep.annotations.createml`).
Each file (each image entry of a CreateML file) is matched to (split, category,
video, frame) by its own file stem (``{name}_{k}`` for S4, ``{id}.mp4_{k}`` for
MS3) against the clips in the metadata CSV (AVSS: by its place,
``{uid}/frames/{i}``): the layout's matcher (:meth:`avsprep.datasets.base.Layout.matcher`)
decides; ``<path>`` and ``<folder>`` inside
the files are never opened. Nothing under the folder is silently ignored: a
file is read, or counted as a frame image / class file, or named in a finding.

The VOC box convention is decided once for the whole import
(:mod:`avsprep.annotations.convention`, ``--box-convention``), reported, and recorded per
row in ``source_convention``. Problems are findings, saved beside the table as
``TABLE.findings.json`` (with the convention decision and the YOLO class lists)
so ``validate`` reports them too.

Exit code: 1 when at least one annotation file could not be read at all (not
XML, hostile, too large, another tool's format, undecodable); 0 otherwise.
Box-level problems are left to ``validate`` to judge.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from avsprep.common.atomic import write_text
from avsprep.common.clikit import progress
from avsprep.annotations.convention import ZERO_BASED, decide
from avsprep.common.errors import DataError
from avsprep.common.findings import UNREADABLE_CODES, Finding
from avsprep.common.jsonread import JsonLimitError, loads_limited
from avsprep.annotations import createml, label_studio, yolo
from avsprep.datasets import open_layout
from avsprep.datasets.base import Layout, Matcher
from avsprep.datasets.frames import FrameSizes
from avsprep.annotations.table import from_records, sidecar_path, write_table
from avsprep.annotations.voc import VocResult, read_voc_file, with_place

MAX_LISTED = 20  # findings printed in the text summary; the sidecar and --json hold all
FORMATS = ("auto", "voc", "yolo", "createml", "label-studio")
JSON_FORMATS = ("createml", "label-studio")  # .json files: which one is decided by content
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".gif")
MAX_TXT_BYTES = 1 << 20


def _parts(path: Path, ann_dir: Path) -> tuple[str, ...]:
    """The path's parts below the annotation folder (all its parts when it is elsewhere)."""
    try:
        return path.relative_to(ann_dir).parts
    except ValueError:
        return path.parts


def _display(path: Path, root: Path, ann_dir: Path) -> str:
    """The ``xml`` column: relative to the root when the file is under it, else to the annotations dir."""
    p = path.absolute()
    for base in (root.absolute(), ann_dir.absolute()):
        try:
            return p.relative_to(base).as_posix()
        except ValueError:
            continue
    return p.as_posix()


def _xml_stem(path: Path) -> str:
    name = path.name
    return name[:-4] if name.lower().endswith(".xml") else name


def classify(path: Path, fmt: str = "auto") -> str:
    """``voc``, ``yolo``, ``createml`` (any .json: CreateML or Label Studio, told apart by content),
    ``classes``, ``image``, ``skipped`` (other --format) or ``other``."""
    name = path.name.lower()
    kind = "other"
    if name.endswith(".xml"):
        kind = "voc"
    elif name in yolo.CLASS_FILES:
        kind = "classes"
    elif name.endswith(".txt"):
        kind = "yolo"
    elif name.endswith(".json"):
        kind = "createml"
    elif name.endswith(IMAGE_EXTS):
        kind = "image"
    if kind in ("voc", "yolo", "createml") and fmt not in ("auto", kind) \
            and not (kind == "createml" and fmt in JSON_FORMATS):
        return "skipped"
    return kind


@dataclass
class Entry:
    """One frame's annotation as read from a file, before matching and the convention decision.

    ``kind`` says which of the kind-specific fields hold the boxes: ``voc`` (the VOC reader's
    result, boxes in the file's own convention), ``yolo`` (rows in fractions of the frame size and
    the class file naming their indices) or ``createml`` (pixel-edge boxes)."""

    rel: str
    stem: str
    kind: str
    parts: tuple = ()  # the file's path under the annotation folder (CreateML: its folder + the image name)
    image_parts: tuple = ()  # CreateML: the image path as written in the file
    filename: str = ""  # CreateML: the image name as written
    verified: bool = False
    readable: bool = True  # False: the reader's findings say why no box of it can be used
    findings: list = field(default_factory=list)  # reader findings, placed at the frame once matched
    voc: Optional[VocResult] = None  # voc
    yolo_rows: list = field(default_factory=list)  # yolo
    class_file: Optional[str] = None  # yolo: the class file's display path
    boxes: list = field(default_factory=list)  # createml: (label, x0, y0, x1, y1, difficult); label-studio: LsBox
    task: str = ""  # label-studio: the task id


@dataclass
class Read:
    """What :func:`read_files` found under the annotation folder."""

    entries: list[Entry] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    stats: Counter = field(default_factory=Counter)
    class_lists: dict[str, list[str]] = field(default_factory=dict)
    other_ext: Counter = field(default_factory=Counter)


def _read_text(path: Path, rel: str, limit: int, findings: list) -> Optional[str]:
    try:
        if path.stat().st_size > limit:
            findings.append(Finding("file-too-large", "error", f"over the {limit}-byte limit; not read", rel))
            return None
        data = path.read_bytes()
    except OSError as exc:
        findings.append(Finding("file-unreadable", "error", f"cannot open ({exc.strerror or exc})", rel))
        return None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        findings.append(Finding("file-unreadable", "error", "not UTF-8 text; re-save it as UTF-8", rel))
        return None


def read_files(files: list[Path], root: Path, ann_dir: Path, matcher: Matcher, fmt: str = "auto",
               quiet: bool = True, choice: Optional[label_studio.Choice] = None) -> Read:
    """Walk ``files``: classify each, parse the annotation files into entries, read the class files.
    ``choice``: which annotation of a Label Studio task counts."""
    out = Read()
    findings, stats = out.findings, out.stats

    def register(cf: Path) -> tuple[str, list[str]]:
        rel = _display(cf, root, ann_dir)
        if rel not in out.class_lists:
            text = _read_text(cf, rel, MAX_TXT_BYTES, findings)
            try:
                names = yolo.parse_class_text(text, cf.name) if text is not None else None
            except JsonLimitError as exc:
                findings.append(Finding("yolo-class-file-bad", "error", f"{exc}; no class names read from it", rel))
                names = []
            if names is None:
                findings.append(Finding("yolo-class-file-bad", "error",
                                        "cannot read class names from it (one name per line, or YAML 'names')",
                                        rel))
            out.class_lists[rel] = names or []
        return rel, out.class_lists[rel]

    for path in progress(files, quiet=quiet, desc="import", unit="file"):
        rel = _display(path, root, ann_dir)
        kind = classify(path, fmt)
        stats["files_seen"] += 1
        if kind == "image":
            stats["images"] += 1
        elif kind == "classes":
            stats["class_files"] += 1
            register(path)  # parse it now (reports a bad class file even if unused)
        elif kind == "skipped":
            findings.append(Finding("file-skipped", "info", f"not read: --format {fmt}", rel))
            stats["skipped"] += 1
        elif kind == "other":
            out.other_ext[path.suffix.lower() or path.name] += 1
            findings.append(Finding("file-not-annotation", "info",
                                    "not an annotation file (.xml, .txt, .json) nor a frame image; not read",
                                    rel))
        else:
            stem = path.name.rsplit(".", 1)[0]
            parts = _parts(path, ann_dir)
            if kind == "createml":  # any .json: CreateML or Label Studio by content
                kind, got = _read_json(path, rel, parts, findings, fmt, choice or label_studio.Choice())
            else:
                reader = {"voc": _read_voc, "yolo": _read_yolo}[kind]
                got = reader(path, rel, stem, parts, matcher, findings, register, ann_dir)
            if got == NOT_ANNOTATION:  # a text list, another tool's notes: not counted as annotation file
                continue
            stats["files"] += 1
            stats[kind] += 1
            if got == UNREADABLE:
                stats["unreadable"] += 1
            else:
                out.entries += got
    return out


# a reader's answer when it has no entries: the file is no annotation file after all / cannot be read
NOT_ANNOTATION, UNREADABLE = "not-annotation", "unreadable"


def _read_voc(path, rel, stem, parts, matcher, findings, register, ann_dir) -> list[Entry]:
    res = read_voc_file(path, name=rel)
    if not res.readable and res.findings and res.findings[-1].severity == "info":
        findings.extend(res.findings)  # e.g. Label Studio's labeling_config.xml beside its tasks
        return NOT_ANNOTATION
    if not res.readable and stem.startswith("._"):
        stem = stem[2:]  # an AppleDouble "._x_1.xml" is about frame x_1 (YouTube ids have no '.')
    return [Entry(rel, stem, "voc", parts, verified=res.verified, readable=res.readable,
                  findings=res.findings, voc=res)]


def _read_yolo(path, rel, stem, parts, matcher, findings, register, ann_dir) -> list[Entry] | str:
    text = _read_text(path, rel, MAX_TXT_BYTES, findings)
    if text is None:
        return UNREADABLE
    yres = yolo.parse_yolo(text, rel)
    if not yres.readable:
        if matcher.where(stem, parts) is None:  # an image list, labelmap, README
            findings.append(Finding("file-not-annotation", "info",
                                    "a text file that is not YOLO labels (image list, label map, "
                                    "notes) nor named like a frame; not read", rel))
            return NOT_ANNOTATION
        findings.extend(yres.findings)
        return UNREADABLE
    cf_path = yolo.find_class_file(path, ann_dir)
    cf = register(cf_path)[0] if cf_path is not None else None
    e = Entry(rel, stem, "yolo", parts, findings=list(yres.findings), yolo_rows=yres.boxes, class_file=cf)
    if cf is None and yres.boxes:
        e.readable = False
        e.findings.append(Finding("yolo-no-class-file", "error",
                                  "YOLO boxes but no classes.txt, obj.names or data.yaml beside or "
                                  "above the file; put labelImg's classes.txt next to it", rel))
    return [e]


def _read_json(path, rel, parts, findings, fmt: str, choice) -> tuple[str, list[Entry] | str]:
    """(kind, entries) of a .json file: a Label Studio export or CreateML, told apart by content."""
    text = _read_text(path, rel, createml.MAX_JSON_BYTES, findings)
    if text is None:
        return "createml", UNREADABLE
    doc, problem = createml.load_json(text, rel)
    if problem is None and label_studio.is_label_studio(doc):
        if fmt == "createml":
            findings.append(Finding("file-skipped", "info", "a Label Studio export; not read: --format createml",
                                    rel))
            return "label-studio", NOT_ANNOTATION
        return "label-studio", _read_label_studio(doc, rel, findings, choice)
    if fmt == "label-studio" and problem is None:
        findings.append(Finding("file-skipped", "info", "JSON that is no Label Studio export; not read: "
                                "--format label-studio", rel))
        return "createml", NOT_ANNOTATION
    cres = createml.parse_createml_doc(doc, rel) if problem is None else problem
    if not cres.readable and cres.findings and cres.findings[0].severity == "info":
        findings.extend(cres.findings)  # e.g. Label Studio's notes.json beside a YOLO export
        return "createml", NOT_ANNOTATION
    findings.extend(cres.findings)
    if not cres.readable:
        return "createml", UNREADABLE
    return "createml", _createml_entries(cres, rel, parts)


def _read_label_studio(doc, rel, findings, choice) -> list[Entry]:
    """One entry per image of each task whose chosen annotation counts; matched by the image's name
    (``url_parts``: local files, uploads, S3/GCS/HTTP URLs alike)."""
    res = label_studio.parse_label_studio(doc, rel, choice)
    findings.extend(res.findings)
    entries = []
    for img in res.images:
        image_parts = label_studio.url_parts(img.url)
        base = image_parts[-1] if image_parts else ""
        entries.append(Entry(rel, base.rsplit(".", 1)[0] if "." in base else base, "label-studio",
                             image_parts, image_parts=image_parts, filename=base, verified=img.verified,
                             boxes=img.boxes, task=img.task))
    return entries


def _createml_entries(cres, rel, parts) -> list[Entry]:
    entries = []
    for img in cres.images:
        image_parts = tuple(p for p in img.image.replace("\\", "/").split("/") if p)
        base = image_parts[-1] if image_parts else ""
        entries.append(Entry(rel, base.rsplit(".", 1)[0] if "." in base else base, "createml",
                             parts[:-1] + (base,), image_parts=image_parts, filename=img.image,
                             verified=img.verified,
                             boxes=[(lb, x0, y0, x1, y1, 0) for lb, x0, y0, x1, y1 in img.boxes]))
    return entries


def check_class_lists(class_lists: dict, matcher: Matcher, earlier_classes: Optional[dict]) -> list[Finding]:
    """Class lists: one per folder tree; they must agree with each other and with an earlier import."""
    out = []
    distinct = {tuple(v) for v in class_lists.values() if v}
    if len(distinct) > 1:
        out.append(Finding("yolo-classes-differ", matcher.classes_differ_severity,
                           f"{len(class_lists)} class files list different classes "
                           f"({', '.join(sorted(class_lists))}); each folder's boxes use their own file"))
    for cf, names in class_lists.items():
        before = (earlier_classes or {}).get(cf)
        if before is not None and list(before) != list(names):
            out.append(Finding("yolo-classes-changed", "warning",
                               f"class list differs from the earlier import of this folder "
                               f"(was {before[:6]}, now {names[:6]}); class indices may now mean "
                               "other classes: check the boxes", cf))
    return out


_NO_FILE_FIELDS = {"xml_folder": "", "xml_path": "", "xml_depth": "", "xml_database": "", "xml_writer": "",
                   "xml_width": math.nan, "xml_height": math.nan}


def _voc_fields(res: VocResult) -> dict:
    """The table's ``xml_*`` columns: what the VOC file says about its image."""
    return {"xml_folder": res.folder or "", "xml_filename": res.filename or "",
            "xml_path": res.path or "", "xml_depth": res.depth_text or "",
            "xml_database": res.database or "", "xml_writer": res.writer,
            "xml_width": math.nan if res.width is None else float(res.width),
            "xml_height": math.nan if res.height is None else float(res.height)}


def to_rows(layout: Layout, read: Read, matcher: Matcher, decision, findings: list) -> list[dict]:
    """Match each entry to a selected clip's frame and turn its boxes into table rows (pixel edges,
    the decided convention for VOC, YOLO fractions times the real frame size)."""
    stats, class_lists = read.stats, read.class_lists
    clips = layout.clip_index()
    rows: list[dict] = []
    seen: dict[tuple[str, int], str] = {}
    sizes = FrameSizes(layout)
    for e in read.entries:
        parsed = matcher.where(e.stem, e.parts, e.image_parts)
        clip = clips.get(parsed[0]) if parsed else None
        video, frame = (parsed if parsed else (None, None))
        findings.extend(with_place(f, clip.name if clip else video, frame) for f in e.findings)
        if not e.readable:
            stats["unreadable"] += 1
            continue
        if parsed is None:
            what = {"createml": f"image {e.filename!r}",
                    "label-studio": f"task {e.task} image {e.filename!r}"}.get(e.kind, "file name")
            findings.append(Finding("xml-bad-name", "warning", matcher.bad_name(what), e.rel))
            continue
        if clip is None:
            findings.append(matcher.no_clip(video, frame, e.rel))
            continue
        problem = matcher.frame_problem(clip, frame)
        if problem:
            findings.append(Finding("frame-bad-index", "error", problem, e.rel, clip.name, frame))
            continue
        key = (clip.name, frame)
        if key in seen:
            what = (f"task {e.task}: a second Label Studio task" if e.kind == "label-studio"
                    else "a second annotation file")
            findings.append(Finding("xml-duplicate-frame", "error",
                                    f"{what} for this frame (first: {seen[key]}); ignored, "
                                    "keep only one", e.rel, clip.name, frame))
            continue
        convention = ZERO_BASED
        base = dict(_NO_FILE_FIELDS, xml_filename=e.filename)
        if e.kind == "voc":
            convention = decision.convention
            boxes = [(b.label, b.xmin, b.ymin, b.xmax, b.ymax, b.difficult) for b in e.voc.boxes_as(convention)]
            base.update(_voc_fields(e.voc))
        elif e.kind == "yolo":
            boxes = _yolo_boxes(layout, e, clip, frame, class_lists.get(e.class_file or "", []), sizes, findings)
            if boxes is None:
                stats["unreadable"] += 1
                continue
        elif e.kind == "label-studio":
            boxes = _ls_boxes(layout, e, clip, frame, sizes, findings)
            if boxes is None:
                stats["unreadable"] += 1
                continue
        else:
            boxes = list(e.boxes)
        seen[key] = e.rel
        stats["frames"] += 1
        stats[f"frames_{e.kind}"] += 1
        base.update({"split": clip.split, "category": layout.table_category(clip), "video": clip.name,
                     "frame": frame, "xml": e.rel, "source_convention": convention, "verified": e.verified})
        if not boxes:
            stats["frames_no_box"] += 1
            rows.append({**base, "label": "", "xmin": math.nan, "ymin": math.nan,
                         "xmax": math.nan, "ymax": math.nan, "difficult": 0})
        for label, x0, y0, x1, y1, diff in boxes:
            stats["boxes"] += 1
            rows.append({**base, "label": label, "xmin": float(x0), "ymin": float(y0),
                         "xmax": float(x1), "ymax": float(y1), "difficult": diff})
    return rows


def _yolo_boxes(layout, e: Entry, clip, frame: int, names: list, sizes: FrameSizes, findings: list):
    """Pixel-edge boxes of a YOLO entry, or None when the frame's size cannot be read."""
    size = sizes.get(clip, frame) if e.yolo_rows else None
    if e.yolo_rows and size is None:
        findings.append(Finding("yolo-no-frame", "error",
                                "YOLO boxes are fractions of the frame size, but the frame image "
                                f"{layout.frame_path(clip, frame).name} cannot be read; not imported",
                                e.rel, clip.name, frame))
        return None
    boxes = []
    for n, b in enumerate(e.yolo_rows, start=1):
        if b.cls >= len(names):
            findings.append(Finding("yolo-class-unknown", "error",
                                    f"box {n}: class index {b.cls} but {e.class_file} lists "
                                    f"{len(names)} class(es); box skipped", e.rel, clip.name, frame))
            continue
        boxes.append((names[b.cls], *yolo.to_pixel_edges(b, *size), 0))
    return boxes


def _ls_boxes(layout, e: Entry, clip, frame: int, sizes: FrameSizes, findings: list):
    """Pixel-edge boxes of a Label Studio image: percent of the real frame size (``zero-based``), or
    None when the frame's size cannot be read."""
    size = sizes.get(clip, frame) if e.boxes else None
    where = f"task {e.task}"
    if e.boxes and size is None:
        findings.append(Finding("ls-no-frame", "error", f"{where}: boxes are percent of the frame size, but the frame "
                                f"image {layout.frame_path(clip, frame).name} cannot be read; not imported",
                                e.rel, clip.name, frame))
        return None
    known = set(layout.box_classes())
    boxes = []
    for b in e.boxes:
        if b.original is not None and tuple(b.original) != tuple(size):
            findings.append(Finding("ls-size-mismatch", "warning",
                                    f"{where}: original size {b.original[0]}x{b.original[1]} but the frame is "
                                    f"{size[0]}x{size[1]}; percent converted on the real frame",
                                    e.rel, clip.name, frame))
        if b.label not in known:
            findings.append(Finding("ls-label-unknown", "warning", f"{where}: label {b.label!r} is no {layout.setting} "
                                    "class; imported as written (validate checks it)", e.rel, clip.name, frame))
        boxes.append((b.label, *label_studio.pixel_edges(b, *size), 0))
    return boxes


def import_annotations(layout: Layout, ann_dir: Path, quiet: bool = True, fmt: str = "auto",
                       box_convention: str = "auto", earlier_classes: Optional[dict] = None,
                       choice: Optional[label_studio.Choice] = None):
    """Read and match every annotation file the layout lists under ``ann_dir``; returns
    (table, findings, stats, decision, class lists)."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    matcher = layout.matcher()
    read = read_files(layout.annotation_files(ann_dir), layout.root, ann_dir, matcher, fmt, quiet, choice)
    findings = read.findings
    findings += check_class_lists(read.class_lists, matcher, earlier_classes)
    # the one box-convention decision of this import
    decision = decide({e.rel: e.voc.not_labelimg for e in read.entries
                       if e.kind == "voc" and e.voc.readable and e.voc.raw_boxes}, box_convention)
    rows = to_rows(layout, read, matcher, decision, findings)
    stats = read.stats
    stats["other_ext"] = dict(read.other_ext)  # type: ignore[assignment]
    return from_records(rows), findings, stats, decision, read.class_lists


def _found_text(stats) -> str:
    parts = []
    if stats["images"]:
        parts.append(f"{stats['images']} image(s)")
    if stats["class_files"]:
        parts.append(f"{stats['class_files']} class file(s)")
    if stats["skipped"]:
        parts.append(f"{stats['skipped']} file(s) of another --format")
    for ext, n in sorted(stats["other_ext"].items()):
        parts.append(f"{n} {ext}")
    return ", ".join(parts) if parts else "nothing"


def run_import(root, output, setting: Optional[str] = None, annotations=None, quiet: bool = False,
               fmt: str = "auto", box_convention: str = "auto", subsets=None,
               choice: Optional[label_studio.Choice] = None) -> dict:
    """Write the box table at ``output`` and the findings sidecar; return a summary dict. ``choice``:
    which annotation of a Label Studio task counts (``--annotator``, ``--latest``,
    ``--accept-predictions``)."""
    layout = open_layout(root, setting, subsets)
    layout.clips()  # read and check the metadata before walking the tree
    ann_dir = Path(annotations) if annotations is not None else layout.default_annotation_dir()
    if not ann_dir.is_dir():
        raise DataError(f"{ann_dir} does not exist; put the labelImg XMLs next to the frames "
                        "or pass --annotations DIR")
    output = Path(output)
    sidecar = sidecar_path(output)
    earlier = _earlier_classes(sidecar)
    table, findings, stats, decision, class_lists = import_annotations(
        layout, ann_dir, quiet=quiet, fmt=fmt, box_convention=box_convention, earlier_classes=earlier,
        choice=choice)
    if stats["files"] == 0:
        kinds = "annotation files (.xml, .txt, .json)" if fmt == "auto" else f"{fmt} files"
        raise DataError(f"no {kinds} under {ann_dir} (found {_found_text(stats)}); "
                        f"{layout.matcher().hint()}")
    write_table(table, output)
    write_text(sidecar, json.dumps({"table": output.name, "root": str(layout.root), "setting": layout.setting,
                                    "box_convention": decision.to_dict(), "yolo_classes": class_lists,
                                    "findings": [f.to_dict() for f in findings]}, indent=1,
                                   ensure_ascii=False) + "\n")
    by_sev = Counter(f.severity for f in findings)
    unreadable = sum(1 for f in findings if f.code in UNREADABLE_CODES)
    exit_code = 1 if unreadable else 0
    lines = [
        f"Read {stats['files']} annotation file(s) under {ann_dir} ({layout.describe()}; {stats['voc']} VOC, "
        f"{stats['yolo']} YOLO, {stats['createml']} CreateML, {stats['label-studio']} Label Studio; "
        f"also {_found_text(stats)}): "
        f"{stats['boxes']} box(es) on {stats['frames']} frame(s), {stats['frames_no_box']} frame(s) with no box.",
        f"Wrote {len(table)} row(s) to {output} (findings: {sidecar.name}).",
        f"VOC {decision.describe()}." if decision.files_with_boxes else "No VOC box: no box convention to decide.",
        f"Findings: {by_sev['error']} error(s), {by_sev['warning']} warning(s), {by_sev['info']} info.",
    ]
    shown = [f for f in findings if f.severity != "info"]
    lines += ["  " + f.format() for f in shown[:MAX_LISTED]]
    if len(shown) > MAX_LISTED:
        lines.append(f"  ... and {len(shown) - MAX_LISTED} more (all in {sidecar.name}; --json lists them)")
    if unreadable:
        lines.append(f"{unreadable} file(s) could not be read; fix or delete them (exit 1).")
    lines.append(f"Next: avsprep validate {output} --root {layout.root}")
    return {
        "text": "\n".join(lines), "exit_code": exit_code, "setting": layout.setting,
        "table": str(output), "findings_file": str(sidecar),
        "files": stats["files"], "frames": stats["frames"], "rows": len(table), "boxes": stats["boxes"],
        "frames_no_box": stats["frames_no_box"], "unreadable": unreadable,
        "by_format": {k: stats[k] for k in ("voc", "yolo", "createml", "label-studio")},
        "frames_by_format": {k: stats[f"frames_{k}"] for k in ("voc", "yolo", "createml", "label-studio")},
        "images": stats["images"], "class_files": stats["class_files"],
        "box_convention": decision.to_dict(), "yolo_classes": class_lists,
        "by_severity": {s: by_sev[s] for s in ("error", "warning", "info")},
        "findings": [f.to_dict() for f in findings],
    }


def _earlier_classes(sidecar: Path) -> dict:
    """The YOLO class lists recorded by an earlier import to the same table (empty if none)."""
    try:
        doc = loads_limited(sidecar.read_text(encoding="utf-8"))
        got = doc.get("yolo_classes") or {}
        return {k: list(v) for k, v in got.items() if isinstance(v, list)}
    except (OSError, ValueError, AttributeError):
        return {}
