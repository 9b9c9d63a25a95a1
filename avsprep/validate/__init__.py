"""``avsprep validate``: coverage and box checks of a box table against the metadata.

Per clip listed for the chosen splits: are frames 1..5 all annotated, how many
boxes each, does the label match the clip's category (S4), are boxes inside
the real frame (size read from the PNG header), finite, non-degenerate, not
duplicated. Reader findings saved by ``import`` (``TABLE.findings.json``) are
merged in. :func:`validate_table` is the pure core; :func:`run_validate` adds
the file reading.

Severity policy: a coverage gap (missing frame, clip with no annotation) is a
warning, so ``--strict`` fails it; a frame saved with no box is info (the sound
source may be off-screen); anything that would put a wrong box into training
is an error. Finding codes are stable; the full list is :data:`avsprep.common.findings.CODES`.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Optional

from avsprep.annotations.labelimg_xml import is_unchecked_proposal
from avsprep.common.findings import SEVERITIES, Finding, exit_code as findings_exit_code
from avsprep.datasets.avsbench import FRAMES, Clip, Layout
from avsprep.annotations.table import read_table, sidecar_path

EPS = 1e-6
_SEV_RANK = {s: i for i, s in enumerate(SEVERITIES)}


def normalise_label(label: str) -> str:
    """Case- and whitespace-insensitive form (spaces/TABs -> ``_``): the drift ``build`` also accepts."""
    return re.sub(r"\s+", "_", label.strip()).casefold()


def check_label(label: str, classes: list[str], category: Optional[str]) -> tuple[Optional[str], list[tuple[str, str]]]:
    """(class the label means or None, [(code, message)]) for one box label."""
    if label.strip() == "":
        return None, [("label-empty", f"label {label!r} is empty")]
    out: list[tuple[str, str]] = []
    if label in classes:
        canon = label
    else:
        canon = {normalise_label(c): c for c in classes}.get(normalise_label(label))
        if canon is None:
            near = difflib.get_close_matches(label.strip(), classes, n=1, cutoff=0.6)
            hint = f"; did you mean {near[0]!r}?" if near else f"; use one of predefined_classes ({len(classes)})"
            return None, [("label-unknown", f"label {label!r} is not a class{hint}")]
        if re.sub(r"\s+", "", label) == re.sub(r"\s+", "", canon):
            out.append(("label-whitespace", f"label {label!r} read as {canon!r} (stray spaces/TABs)"))
        else:
            out.append(("label-case-drift", f"label {label!r} read as {canon!r}"))
    if category is not None and canon != category:
        out.append(("label-category-mismatch",
                    f"label {canon!r} but the clip's category is {category!r}; box the sounding object"))
    return canon, out


def _coverage_bucket(n: int) -> str:
    return "full" if n >= FRAMES else ("none" if n == 0 else "partial")


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


def _sort_key(f: Finding):
    return (_SEV_RANK[f.severity], f.clip or "", f.frame or 0, f.code, f.file or "", f.message)


def validate_table(df, clips: list[Clip], frame_sizes: Mapping[tuple[str, int], Optional[tuple[int, int]]],
                   classes: list[str], setting: str = "s4", size_policy: str = "rescale",
                   splits: Optional[Iterable[str]] = None, extra_findings: Iterable[Finding] = (),
                   strict: bool = False) -> Report:
    """Pure core: check ``df`` (a box table) against ``clips``; real sizes from ``frame_sizes``.

    ``frame_sizes[(video, k)]`` is (width, height), or None / absent when
    unknown (then boxes are not checked against the frame).
    """
    if size_policy not in ("rescale", "reject"):
        raise ValueError(f"size_policy must be rescale or reject, got {size_policy!r}")
    splits = list(splits) if splits else sorted({c.split for c in clips}, key=["train", "val", "test"].index)
    findings: list[Finding] = list(extra_findings)
    by_name = {c.name: c for c in clips}
    split_set = set(splits)

    rows_by_clip: dict[str, list] = defaultdict(list)
    orphan_seen = set()
    for r in df.itertuples(index=False):
        if r.video in by_name:
            rows_by_clip[r.video].append(r)
        elif r.split in split_set and r.video not in orphan_seen:
            orphan_seen.add(r.video)
            findings.append(Finding.of("xml-no-clip", f"video {r.video!r} is in the table but not in the "
                                     "metadata for these splits; ignored", r.xml, r.video, None))

    per_split = {sp: _blank_counts() for sp in splits}
    per_class = {k: _blank_counts() for k in classes} if setting == "s4" else {}
    cov = _blank_counts()
    bpf = Counter()
    labels = Counter()
    n_boxes = n_frames = n_nobox = 0
    unchecked: list[tuple[str, int]] = []

    for clip in clips:
        rows = rows_by_clip.get(clip.name, [])
        frames: dict[int, list] = defaultdict(list)
        mismatch_told = False
        for r in rows:
            if not 1 <= r.frame <= FRAMES:
                findings.append(Finding.of("frame-bad-index", f"frame {r.frame} is not 1..{FRAMES}",
                                         r.xml, clip.name, r.frame))
                continue
            if not mismatch_told and (r.split != clip.split or (clip.category or "") != r.category):
                mismatch_told = True
                findings.append(Finding.of("table-clip-mismatch",
                                         f"table says {r.split}/{r.category or '-'}, metadata says "
                                         f"{clip.split}/{clip.category or '-'}; metadata wins (re-run import?)",
                                         r.xml, clip.name, r.frame))
            frames[r.frame].append(r)
        bucket = _coverage_bucket(len(frames))
        for counts in (cov, per_split.setdefault(clip.split, _blank_counts()),
                       per_class.get(clip.category or "", None)):
            if counts is not None:
                counts["clips"] += 1
                counts[bucket] += 1
        if not frames:
            findings.append(Finding.of("clip-not-annotated", "no frame of this clip is annotated",
                                     None, clip.name, None))
        else:
            for k in range(1, FRAMES + 1):
                if k not in frames:
                    findings.append(Finding.of("frame-missing", f"frame {k} has no annotation "
                                             f"(expected {clip.name}{'_' if setting == 's4' else '.mp4_'}{k}.xml)",
                                             None, clip.name, k))
        for k in sorted(frames):
            n_frames += 1
            frows = frames[k]
            if is_unchecked_proposal(getattr(frows[0], "xml_database", ""), bool(frows[0].verified)):
                unchecked.append((clip.name, k))
            boxes = [r for r in frows if not all(math.isnan(getattr(r, c)) for c in ("xmin", "ymin", "xmax", "ymax"))]
            bpf[len(boxes)] += 1
            if not boxes:
                n_nobox += 1
                findings.append(Finding.of("frame-no-box", "annotated with no box (sounding object off-screen?)",
                                         frows[0].xml, clip.name, k))
                continue
            _check_frame(clip, k, boxes, frame_sizes.get((clip.name, k)), classes, setting,
                         size_policy, findings, labels)
            n_boxes += len(boxes)

    if unchecked:
        shown = ", ".join(f"{c} frame {k}" for c, k in unchecked[:3]) + (" ..." if len(unchecked) > 3 else "")
        findings.append(Finding.of("frame-unchecked-proposal",
                                 f"{len(unchecked)} frame(s) still carry unchecked box proposals ({shown}); "
                                 "open them in labelImg, fix the box, press Space (verify) and save",
                                 severity="warning" if strict else "info"))
    findings.sort(key=_sort_key)
    summary = {
        "unchecked_proposals": len(unchecked),
        "setting": setting, "splits": splits, "coverage": cov, "per_split": per_split,
        "per_class": per_class,
        "frames_expected": FRAMES * len(clips), "frames_annotated": n_frames, "frames_no_box": n_nobox,
        "boxes": n_boxes,
        "boxes_per_frame": {str(n): bpf[n] for n in sorted(bpf)},
        "labels": dict(sorted(labels.items())),
        "findings": {s: sum(1 for f in findings if f.severity == s) for s in SEVERITIES},
        "findings_by_code": dict(sorted(Counter(f.code for f in findings).items())),
        "size_policy": size_policy,
    }
    return Report(summary, findings)


def _check_frame(clip: Clip, k: int, boxes: list, real: Optional[tuple[int, int]], classes, setting,
                 size_policy, findings: list, labels: Counter) -> None:
    """Label, coordinate, size and duplicate checks for the boxes of one frame."""
    xml = boxes[0].xml
    sx = sy = 1.0
    reject = False
    xw, xh = boxes[0].xml_width, boxes[0].xml_height
    if real is not None and math.isfinite(xw) and math.isfinite(xh) and xw > 0 and xh > 0 \
            and (int(xw), int(xh)) != tuple(real):
        if size_policy == "rescale":
            sx, sy = real[0] / xw, real[1] / xh
            findings.append(Finding.of("size-mismatch", f"<size> {int(xw)}x{int(xh)} but the frame is "
                                     f"{real[0]}x{real[1]}; boxes rescaled by {sx:.4g}x{sy:.4g}",
                                     xml, clip.name, k))
        else:
            reject = True
            findings.append(Finding.of("size-mismatch", f"<size> {int(xw)}x{int(xh)} but the frame is "
                                     f"{real[0]}x{real[1]}; boxes rejected (--size-policy reject)",
                                     xml, clip.name, k, severity="error"))
    seen = set()
    for i, r in enumerate(boxes, start=1):
        labels[r.label] += 1
        where = f"box {i} ({r.label!r})"
        _, problems = check_label(r.label, classes, clip.category if setting == "s4" else None)
        for code, msg in problems:
            findings.append(Finding.of(code, f"{where}: {msg}", r.xml, clip.name, k))
        coords = (r.xmin, r.ymin, r.xmax, r.ymax)
        if not all(math.isfinite(v) for v in coords):
            findings.append(Finding.of("box-not-finite", f"{where}: coordinates {list(coords)} are not finite",
                                     r.xml, clip.name, k))
            continue
        if r.xmin > r.xmax or r.ymin > r.ymax:
            findings.append(Finding.of("box-inverted", f"{where}: xmin,ymin,xmax,ymax = {_fmt(coords)} "
                                     "(min above max)", r.xml, clip.name, k))
            continue
        x0, y0, x1, y1 = r.xmin * sx, r.ymin * sy, r.xmax * sx, r.ymax * sy
        if x1 - x0 < 1 or y1 - y0 < 1:
            findings.append(Finding.of("box-degenerate", f"{where}: {_fmt((x0, y0, x1, y1))} is "
                                     f"{x1 - x0:.3g}x{y1 - y0:.3g} px (under 1 px)", r.xml, clip.name, k))
            continue
        key = (r.label, round(x0, 2), round(y0, 2), round(x1, 2), round(y1, 2))
        if key in seen:
            findings.append(Finding.of("box-duplicate", f"{where}: same label and box as an earlier box",
                                     r.xml, clip.name, k))
        seen.add(key)
        if real is None or reject:
            continue
        w, h = real
        if x0 >= -EPS and y0 >= -EPS and x1 <= w + EPS and y1 <= h + EPS:
            continue
        cx0, cy0, cx1, cy1 = max(x0, 0.0), max(y0, 0.0), min(x1, float(w)), min(y1, float(h))
        if cx1 - cx0 < 1 or cy1 - cy0 < 1:
            findings.append(Finding.of("box-outside", f"{where}: {_fmt((x0, y0, x1, y1))} lies outside the "
                                     f"{w}x{h} frame", r.xml, clip.name, k))
        else:
            findings.append(Finding.of("box-partly-outside", f"{where}: {_fmt((x0, y0, x1, y1))} crosses the "
                                     f"{w}x{h} frame edge; clamped to {_fmt((cx0, cy0, cx1, cy1))}",
                                     r.xml, clip.name, k))


def _fmt(vals) -> str:
    return ",".join(f"{v:g}" for v in vals)


def read_frame_sizes(layout: Layout, keys: Iterable[tuple[Clip, int]]):
    """Real (width, height) of frames from their PNG headers (no decode); findings for missing ones."""
    from PIL import Image, UnidentifiedImageError

    sizes: dict[tuple[str, int], Optional[tuple[int, int]]] = {}
    findings: list[Finding] = []
    for clip, k in keys:
        if (clip.name, k) in sizes:
            continue
        path = layout.frame_path(clip, k)
        rel = _rel(path, layout.root)
        try:
            with Image.open(path) as im:
                sizes[(clip.name, k)] = tuple(im.size)  # type: ignore[assignment]
        except FileNotFoundError:
            sizes[(clip.name, k)] = None
            findings.append(Finding.of("frame-image-missing", "annotated frame has no image at this path; "
                                     "boxes not checked against it", rel, clip.name, k))
        except (OSError, UnidentifiedImageError, ValueError) as exc:
            sizes[(clip.name, k)] = None
            findings.append(Finding.of("frame-image-unreadable", f"cannot open the frame ({exc})",
                                     rel, clip.name, k))
    return sizes, findings


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def load_sidecar(table_path: Path) -> list[Finding]:
    """Reader findings saved by ``import`` beside the table (empty if there is none)."""
    path = sidecar_path(table_path)
    if not path.exists():
        return []
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        return [Finding(**{k: d.get(k) for k in ("code", "severity", "message", "file", "clip", "frame")})
                for d in doc["findings"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return [Finding.of("findings-sidecar-unreadable", f"cannot read it ({exc}); re-run import",
                         path.name)]


def run_validate(table_path, root, splits: Optional[list[str]] = None, size_policy: str = "rescale",
                 strict: bool = False) -> Report:
    """Read the table, the metadata and the frame sizes; check; return the report."""
    table_path = Path(table_path)
    layout = Layout.from_root(root)
    df = read_table(table_path)
    clips = layout.clips(splits)
    index = layout.clip_index()
    wanted = {c.name for c in clips}
    keys = [(index[v], int(k)) for v, k in zip(df["video"], df["frame"])
            if v in wanted and 1 <= int(k) <= FRAMES]
    sizes, image_findings = read_frame_sizes(layout, keys)
    extra = [f for f in load_sidecar(table_path) if f.clip is None or f.clip not in index or f.clip in wanted]
    report = validate_table(df, clips, sizes, layout.classes(), setting=layout.setting,
                            size_policy=size_policy, splits=splits or None,
                            extra_findings=extra + image_findings, strict=strict)
    report.summary["table"] = str(table_path)
    report.summary["root"] = str(layout.root)
    return report
