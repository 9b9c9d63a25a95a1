"""``avsprep import`` for an AVSS release: ``{subset}/{uid}/frames/{i}.xml`` -> the box table.

labelImg saves ``frames/{i}.xml`` next to ``frames/{i}.jpg``. A file is matched
to (uid, frame i) by its place: the folder above ``frames/`` is the uid (under
``--annotations DIR`` also ``DIR/{uid}/{i}.xml``). In the box table, for AVSS,
``category`` is the subset (v1s/v1m/v2) and ``frame`` the 0-based file index i.
Labels are kept as written; ``validate`` checks them against the clip's a_obj.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from pathlib import Path
from typing import Optional

from avsprep.avss_layout import AVSSLayout
from avsprep.findings import Finding
from avsprep.importer import _display, find_xml_files
from avsprep.table import from_records
from avsprep.voc import read_voc_file, with_place

_INDEX = re.compile(r"^(0|[1-9][0-9]?)\.xml$", re.I)


def match_path(rel_parts: tuple[str, ...]) -> Optional[tuple[str, int]]:
    """Path parts (relative) -> (uid, i) for ``.../{uid}/frames/{i}.xml`` or ``{uid}/{i}.xml`` (pure)."""
    if len(rel_parts) < 2:
        return None
    m = _INDEX.match(rel_parts[-1])
    if not m:
        return None
    i = int(rel_parts[-1].split(".")[0])
    if rel_parts[-2] == "frames":
        return (rel_parts[-3], i) if len(rel_parts) >= 3 else None
    return rel_parts[-2], i


def import_avss(layout: AVSSLayout, ann_dir: Path, quiet: bool = True):
    """Read and match every XML; returns (table, findings, stats) as :func:`avsprep.importer.import_annotations`."""
    from avsprep.clikit import progress

    clips = layout.clip_index()
    all_uids = {c.name for c in layout.all_clips()}
    files = find_xml_files(ann_dir)
    rows, findings, seen, stats = [], [], {}, Counter()
    for path in progress(files, quiet=quiet, desc="import", unit="xml"):
        rel = _display(path, layout.root, ann_dir)
        stats["files"] += 1
        res = read_voc_file(path, name=rel)
        where = match_path(path.relative_to(ann_dir).parts)
        uid, frame = where if where else (None, None)
        clip = clips.get(uid) if uid else None
        findings.extend(with_place(f, uid, frame) for f in res.findings)
        if not res.readable:
            stats["unreadable"] += 1
            continue
        if where is None:
            findings.append(Finding("xml-bad-name", "warning", "not at {subset}/{uid}/frames/{i}.xml "
                                    "(i = 0..9); not imported", rel))
            continue
        if clip is None:
            why = ("its subset is not selected (--subset)" if uid in all_uids
                   else f"uid {uid!r} is not listed in metadata.csv")
            findings.append(Finding("xml-no-clip", "info" if uid in all_uids else "warning",
                                    f"{why}; not imported", rel, uid, frame))
            continue
        if frame >= clip.frames:
            findings.append(Finding("frame-bad-index", "error", f"frame {frame} but a {clip.subset} clip has "
                                    f"frames 0..{clip.frames - 1}; not imported", rel, uid, frame))
            continue
        if (uid, frame) in seen:
            findings.append(Finding("xml-duplicate-frame", "error", f"a second XML for this frame (first: "
                                    f"{seen[(uid, frame)]}); keep only one", rel, uid, frame))
            continue
        seen[(uid, frame)] = rel
        stats["frames"] += 1
        base = {"split": clip.split, "category": clip.subset, "video": uid, "frame": frame, "xml": rel,
                "xml_width": math.nan if res.width is None else float(res.width),
                "xml_height": math.nan if res.height is None else float(res.height),
                "source_convention": res.convention, "verified": res.verified}
        if not res.boxes:
            stats["frames_no_box"] += 1
            rows.append({**base, "label": "", "xmin": math.nan, "ymin": math.nan, "xmax": math.nan,
                         "ymax": math.nan, "difficult": 0})
        for b in res.boxes:
            stats["boxes"] += 1
            rows.append({**base, "label": b.label, "xmin": b.xmin, "ymin": b.ymin, "xmax": b.xmax,
                         "ymax": b.ymax, "difficult": b.difficult})
    return from_records(rows), findings, stats


def run_avss_import(root, output, subsets=None, annotations=None, quiet: bool = False, fmt: str = "auto") -> dict:
    """``avsprep import`` on an AVSS release: write the box table and the findings sidecar."""
    import json

    from avsprep.atomic import write_text
    from avsprep.errors import DataError
    from avsprep.table import sidecar_path, write_table
    from avsprep.voc import UNREADABLE_CODES

    if fmt not in ("auto", "voc"):
        raise DataError(f"--format {fmt}: an AVSS release is imported from labelImg VOC XMLs "
                        "({subset}/{uid}/frames/{i}.xml); YOLO/CreateML are not read for AVSS yet")
    layout = AVSSLayout.from_root(root, subsets)
    layout.clips()
    ann_dir = Path(annotations) if annotations is not None else layout.root
    table, findings, stats = import_avss(layout, ann_dir, quiet=quiet)
    if stats["files"] == 0:
        raise DataError(f"no .xml files under {ann_dir}; save the labelImg annotations next to the frames "
                        "({subset}/{uid}/frames/{i}.xml) or pass --annotations DIR")
    output = Path(output)
    write_table(table, output)
    sidecar = sidecar_path(output)
    write_text(sidecar, json.dumps({"table": output.name, "root": str(layout.root), "setting": "avss",
                                    "findings": [f.to_dict() for f in findings]}, indent=1,
                                   ensure_ascii=False) + "\n")
    by_sev = Counter(f.severity for f in findings)
    unreadable = sum(1 for f in findings if f.code in UNREADABLE_CODES)
    lines = [f"Read {stats['files']} XML file(s) under {ann_dir} (avss; subsets {', '.join(layout.subsets)}): "
             f"{stats['boxes']} box(es) on {stats['frames']} frame(s), {stats['frames_no_box']} frame(s) with no box.",
             f"Wrote {len(table)} row(s) to {output} (findings: {sidecar.name}).",
             f"Findings: {by_sev['error']} error(s), {by_sev['warning']} warning(s), {by_sev['info']} info."]
    lines += ["  " + f.format() for f in findings if f.severity != "info"][:20]
    if unreadable:
        lines.append(f"{unreadable} file(s) could not be read; fix or delete them (exit 1).")
    lines.append(f"Next: avsprep validate {output} --root {layout.root}")
    return {"text": "\n".join(lines), "exit_code": 1 if unreadable else 0, "setting": "avss",
            "table": str(output), "findings_file": str(sidecar), "files": stats["files"],
            "frames": stats["frames"], "rows": len(table), "boxes": stats["boxes"],
            "frames_no_box": stats["frames_no_box"], "unreadable": unreadable,
            "by_severity": {s: by_sev[s] for s in ("error", "warning", "info")},
            "findings": [f.to_dict() for f in findings]}
