"""``avsprep import``: every labelImg XML under a folder -> the box table + reader findings.

Each XML is matched to (split, category, video, frame) by its own file stem
(``{name}_{k}`` for S4, ``{id}.mp4_{k}`` for MS3) against the clips in the
metadata CSV; ``<path>`` and ``<folder>`` inside the XML are never opened.
Problems are findings, saved beside the table as ``TABLE.findings.json`` so
``validate`` reports them too.

Exit code: 1 when at least one XML file could not be read at all (not XML,
hostile, too large, not a VOC annotation); 0 otherwise. Box-level problems are
left to ``validate`` to judge.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from pathlib import Path
from typing import Optional

from avsprep.atomic import write_text
from avsprep.clikit import progress
from avsprep.errors import DataError
from avsprep.findings import Finding
from avsprep.layout import Layout, parse_frame_stem
from avsprep.table import from_records, sidecar_path, write_table
from avsprep.voc import UNREADABLE_CODES, read_voc_file, with_place

MAX_LISTED = 20  # findings printed in the text summary; the sidecar and --json hold all


def find_xml_files(folder: Path) -> list[Path]:
    """Every ``*.xml`` under ``folder`` (any case, dotfiles included), sorted for determinism."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        for name in filenames:
            if name.lower().endswith(".xml"):
                found.append(Path(dirpath) / name)
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


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


def import_annotations(layout: Layout, ann_dir: Path, quiet: bool = True):
    """Read and match every XML; returns (table DataFrame, findings, stats dict)."""
    clips = layout.clip_index()
    files = find_xml_files(ann_dir)
    rows: list[dict] = []
    findings: list[Finding] = []
    seen: dict[tuple[str, int], str] = {}
    stats = Counter()
    for path in progress(files, quiet=quiet, desc="import", unit="xml"):
        rel = _display(path, layout.root, ann_dir)
        stats["files"] += 1
        res = read_voc_file(path, name=rel)
        stem = _xml_stem(path)
        if not res.readable and stem.startswith("._"):
            stem = stem[2:]  # an AppleDouble "._x_1.xml" is about frame x_1 (YouTube ids have no '.')
        parsed = parse_frame_stem(stem, layout.setting)
        clip = clips.get(parsed[0]) if parsed else None
        video, frame = (parsed if parsed else (None, None))
        findings.extend(with_place(f, clip.name if clip else video, frame) for f in res.findings)
        if not res.readable:
            stats["unreadable"] += 1
            continue
        if parsed is None:
            pattern = "{name}_{k}" if layout.setting == "s4" else "{id}.mp4_{k}"
            findings.append(Finding("xml-bad-name", "warning",
                                    f"file name is not a frame name ({pattern}.xml, k = 1..5); not imported",
                                    rel))
            continue
        if clip is None:
            findings.append(Finding("xml-no-clip", "warning",
                                    f"video {video!r} is not listed in {layout.meta_path.name}; not imported",
                                    rel, video, frame))
            continue
        key = (clip.name, frame)
        if key in seen:
            findings.append(Finding("xml-duplicate-frame", "error",
                                    f"a second XML for this frame (first: {seen[key]}); ignored, "
                                    "keep only one", rel, clip.name, frame))
            continue
        seen[key] = rel
        stats["frames"] += 1
        base = {
            "split": clip.split, "category": clip.category or "", "video": clip.name, "frame": frame,
            "xml": rel,
            "xml_width": math.nan if res.width is None else float(res.width),
            "xml_height": math.nan if res.height is None else float(res.height),
            "source_convention": res.convention, "verified": res.verified,
        }
        if not res.boxes:
            stats["frames_no_box"] += 1
            rows.append({**base, "label": "", "xmin": math.nan, "ymin": math.nan,
                         "xmax": math.nan, "ymax": math.nan, "difficult": 0})
        for b in res.boxes:
            stats["boxes"] += 1
            rows.append({**base, "label": b.label, "xmin": b.xmin, "ymin": b.ymin,
                         "xmax": b.xmax, "ymax": b.ymax, "difficult": b.difficult})
    return from_records(rows), findings, stats


def run_import(root, output, setting: Optional[str] = None, annotations=None, quiet: bool = False) -> dict:
    """Write the box table at ``output`` and the findings sidecar; return a summary dict."""
    layout = Layout.from_root(root, setting)
    layout.clips()  # read and check the metadata before walking the tree
    ann_dir = Path(annotations) if annotations is not None else layout.frames_dir()
    if not ann_dir.is_dir():
        raise DataError(f"{ann_dir} does not exist; put the labelImg XMLs next to the frames "
                        "or pass --annotations DIR")
    table, findings, stats = import_annotations(layout, ann_dir, quiet=quiet)
    if stats["files"] == 0:
        raise DataError(f"no .xml files under {ann_dir}; save labelImg annotations there "
                        "or pass --annotations DIR")
    output = Path(output)
    write_table(table, output)
    sidecar = sidecar_path(output)
    write_text(sidecar, json.dumps({"table": output.name, "root": str(layout.root), "setting": layout.setting,
                                    "findings": [f.to_dict() for f in findings]}, indent=1,
                                   ensure_ascii=False) + "\n")
    by_sev = Counter(f.severity for f in findings)
    unreadable = sum(1 for f in findings if f.code in UNREADABLE_CODES)
    exit_code = 1 if unreadable else 0
    lines = [
        f"Read {stats['files']} XML file(s) under {ann_dir} ({layout.setting}): "
        f"{stats['boxes']} box(es) on {stats['frames']} frame(s), {stats['frames_no_box']} frame(s) with no box.",
        f"Wrote {len(table)} row(s) to {output} (findings: {sidecar.name}).",
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
        "by_severity": {s: by_sev[s] for s in ("error", "warning", "info")},
        "findings": [f.to_dict() for f in findings],
    }
