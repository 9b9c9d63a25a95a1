"""``avsprep import``: every annotation file under a folder -> the box table + reader findings.

Formats (``--format auto|voc|yolo|createml``; auto goes by extension, then
content): Pascal-VOC XML (:mod:`avsprep.annotations.voc`), YOLO txt with its class file
(:mod:`avsprep.annotations.yolo`), CreateML JSON (:mod:`avsprep.annotations.createml`).
Each file (each image entry of a CreateML file) is matched to (split, category,
video, frame) by its own file stem (``{name}_{k}`` for S4, ``{id}.mp4_{k}`` for
MS3) against the clips in the metadata CSV (AVSS: by its place,
``{uid}/frames/{i}``, :mod:`avsprep.datasets.avss_import`); ``<path>`` and ``<folder>`` inside
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
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from avsprep.common.atomic import write_text
from avsprep.common.clikit import progress
from avsprep.annotations.convention import ZERO_BASED, decide
from avsprep.common.errors import DataError
from avsprep.common.findings import UNREADABLE_CODES, Finding
from avsprep.annotations import createml, yolo
from avsprep.datasets.avsbench import Layout, parse_frame_stem
from avsprep.annotations.table import from_records, sidecar_path, write_table
from avsprep.annotations.voc import VocResult, read_voc_file, with_place

MAX_LISTED = 20  # findings printed in the text summary; the sidecar and --json hold all
FORMATS = ("auto", "voc", "yolo", "createml")
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".gif")
MAX_TXT_BYTES = 1 << 20


def find_xml_files(folder: Path) -> list[Path]:
    """Every ``*.xml`` under ``folder`` (any case, dotfiles included), sorted for determinism."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        for name in filenames:
            if name.lower().endswith(".xml"):
                found.append(Path(dirpath) / name)
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


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


def find_annotation_files(folder: Path) -> list[Path]:
    """Every file under ``folder`` (dotfiles included), sorted for determinism."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        found += [Path(dirpath) / n for n in filenames]
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def classify(path: Path, fmt: str = "auto") -> str:
    """``voc``, ``yolo``, ``createml``, ``classes``, ``image``, ``skipped`` (other --format) or ``other``."""
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
    if kind in ("voc", "yolo", "createml") and fmt not in ("auto", kind):
        return "skipped"
    return kind


@dataclass
class _Entry:
    """One frame's annotation as read from a file, before matching and the convention decision."""

    rel: str
    stem: str
    kind: str
    voc: Optional[VocResult] = None
    boxes: list = field(default_factory=list)  # (label, x0, y0, x1, y1, difficult) for yolo/createml
    verified: bool = False
    filename: str = ""
    yolo_rows: Optional[list] = None
    class_file: Optional[str] = None
    parts: tuple = ()  # the file's path under the annotation folder (CreateML: its folder + the image name)
    image_parts: tuple = ()  # CreateML: the image path as written in the file


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


def _frame_size(layout: Layout, clip, k: int, cache: dict) -> Optional[tuple[int, int]]:
    key = (clip.name, k)
    if key not in cache:
        from PIL import Image

        try:
            with Image.open(layout.frame_path(clip, k)) as im:
                cache[key] = tuple(im.size)
        except (OSError, ValueError):
            cache[key] = None
    return cache[key]


class StemMatcher:
    """S4/MS3: a file (a CreateML image) is a frame by its own stem, ``{name}_{k}`` / ``{id}.mp4_{k}``.

    The matcher is what differs between layouts; :class:`avsprep.datasets.avss_import.PlaceMatcher` matches
    AVSS files by their place (``{uid}/frames/{i}``) instead. Methods are pure.
    """

    classes_differ_severity = "warning"

    def __init__(self, layout: Layout):
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


def import_annotations(layout: Layout, ann_dir: Path, quiet: bool = True, fmt: str = "auto",
                       box_convention: str = "auto", earlier_classes: Optional[dict] = None,
                       matcher=None, files: Optional[list[Path]] = None):
    """Read and match every annotation file; returns (table, findings, stats, decision, class lists).

    ``matcher`` maps a file to (video, frame) (default :class:`StemMatcher`); ``files`` replaces the
    walk of ``ann_dir`` (AVSS leaves out the release's own masks and wavs)."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    matcher = matcher or StemMatcher(layout)
    clips = layout.clip_index()
    files = find_annotation_files(ann_dir) if files is None else files
    findings: list[Finding] = []
    stats = Counter()
    entries: list[_Entry] = []
    class_lists: dict[str, list[str]] = {}
    other_ext = Counter()

    def class_names(path: Path) -> tuple[Optional[str], Optional[list[str]]]:
        cf = yolo.find_class_file(path, ann_dir)
        return (None, None) if cf is None else register(cf)

    def register(cf: Path) -> tuple[str, list[str]]:
        rel = _display(cf, layout.root, ann_dir)
        if rel not in class_lists:
            text = _read_text(cf, rel, MAX_TXT_BYTES, findings)
            names = yolo.parse_class_text(text, cf.name) if text is not None else None
            if names is None:
                findings.append(Finding("yolo-class-file-bad", "error",
                                        "cannot read class names from it (one name per line, or YAML 'names')",
                                        rel))
            class_lists[rel] = names or []
        return rel, class_lists[rel]

    for path in progress(files, quiet=quiet, desc="import", unit="file"):
        rel = _display(path, layout.root, ann_dir)
        kind = classify(path, fmt)
        stats["files_seen"] += 1
        if kind == "image":
            stats["images"] += 1
            continue
        if kind == "classes":
            stats["class_files"] += 1
            register(path)  # parse it now (reports a bad class file even if unused)
            continue
        if kind == "skipped":
            findings.append(Finding("file-skipped", "info", f"not read: --format {fmt}", rel))
            stats["skipped"] += 1
            continue
        if kind == "other":
            other_ext[path.suffix.lower() or path.name] += 1
            findings.append(Finding("file-not-annotation", "info",
                                    "not an annotation file (.xml, .txt, .json) nor a frame image; not read",
                                    rel))
            continue
        stats["files"] += 1
        stats[kind] += 1
        stem = path.name.rsplit(".", 1)[0]
        parts = _parts(path, ann_dir)
        if kind == "voc":
            res = read_voc_file(path, name=rel)
            if not res.readable and stem.startswith("._"):
                stem = stem[2:]  # an AppleDouble "._x_1.xml" is about frame x_1 (YouTube ids have no '.')
            entries.append(_Entry(rel, stem, kind, voc=res, verified=res.verified, parts=parts))
        elif kind == "yolo":
            text = _read_text(path, rel, MAX_TXT_BYTES, findings)
            if text is None:
                stats["unreadable"] += 1
                continue
            yres = yolo.parse_yolo(text, rel)
            if not yres.readable:
                if matcher.where(stem, parts) is None:  # an image list, labelmap, README
                    findings.append(Finding("file-not-annotation", "info",
                                            "a text file that is not YOLO labels (image list, label map, "
                                            "notes) nor named like a frame; not read", rel))
                    stats["files"] -= 1
                    stats[kind] -= 1
                    continue
                findings.extend(yres.findings)
                stats["unreadable"] += 1
                continue
            cf, names = class_names(path)
            e = _Entry(rel, stem, kind, yolo_rows=yres.boxes, class_file=cf, parts=parts)
            e.voc = VocResult(findings=yres.findings)
            if cf is None and yres.boxes:
                e.voc.readable = False
                e.voc.findings.append(Finding("yolo-no-class-file", "error",
                                              "YOLO boxes but no classes.txt, obj.names or data.yaml beside or "
                                              "above the file; put labelImg's classes.txt next to it", rel))
            entries.append(e)
        else:
            text = _read_text(path, rel, createml.MAX_JSON_BYTES, findings)
            if text is None:
                stats["unreadable"] += 1
                continue
            cres = createml.parse_createml(text, rel)
            if not cres.readable and cres.findings and cres.findings[0].severity == "info":
                findings.extend(cres.findings)  # e.g. Label Studio's notes.json beside a YOLO export
                stats["files"] -= 1
                stats[kind] -= 1
                continue
            if not cres.readable:
                findings.extend(cres.findings)
                stats["unreadable"] += 1
                continue
            findings.extend(cres.findings)
            for img in cres.images:
                image_parts = tuple(p for p in img.image.replace("\\", "/").split("/") if p)
                base = image_parts[-1] if image_parts else ""
                e = _Entry(rel, base.rsplit(".", 1)[0] if "." in base else base, kind, verified=img.verified,
                           filename=img.image, boxes=[(lb, x0, y0, x1, y1, 0) for lb, x0, y0, x1, y1 in img.boxes],
                           parts=parts[:-1] + (base,), image_parts=image_parts)
                e.voc = VocResult()
                entries.append(e)

    # class lists: one per folder tree; they must agree with each other and with an earlier import
    distinct = {tuple(v) for v in class_lists.values() if v}
    if len(distinct) > 1:
        findings.append(Finding("yolo-classes-differ", matcher.classes_differ_severity,
                                f"{len(class_lists)} class files list different classes "
                                f"({', '.join(sorted(class_lists))}); each folder's boxes use their own file"))
    for cf, names in class_lists.items():
        before = (earlier_classes or {}).get(cf)
        if before is not None and list(before) != list(names):
            findings.append(Finding("yolo-classes-changed", "warning",
                                    f"class list differs from the earlier import of this folder "
                                    f"(was {before[:6]}, now {names[:6]}); class indices may now mean "
                                    "other classes: check the boxes", cf))

    # the one box-convention decision of this import
    evidence = {e.rel: e.voc.not_labelimg for e in entries
                if e.kind == "voc" and e.voc.readable and e.voc.raw_boxes}
    decision = decide(evidence, box_convention)

    rows: list[dict] = []
    seen: dict[tuple[str, int], str] = {}
    sizes: dict = {}
    for e in entries:
        res = e.voc
        parsed = matcher.where(e.stem, e.parts, e.image_parts)
        clip = clips.get(parsed[0]) if parsed else None
        video, frame = (parsed if parsed else (None, None))
        findings.extend(with_place(f, clip.name if clip else video, frame) for f in res.findings)
        if not res.readable:
            stats["unreadable"] += 1
            continue
        if parsed is None:
            what = f"image {e.filename!r}" if e.kind == "createml" else "file name"
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
            findings.append(Finding("xml-duplicate-frame", "error",
                                    f"a second annotation file for this frame (first: {seen[key]}); ignored, "
                                    "keep only one", e.rel, clip.name, frame))
            continue
        boxes: list[tuple] = []
        convention = ZERO_BASED
        base = {"xml_folder": "", "xml_filename": e.filename, "xml_path": "", "xml_depth": "",
                "xml_database": "", "xml_writer": "", "xml_width": math.nan, "xml_height": math.nan}
        if e.kind == "voc":
            convention = decision.convention
            boxes = [(b.label, b.xmin, b.ymin, b.xmax, b.ymax, b.difficult) for b in res.boxes_as(convention)]
            base.update({"xml_folder": res.folder or "", "xml_filename": res.filename or "",
                         "xml_path": res.path or "", "xml_depth": res.depth_text or "",
                         "xml_database": res.database or "", "xml_writer": res.writer,
                         "xml_width": math.nan if res.width is None else float(res.width),
                         "xml_height": math.nan if res.height is None else float(res.height)})
        elif e.kind == "yolo":
            names = class_lists.get(e.class_file or "", [])
            size = _frame_size(layout, clip, frame, sizes) if e.yolo_rows else None
            if e.yolo_rows and size is None:
                findings.append(Finding("yolo-no-frame", "error",
                                        "YOLO boxes are fractions of the frame size, but the frame image "
                                        f"{layout.frame_path(clip, frame).name} cannot be read; not imported",
                                        e.rel, clip.name, frame))
                stats["unreadable"] += 1
                continue
            for n, b in enumerate(e.yolo_rows or [], start=1):
                if b.cls >= len(names):
                    findings.append(Finding("yolo-class-unknown", "error",
                                            f"box {n}: class index {b.cls} but {e.class_file} lists "
                                            f"{len(names)} class(es); box skipped", e.rel, clip.name, frame))
                    continue
                boxes.append((names[b.cls], *yolo.to_pixel_edges(b, *size), 0))
        else:
            boxes = list(e.boxes)
        seen[key] = e.rel
        stats["frames"] += 1
        stats[f"frames_{e.kind}"] += 1
        base.update({"split": clip.split, "category": clip.category or "", "video": clip.name, "frame": frame,
                     "xml": e.rel, "source_convention": convention, "verified": e.verified})
        if not boxes:
            stats["frames_no_box"] += 1
            rows.append({**base, "label": "", "xmin": math.nan, "ymin": math.nan,
                         "xmax": math.nan, "ymax": math.nan, "difficult": 0})
        for label, x0, y0, x1, y1, diff in boxes:
            stats["boxes"] += 1
            rows.append({**base, "label": label, "xmin": float(x0), "ymin": float(y0),
                         "xmax": float(x1), "ymax": float(y1), "difficult": diff})
    stats["other_ext"] = dict(other_ext)  # type: ignore[assignment]
    return from_records(rows), findings, stats, decision, class_lists


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
               fmt: str = "auto", box_convention: str = "auto", subsets=None) -> dict:
    """Write the box table at ``output`` and the findings sidecar; return a summary dict."""
    from avsprep.datasets.avss import is_avss_root

    files = None
    if setting == "avss" or (setting is None and is_avss_root(root)):  # AVSS release: avsprep.datasets.avss_import
        from avsprep.datasets.avss_import import avss_source

        layout, ann_dir, matcher, files = avss_source(root, subsets, annotations)
        what = f"avss; subsets {', '.join(layout.subsets)}"
    else:
        layout = Layout.from_root(root, setting)
        layout.clips()  # read and check the metadata before walking the tree
        ann_dir = Path(annotations) if annotations is not None else layout.frames_dir()
        matcher, what = StemMatcher(layout), layout.setting
    if not ann_dir.is_dir():
        raise DataError(f"{ann_dir} does not exist; put the labelImg XMLs next to the frames "
                        "or pass --annotations DIR")
    output = Path(output)
    sidecar = sidecar_path(output)
    earlier = _earlier_classes(sidecar)
    table, findings, stats, decision, class_lists = import_annotations(
        layout, ann_dir, quiet=quiet, fmt=fmt, box_convention=box_convention, earlier_classes=earlier,
        matcher=matcher, files=files() if callable(files) else files)
    if stats["files"] == 0:
        kinds = "annotation files (.xml, .txt, .json)" if fmt == "auto" else f"{fmt} files"
        raise DataError(f"no {kinds} under {ann_dir} (found {_found_text(stats)}); {matcher.hint()}")
    write_table(table, output)
    write_text(sidecar, json.dumps({"table": output.name, "root": str(layout.root), "setting": layout.setting,
                                    "box_convention": decision.to_dict(), "yolo_classes": class_lists,
                                    "findings": [f.to_dict() for f in findings]}, indent=1,
                                   ensure_ascii=False) + "\n")
    by_sev = Counter(f.severity for f in findings)
    unreadable = sum(1 for f in findings if f.code in UNREADABLE_CODES)
    exit_code = 1 if unreadable else 0
    lines = [
        f"Read {stats['files']} annotation file(s) under {ann_dir} ({what}; {stats['voc']} VOC, "
        f"{stats['yolo']} YOLO, {stats['createml']} CreateML; also {_found_text(stats)}): "
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
        "by_format": {k: stats[k] for k in ("voc", "yolo", "createml")},
        "frames_by_format": {k: stats[f"frames_{k}"] for k in ("voc", "yolo", "createml")},
        "images": stats["images"], "class_files": stats["class_files"],
        "box_convention": decision.to_dict(), "yolo_classes": class_lists,
        "by_severity": {s: by_sev[s] for s in ("error", "warning", "info")},
        "findings": [f.to_dict() for f in findings],
    }


def _earlier_classes(sidecar: Path) -> dict:
    """The YOLO class lists recorded by an earlier import to the same table (empty if none)."""
    try:
        doc = json.loads(sidecar.read_text(encoding="utf-8"))
        got = doc.get("yolo_classes") or {}
        return {k: list(v) for k, v in got.items() if isinstance(v, list)}
    except (OSError, ValueError, AttributeError):
        return {}
