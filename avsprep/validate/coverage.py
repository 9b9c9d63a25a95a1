"""The coverage core of ``avsprep validate``, one for every layout: per clip, are its frames all
annotated, how many boxes each, and every box checked (:mod:`avsprep.validate.boxes`).

What differs between layouts is asked of the layout (:class:`avsprep.datasets.base.Layout`): the
clip's frame numbers, its coverage row, the classes a box may name, the one class it must name (S4),
the classes it may name (AVSS a_obj), the annotation file a missing frame would have. Pure: the
frame sizes and the findings of the readers and release checks come in as arguments.

Severity policy: a coverage gap (missing frame, clip with no annotation) is a warning, so
``--strict`` fails it; a frame saved with no box is info (the sound source may be off-screen);
anything that would put a wrong box into training is an error.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Optional

from avsprep.annotations.labelimg_xml import is_unchecked_proposal
from avsprep.common.findings import SEVERITIES, Finding, exit_code as findings_exit_code
from avsprep.datasets.base import SPLITS, Layout
from avsprep.validate.boxes import check_box_labels, check_frame

_SEV_RANK = {s: i for i, s in enumerate(SEVERITIES)}
BOX_COLUMNS = ("xmin", "ymin", "xmax", "ymax")


def _blank_counts() -> dict:
    return {"clips": 0, "full": 0, "partial": 0, "none": 0}


@dataclass
class Report:
    """Summary and findings of one validation run."""

    summary: dict
    findings: list[Finding] = field(default_factory=list)

    def exit_code(self, strict: bool = False) -> int:
        return findings_exit_code(self.findings, strict)

    def counts(self) -> dict:
        c = Counter(f.severity for f in self.findings)
        return {s: c[s] for s in SEVERITIES}

    def to_dict(self, strict: bool = False) -> dict:
        return {"summary": self.summary, "findings": [f.to_dict() for f in self.findings],
                "exit_code": self.exit_code(strict), "strict": strict}

    def format_text(self, max_findings: int = 50) -> str:
        s = self.summary
        lines = [f"Validated {s.get('table', 'the box table')} against {s.get('root', 'the root')} "
                 f"({s['setting']}; splits: {', '.join(s['splits'])})", ""]
        head = f"{'':<28}{'clips':>7}{'full':>7}{'partial':>9}{'none':>7}"
        lines.append(head)

        def row(name, c):
            return f"{name:<28}{c['clips']:>7}{c['full']:>7}{c['partial']:>9}{c['none']:>7}"

        for split, c in s["per_split"].items():
            lines.append(row(split, c))
        lines.append(row("all", s["coverage"]))
        if s["per_class"]:
            lines += ["", f"{'class':<28}{'clips':>7}{'full':>7}{'partial':>9}{'none':>7}"]
            lines += [row(k, c) for k, c in s["per_class"].items() if c["clips"]]
        lines += ["",
                  f"frames annotated: {s['frames_annotated']} of {s['frames_expected']} "
                  f"({s['frames_no_box']} with no box); boxes: {s['boxes']}; "
                  "boxes per annotated frame: "
                  + (", ".join(f"{n} box(es) x{c}" for n, c in s["boxes_per_frame"].items()) or "-")]
        if s.get("unchecked_proposals"):
            lines.append(f"unchecked box proposals: {s['unchecked_proposals']} frame(s)")
        c = self.counts()
        lines.append(f"findings: {c['error']} error(s), {c['warning']} warning(s), {c['info']} info")
        if self.findings and max_findings > 0:
            shown = self.findings[:max(0, max_findings)]
            lines += ["", f"Findings ({len(shown)} of {len(self.findings)}; --json lists all):"]
            lines += [f.format() for f in shown]
        lines.append("")
        if c["error"]:
            lines.append("Result: FAILED (errors).")
        elif c["warning"]:
            lines.append("Result: OK with warnings (--strict fails on them).")
        else:
            lines.append("Result: OK.")
        return "\n".join(lines)


def sort_key(f: Finding):
    """Report order: errors first, then by clip, frame, code, file, message."""
    return (_SEV_RANK[f.severity], f.clip or "", f.frame or 0, f.code, f.file or "", f.message)


def check_coverage(df, layout: Layout, clips: list, frame_sizes: Mapping[tuple[str, int], Optional[tuple[int, int]]],
                   size_policy: str = "rescale", splits: Optional[Iterable[str]] = None,
                   extra_findings: Iterable[Finding] = (), strict: bool = False) -> Report:
    """Check ``df`` (a box table) against ``clips`` of ``layout``; real sizes from ``frame_sizes``.

    ``frame_sizes[(clip, frame)]`` is (width, height), or None / absent when unknown (then boxes are
    not checked against the frame). ``extra_findings`` (import, release checks) join the report.
    """
    if size_policy not in ("rescale", "reject"):
        raise ValueError(f"size_policy must be rescale or reject, got {size_policy!r}")
    splits = list(splits) if splits else [s for s in SPLITS if any(c.split == s for c in clips)]
    findings: list[Finding] = list(extra_findings)
    by_name = {c.name: c for c in clips}
    split_set = set(splits)

    rows_by_clip: dict[str, list] = defaultdict(list)
    orphan_seen = set()
    for r in df.itertuples(index=False):
        if r.video in by_name:
            rows_by_clip[r.video].append(r)
        elif layout.table_checks and r.split in split_set and r.video not in orphan_seen:
            orphan_seen.add(r.video)
            findings.append(Finding.of("xml-no-clip", f"video {r.video!r} is in the table but not in the "
                                       "metadata for these splits; ignored", r.xml, r.video, None))

    per_split = {sp: _blank_counts() for sp in splits}
    per_group = {g: _blank_counts() for g in layout.coverage_groups()}
    cov = _blank_counts()
    bpf = Counter()
    labels = Counter()
    n_boxes = n_frames = n_nobox = n_expected = 0
    unchecked: list[tuple[str, int]] = []
    box_classes = layout.box_classes()

    for clip in clips:
        indices = layout.frame_indices(clip)
        n_expected += len(indices)
        frames: dict[int, list] = defaultdict(list)
        mismatch_told = False
        for r in rows_by_clip.get(clip.name, []):
            k = int(r.frame)
            if k not in indices:
                findings.append(Finding.of("frame-bad-index", f"frame {r.frame} is not {indices[0]}..{indices[-1]}",
                                           r.xml, clip.name, k))
                continue
            category = layout.table_category(clip)
            if layout.table_checks and not mismatch_told and (r.split != clip.split or category != r.category):
                mismatch_told = True
                findings.append(Finding.of("table-clip-mismatch",
                                           f"table says {r.split}/{r.category or '-'}, metadata says "
                                           f"{clip.split}/{category or '-'}; metadata wins (re-run import?)",
                                           r.xml, clip.name, k))
            frames[k].append(r)
        bucket = "full" if len(frames) >= len(indices) else ("none" if not frames else "partial")
        for counts in (cov, per_split.setdefault(clip.split, _blank_counts()),
                       per_group.get(layout.coverage_group(clip))):
            if counts is not None:
                counts["clips"] += 1
                counts[bucket] += 1
        if not frames:
            findings.append(Finding.of("clip-not-annotated", "no frame of this clip is annotated",
                                       None, clip.name, None))
        else:
            for k in indices:
                if k not in frames:
                    findings.append(Finding.of("frame-missing", f"frame {k} has no annotation "
                                               f"(expected {layout.annotation_name(clip, k)})", None, clip.name, k))
        allowed = layout.allowed_labels(clip)
        for k in sorted(frames):
            n_frames += 1
            frows = frames[k]
            if layout.table_checks and is_unchecked_proposal(getattr(frows[0], "xml_database", ""),
                                                             bool(frows[0].verified)):
                unchecked.append((clip.name, k))
            boxes = [r for r in frows if not all(math.isnan(getattr(r, c)) for c in BOX_COLUMNS)]
            bpf[len(boxes)] += 1
            if not boxes:
                n_nobox += 1
                findings.append(Finding.of("frame-no-box", f"annotated with no box ({layout.no_box_hint})",
                                           frows[0].xml, clip.name, k))
                continue
            check_frame(clip.name, k, boxes, frame_sizes.get((clip.name, k)), box_classes,
                        layout.label_category(clip), size_policy, findings, labels)
            if allowed:
                findings += check_box_labels(clip.name, k, [r.label for r in boxes], allowed, box_classes,
                                             boxes[0].xml)
            n_boxes += len(boxes)

    if unchecked:
        shown = ", ".join(f"{c} frame {k}" for c, k in unchecked[:3]) + (" ..." if len(unchecked) > 3 else "")
        findings.append(Finding.of("frame-unchecked-proposal",
                                   f"{len(unchecked)} frame(s) still carry unchecked box proposals ({shown}); "
                                   "open them in labelImg, fix the box, press Space (verify) and save",
                                   severity="warning" if strict else "info"))
    findings.sort(key=sort_key)
    summary = {"unchecked_proposals": len(unchecked)} if layout.table_checks else {}
    summary.update({
        "setting": layout.setting, **layout.summary_fields(), "splits": splits, "coverage": cov,
        "per_split": per_split,
        "per_class": per_group,  # the text report's second table; for AVSS its rows are the subsets
        "frames_expected": n_expected, "frames_annotated": n_frames, "frames_no_box": n_nobox,
        "boxes": n_boxes,
        "boxes_per_frame": {str(n): bpf[n] for n in sorted(bpf)},
        "labels": dict(sorted(labels.items())),
        "findings": {s: sum(1 for f in findings if f.severity == s) for s in SEVERITIES},
        "findings_by_code": dict(sorted(Counter(f.code for f in findings).items())),
        "size_policy": size_policy,
    })
    return Report(summary, findings)
