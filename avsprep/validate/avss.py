"""``avsprep validate`` for an AVSS release: the release checks plus box coverage and labels.

Per clip of the chosen subsets/splits: the metadata anomalies and file checks
of :mod:`avsprep.validate.avss_release`, frames ``0..n-1`` annotated, and every box
checked as for S4/MS3 (finite, inside the real frame, ...) plus its label: one
of the clip's ``a_obj`` classes, spelled as in ``label2idx.json``.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from pathlib import Path
from typing import Iterable, Optional

from avsprep.validate.avss_release import TYPOS, check_clip, check_metadata, clip_classes
from avsprep.datasets.avss_classes import AVSS_CLASSES
from avsprep.datasets.avss import SPLITS, SUBSETS, AVSSClip, AVSSLayout
from avsprep.common.findings import SEVERITIES, Finding
from avsprep.validate import Report, _check_frame, _sort_key, load_sidecar

BOX_CLASSES = AVSS_CLASSES[1:]  # a box never says "background"


def _blank() -> dict:
    return {"clips": 0, "full": 0, "partial": 0, "none": 0}


def check_box_labels(clip: AVSSClip, frame: int, labels: Iterable[str], xml: str) -> list[Finding]:
    """Each (already class-checked) label must be one of the clip's a_obj classes (pure)."""
    allowed = {AVSS_CLASSES[c] for c in clip_classes(clip.a_obj)}
    if not allowed:  # off-the-screen / background rows: nothing to compare with
        return []
    out = []
    for label in labels:
        canon = TYPOS.get(label.strip(), label.strip())
        if canon in BOX_CLASSES and canon not in allowed:
            out.append(Finding("label-not-in-a-obj", "error",
                               f"box {label!r} but a_obj lists {', '.join(sorted(allowed))}; box a sounding object "
                               "or fix metadata.csv", xml, clip.name, frame))
    return out


def validate_avss_table(df, clips: list[AVSSClip], frame_sizes: dict, size_policy: str = "rescale",
                        splits: Optional[list[str]] = None, subsets=SUBSETS,
                        extra_findings: Iterable[Finding] = ()) -> Report:
    """Pure core: coverage and box checks of a box table against AVSS clips (frames 0-based)."""
    splits = list(splits) if splits else [s for s in SPLITS if any(c.split == s for c in clips)]
    findings = list(extra_findings)
    by_name = {c.name: c for c in clips}
    rows_by_clip = defaultdict(list)
    for r in df.itertuples(index=False):
        if r.video in by_name:
            rows_by_clip[r.video].append(r)
    per_split = {s: _blank() for s in splits}
    per_subset = {s: _blank() for s in subsets}
    cov = _blank()
    bpf, labels = Counter(), Counter()
    n_boxes = n_frames = n_nobox = expected = 0
    for clip in clips:
        expected += clip.frames
        frames = defaultdict(list)
        for r in rows_by_clip.get(clip.name, []):
            if 0 <= int(r.frame) < clip.frames:
                frames[int(r.frame)].append(r)
            else:
                findings.append(Finding("frame-bad-index", "error", f"frame {r.frame} is not 0..{clip.frames - 1}",
                                        r.xml, clip.name, int(r.frame)))
        bucket = "full" if len(frames) >= clip.frames else ("none" if not frames else "partial")
        for c in (cov, per_split.setdefault(clip.split, _blank()), per_subset.setdefault(clip.subset, _blank())):
            c["clips"] += 1
            c[bucket] += 1
        if not frames:
            findings.append(Finding("clip-not-annotated", "warning", "no frame of this clip is annotated",
                                    None, clip.name))
        else:
            for i in range(clip.frames):
                if i not in frames:
                    findings.append(Finding("frame-missing", "warning",
                                            f"frame {i} has no annotation (expected frames/{i}.xml)", None, clip.name, i))
        for i in sorted(frames):
            n_frames += 1
            rows = frames[i]
            boxes = [r for r in rows if not all(math.isnan(getattr(r, c)) for c in ("xmin", "ymin", "xmax", "ymax"))]
            bpf[len(boxes)] += 1
            if not boxes:
                n_nobox += 1
                findings.append(Finding("frame-no-box", "info", "annotated with no box (sound source off-screen?)",
                                        rows[0].xml, clip.name, i))
                continue
            _check_frame(clip, i, boxes, frame_sizes.get((clip.name, i)), BOX_CLASSES, "avss",
                         size_policy, findings, labels)
            findings += check_box_labels(clip, i, [r.label for r in boxes], boxes[0].xml)
            n_boxes += len(boxes)
    findings.sort(key=_sort_key)
    summary = {
        "setting": "avss", "subsets": list(subsets), "splits": splits, "coverage": cov, "per_split": per_split,
        "per_class": per_subset,  # the text report prints this table; for AVSS its rows are the subsets
        "frames_expected": expected, "frames_annotated": n_frames, "frames_no_box": n_nobox, "boxes": n_boxes,
        "boxes_per_frame": {str(n): bpf[n] for n in sorted(bpf)},
        "labels": dict(sorted(labels.items())),
        "findings": {s: sum(1 for f in findings if f.severity == s) for s in SEVERITIES},
        "findings_by_code": dict(sorted(Counter(f.code for f in findings).items())),
        "size_policy": size_policy,
    }
    return Report(summary, findings)


def run_avss_validate(table_path, root, splits: Optional[list[str]] = None, size_policy: str = "rescale",
                      subsets=None, quiet: bool = True) -> Report:
    """Read the table and the release; run the release checks and the box checks."""
    from PIL import Image

    from avsprep.common.clikit import progress
    from avsprep.annotations.table import read_table

    table_path = Path(table_path)
    layout = AVSSLayout.from_root(root, subsets)
    df = read_table(table_path)
    clips = layout.clips(splits)
    findings = check_metadata(clips, layout.meta_path.name)
    sizes = {}
    for clip in progress(clips, quiet=quiet, desc="validate", unit="clip"):
        findings += check_clip(layout, clip)
        for i in range(clip.frames):
            p = layout.frame_path(clip, i)
            try:
                with Image.open(p) as im:
                    sizes[(clip.name, i)] = im.size
            except OSError:
                sizes[(clip.name, i)] = None  # reported by check_clip
    wanted = {c.name for c in clips}
    extra = [f for f in load_sidecar(table_path) if f.clip is None or f.clip in wanted]
    report = validate_avss_table(df, clips, sizes, size_policy, splits, layout.subsets, findings + extra)
    report.summary["table"] = str(table_path)
    report.summary["root"] = str(layout.root)
    return report
