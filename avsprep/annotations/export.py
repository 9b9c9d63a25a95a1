"""``avsprep export TABLE --to voc|yolo|label-studio DIR``: the box table written back as annotation files.

One file per annotated frame, at the place the table's ``xml`` column names
(relative to DIR; the extension becomes ``.xml`` or ``.txt``), so a table can be
fixed, converted and re-imported. VOC files go through labelImg's own byte
format (:mod:`avsprep.annotations.labelimg_xml`) with the coordinates turned back
into the file's convention (:func:`avsprep.annotations.convention.from_edges`), in the
style of the labelImg version that wrote it (the table's ``xml_writer``: the
2017 v1.3 writers' 2-space ASCII layout is kept; empty, e.g. YOLO imports and
proposals: labelImg 1.8.6's): a file written by labelImg, imported and
exported, comes back byte-identical. YOLO
files are ``class cx cy w h`` rows (labelImg's ``%.6f``) with one
``classes.txt`` at the top of DIR. Frames without a box give a file with no
object (VOC) or an empty file (YOLO), as labelImg saves them.

``--to label-studio`` writes Label Studio tasks instead (:func:`export_label_studio`):
``tasks.json`` (one task per frame, or per clip), ``labeling_config.xml`` with the
setting's classes and a ``README.md`` of the import clicks; verified frames go out as
annotations, the others as predictions (:mod:`avsprep.annotations.label_studio`).
:func:`write_label_studio` is the one writer of such a folder (also used by
``avsprep propose --format label-studio`` and ``avstrain predict --label-studio``).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from pathlib import Path, PurePosixPath
from typing import Optional

import json

from avsprep.annotations import label_studio as ls
from avsprep.annotations import yolo
from avsprep.annotations.convention import coord_texts, from_edges
from avsprep.annotations.labelimg_xml import (
    DEFAULT_WRITER,
    XmlFile,
    XmlObject,
    labelimg_xml_bytes,
)
from avsprep.annotations.table import read_table
from avsprep.common.atomic import write_bytes, write_text
from avsprep.common.errors import DataError
from avsprep.common.jsonread import JsonLimitError
from avsprep.datasets import open_layout
from avsprep.datasets.avsbench import AVSBenchLayout
from avsprep.datasets.frames import read_frame_sizes

TARGETS = ("voc", "yolo", "label-studio")
LS_FILES = ("tasks.json", "labeling_config.xml", "README.md")


def _out_rel(xml: str, video: str, frame: int, shared: bool, filename: str) -> PurePosixPath:
    """Where a frame's file goes under DIR (without extension)."""
    p = PurePosixPath(xml.replace("\\", "/"))
    if p.is_absolute() or ".." in p.parts:
        p = PurePosixPath(p.name)
    stem = p.name.rsplit(".", 1)[0] if "." in p.name else p.name
    if shared:  # one CreateML file held several frames: name each by its image
        base = filename.replace("\\", "/").rsplit("/", 1)[-1]
        stem = base.rsplit(".", 1)[0] if base else f"{video}_{frame}"
    return p.parent / stem


def _int_text(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))


def export_table(df, out_dir: Path, to: str = "voc", classes: Optional[list[str]] = None,
                 frame_sizes: Optional[dict] = None) -> dict:
    """Write every frame of ``df``; return a summary. ``frame_sizes[(video, k)] = (w, h)`` fills in
    frames whose table rows carry no size (YOLO/CreateML imports)."""
    if to not in ("voc", "yolo"):
        raise ValueError(f"to must be voc or yolo here (label-studio: export_label_studio), got {to!r}")
    out_dir = Path(out_dir)
    frames: "OrderedDict[tuple[str, int], list]" = OrderedDict()
    per_xml: dict[str, set] = {}
    for r in df.itertuples(index=False):
        frames.setdefault((r.video, int(r.frame)), []).append(r)
        per_xml.setdefault(r.xml, set()).add((r.video, int(r.frame)))
    class_list = list(classes or [])
    added: list[str] = []
    written = boxes = 0
    seen_paths: dict[str, tuple[str, int]] = {}
    for (video, k), rows in frames.items():
        first = rows[0]
        rel = _out_rel(first.xml, video, k, len(per_xml[first.xml]) > 1, first.xml_filename)
        key = rel.as_posix()
        if key in seen_paths:
            raise DataError(f"{video} frame {k} and {seen_paths[key][0]} frame {seen_paths[key][1]} would both "
                            f"be written to {key}; fix the xml column of the table")
        seen_paths[key] = (video, k)
        real = (frame_sizes or {}).get((video, k))
        w, h = first.xml_width, first.xml_height
        if not (math.isfinite(w) and math.isfinite(h)):
            if real is None:
                raise DataError(f"{first.xml} ({video} frame {k}): the table has no image size for this frame; "
                                "pass --root so the size is read from the frame")
            w, h = real
        brows = [r for r in rows if not all(math.isnan(getattr(r, c)) for c in ("xmin", "ymin", "xmax", "ymax"))]
        boxes += len(brows)
        if to == "voc":
            objs = [XmlObject(r.label, *coord_texts(from_edges(r.xmin, r.ymin, r.xmax, r.ymax,
                                                               r.source_convention)), int(r.difficult))
                    for r in brows]
            filename = first.xml_filename or f"{rel.name}.png"
            doc = XmlFile(first.xml_folder or video, filename, _int_text(w), _int_text(h),
                          first.xml_depth or "3", path=first.xml_path or None,
                          database=first.xml_database or "Unknown", verified=bool(first.verified), objects=objs,
                          writer=first.xml_writer or DEFAULT_WRITER)
            target = out_dir / (key + ".xml")
            target.parent.mkdir(parents=True, exist_ok=True)
            write_bytes(target, labelimg_xml_bytes(doc))
        else:
            if not (w > 0 and h > 0):
                if real is None:
                    raise DataError(f"{first.xml} ({video} frame {k}): image size {w}x{h}; pass --root so "
                                    "the real frame size is used")
                w, h = real
            lines = []
            for r in brows:
                if r.label not in class_list:
                    class_list.append(r.label)
                    added.append(r.label)
                lines.append(yolo.yolo_line(class_list.index(r.label),
                                            *yolo.from_pixel_edges(r.xmin, r.ymin, r.xmax, r.ymax, w, h)))
            target = out_dir / (key + ".txt")
            target.parent.mkdir(parents=True, exist_ok=True)
            write_text(target, "".join(lines))
        written += 1
    if to == "yolo":
        write_text(out_dir / "classes.txt", "".join(c + "\n" for c in class_list))
    text = (f"Wrote {written} {to.upper()} file(s) ({boxes} box(es)) under {out_dir}"
            + (f", with classes.txt ({len(class_list)} classes)" if to == "yolo" else "") + ".")
    if added and classes:
        text += f"\nLabels not in the class list, appended: {', '.join(added[:10])}"
    return {"text": text, "files": written, "boxes": boxes, "to": to, "output": str(out_dir),
            "classes": class_list if to == "yolo" else None}


def write_label_studio(out_dir: Path, tasks: list[dict], classes: list[str], document_root: Optional[Path],
                       per_clip: bool = False) -> list[Path]:
    """Write ``tasks.json``, ``labeling_config.xml`` and ``README.md`` under ``out_dir`` (atomically).
    ``document_root`` None: the images are relative to the release root (``avstrain predict`` has no root)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = [out_dir / n for n in LS_FILES]
    write_text(names[0], json.dumps(tasks, indent=1, ensure_ascii=False) + "\n")
    write_text(names[1], ls.labeling_config(classes, per_clip))
    where = str(Path(document_root).absolute()) if document_root is not None else "ROOT (the release root)"
    write_text(names[2], ls.readme_text(where, LS_FILES[0], LS_FILES[1], len(tasks)))
    return names


def frame_image(layout, clip, k: int, document_root: Path) -> str:
    """A frame's path relative to the document root (posix); DataError when it is not under it."""
    path = layout.frame_path(clip, k).absolute()
    try:
        return path.relative_to(Path(document_root).absolute()).as_posix()
    except ValueError:
        raise DataError(f"{path} is not under the document root {document_root}; pass --document-root with a "
                        "folder above the frames (Label Studio serves files under it)") from None


def export_label_studio(df, out_dir: Path, layout, document_root: Optional[Path] = None, per_clip: bool = False,
                        model_version: str = "avsprep export") -> dict:
    """The table as Label Studio tasks (per frame, or per clip with all its frames)."""
    document_root = Path(document_root) if document_root is not None else layout.root
    index = layout.clip_index()
    frames: "OrderedDict[tuple[str, int], list]" = OrderedDict()
    for r in df.itertuples(index=False):
        if r.video not in index:
            raise DataError(f"{r.xml}: clip {r.video!r} is not in {layout.root}'s metadata; "
                            "export with the --root the table was imported from")
        frames.setdefault((r.video, int(r.frame)), []).append(r)
    keys = [(index[v], k) for v, k in frames]
    if per_clip:
        clips = list(OrderedDict.fromkeys(v for v, _ in frames))
        keys = [(index[v], k) for v in clips for k in layout.frame_indices(index[v])]
    sizes, errors = read_frame_sizes(layout, keys)

    def out_frame(clip, k: int) -> ls.OutFrame:
        size = sizes.get((clip.name, k))
        if size is None:
            raise DataError(f"{layout.frame_path(clip, k)}: cannot read the frame ({errors.get((clip.name, k))}); "
                            "Label Studio boxes are percent of its size")
        rows = frames.get((clip.name, k), [])
        boxes = [ls.OutBox(r.label, r.xmin, r.ymin, r.xmax, r.ymax) for r in rows
                 if not any(math.isnan(getattr(r, c)) for c in ("xmin", "ymin", "xmax", "ymax"))]
        return ls.OutFrame(clip.name, k, frame_image(layout, clip, k, document_root), size[0], size[1], boxes,
                           verified=bool(rows) and all(bool(r.verified) for r in rows))

    if per_clip:
        tasks = [ls.clip_task([out_frame(index[v], k) for k in layout.frame_indices(index[v])], model_version)
                 for v in clips]
    else:
        tasks = [ls.frame_task(out_frame(index[v], k), model_version) for v, k in frames]
    write_label_studio(out_dir, tasks, layout.box_classes(), document_root, per_clip)
    n_ann = sum(1 for t in tasks if "annotations" in t)
    boxes = int(sum(len(p["result"]) for t in tasks for p in t.get("annotations", []) + t.get("predictions", [])))
    text = (f"Wrote {len(tasks)} Label Studio task(s) ({'one per clip' if per_clip else 'one per frame'}; "
            f"{n_ann} as annotations, {len(tasks) - n_ann} as predictions; {boxes} box(es)) to {out_dir}/tasks.json, "
            f"with labeling_config.xml ({len(layout.box_classes())} classes) and README.md. "
            f"Images are relative to {document_root}.")
    return {"text": text, "files": len(tasks), "tasks": len(tasks), "boxes": boxes, "to": "label-studio",
            "output": str(out_dir), "classes": layout.box_classes(), "annotations": n_ann,
            "predictions": len(tasks) - n_ann, "document_root": str(document_root)}


def run_export(table, out_dir, to: str = "voc", root=None, classes_file=None, document_root=None,
               per_clip: bool = False) -> dict:
    """Read the table (and the frame sizes under ``root`` when given) and export it."""
    df = read_table(table)
    if to == "label-studio":
        if root is None:
            raise DataError("--to label-studio needs --root: the frames' sizes and paths come from the release")
        return export_label_studio(df, Path(out_dir), open_layout(root), document_root, per_clip,
                                   model_version=f"avsprep export {Path(table).name}")
    classes = None
    if classes_file is not None:
        try:
            classes = yolo.parse_class_text(Path(classes_file).read_text(encoding="utf-8"), Path(classes_file).name)
        except JsonLimitError as exc:
            raise DataError(f"{classes_file}: {exc}; give a flat class list") from None
        if not classes:
            raise DataError(f"{classes_file}: no class names in it (one per line, or YAML 'names')")
    sizes = None
    if root is not None:
        layout = AVSBenchLayout.from_root(root)
        index = layout.clip_index()
        keys = [(index[v], int(k)) for v, k in zip(df["video"], df["frame"]) if v in index and int(k) in layout.frame_indices(index[v])]
        sizes, _ = read_frame_sizes(layout, keys)
    return export_table(df, out_dir, to=to, classes=classes, frame_sizes=sizes)
