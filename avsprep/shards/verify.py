"""Checking shards: ``check_shard_file`` (one file against the schema) and ``verify_shards`` (every
shard of a folder against its manifest, optionally recording the ones that pass)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import h5py
import numpy as np

from avsprep.common.atomic import file_sha256
from avsprep.common.clikit import progress
from avsprep.common.errors import DataError, IntegrityError
from avsprep.common.findings import Finding
from avsprep.shards.integrity import file_identity, read_record, write_record
from avsprep.shards.reader import read_manifest, schema_problems
from avsprep.shards.schema import FRAME_SIZE, MANIFEST, MASK_DECODING, MASK_MAX, as_text

def check_shard_file(path: os.PathLike | str, split: Optional[str] = None,
                     clips: Optional[list[str]] = None, classes: Optional[list] = None,
                     values: bool = False) -> list[Finding]:
    """Open one shard and check datasets, shapes, dtypes and attributes against the schema;
    ``values``: also the values the schema promises (``value_problems``; reads every value, so
    ``avsprep verify`` does it, not the build checking what it has just written).

    ``clips``: the expected clip names, in row order (manifest or build plan); ``classes``: the
    manifest's class list (class indices must fall inside it).
    """
    path = Path(path)
    out: list[Finding] = []

    def err(code, msg):
        out.append(Finding(code, "error", msg, file=str(path)))

    try:
        f = h5py.File(path, "r")
    except (OSError, ValueError) as exc:
        err("shard-unreadable", f"cannot open as HDF5 ({exc}); rebuild with avsprep build --resume")
        return out
    with f:
        problems = schema_problems(f)
        for code, msg in problems:
            err(code, msg)
        if problems:
            return out
        if split is not None and as_text(f.attrs["split"]) != split:
            err("shard-split", f"split attribute {as_text(f.attrs['split'])!r} != {split!r}")
        names = [as_text(v) for v in f["video"][()]]
        if clips is not None and names != list(clips):
            err("shard-clips", f"holds {len(names)} clip(s) {names[:3]}..., expected {len(clips)} "
                               f"{list(clips)[:3]}... (the manifest index disagrees)")
        if values:
            out.extend(Finding(code, "error", msg, file=str(path), clip=clip)
                       for code, msg, clip in value_problems(f, names, classes))
        else:  # what the writer could get wrong cheaply: negative labels, box rows
            if (f["label"][()] < 0).any():
                err("shard-label", "negative class index in 'label'")
            rows = f["boxes"][:, 0] if f["boxes"].shape[0] else np.zeros(0)
            if (rows < 0).any() or (rows >= len(names)).any() or (np.diff(rows) < 0).any():
                err("shard-boxes", "boxes clip_row column out of range or not sorted")
    return out


def _clips_line(names: list[str], rows) -> str:
    rows = sorted(set(int(r) for r in rows))
    head = ", ".join(names[r] for r in rows[:3])
    return f"clip(s) {head}" + (f" (+{len(rows) - 3} more)" if len(rows) > 3 else "")


def value_problems(f: h5py.File, names: list[str], classes: Optional[list] = None) -> list[tuple[str, str, str]]:
    """``(code, message, first clip)`` for each value a shard holds that its schema does not allow:
    mask values per the setting's decoding (``schema.MASK_MAX``), class indices (``label``,
    ``crop_label``, the boxes' class) against the manifest's ``classes``, boxes outside the stored
    frame or on a step the clip does not have, non-finite audio. One entry per dataset and kind,
    naming the first clips. Reads every value (``avsprep verify`` hashes every byte anyway);
    masks are read one clip at a time."""
    out = []
    setting = as_text(f.attrs["setting"])
    n, t = len(names), f["masks"].shape[1]
    k = len(classes) if classes is not None else None

    def add(code, msg, rows):
        rows = sorted(set(int(r) for r in rows))
        out.append((code, f"{msg} in {_clips_line(names, rows)}", names[rows[0]]))

    labels = f["label"][()].astype(np.int64)
    bad = np.flatnonzero((labels < 0) | ((labels >= k) if k is not None else False))
    if len(bad):
        allowed = f"0..{k - 1} (the manifest lists {k} class(es))" if k is not None else "0 or more"
        add("shard-label", f"label: class index {int(labels[bad[0]])} outside {allowed}", bad)
    if "crop_label" in f:
        crop = f["crop_label"][()].astype(np.int64)
        bad = np.flatnonzero(((crop < -1) | ((crop >= k) if k is not None else False)).any(axis=1))
        if len(bad):
            add("shard-label", f"crop_label: class index outside -1..{(k or 1) - 1}", bad)
    top = MASK_MAX.get(setting, 1)
    top = (k - 1 if k else None) if top == "classes" else top  # AVSS without a class list: not checked
    bad, seen = [], 0
    ds = f["masks"]
    for row in range(n if top is not None and t else 0):
        m = int(ds[row].max())
        if m > top:
            bad.append(row)
            seen = max(seen, m)
    if bad:
        add("shard-mask-values", f"masks: value {seen} above {top}, the largest the {setting} mask decoding "
                                 f"(pil_mode {MASK_DECODING.get(setting, {}).get('pil_mode')!r}) gives", bad)
    boxes = f["boxes"][()]
    if len(boxes):
        rows = boxes[:, 0].astype(np.int64)
        if (rows < 0).any() or (rows >= n).any() or (np.diff(rows) < 0).any():
            out.append(("shard-boxes", "boxes: clip_row column out of range or not sorted", names[0] if n else ""))
        else:
            step, cls, xy = boxes[:, 1], boxes[:, 2], boxes[:, 3:7]
            finite = np.isfinite(boxes).all(axis=1)
            inside = ((xy >= 0) & (xy <= FRAME_SIZE)).all(axis=1) & (xy[:, 0] <= xy[:, 2]) & (xy[:, 1] <= xy[:, 3])
            bad = np.flatnonzero(~finite | ~inside)
            if len(bad):
                x = boxes[bad[0]]
                add("shard-boxes", f"boxes: ({x[3]:g}, {x[4]:g}, {x[5]:g}, {x[6]:g}) not inside the "
                                   f"{FRAME_SIZE}x{FRAME_SIZE} frame", rows[bad])
            bad = np.flatnonzero(finite & ((step < 1) | (step > t) | (step != np.round(step))))
            if len(bad):
                add("shard-boxes", f"boxes: frame {boxes[bad[0], 1]:g} outside the clip's steps 1..{t}", rows[bad])
            bad = np.flatnonzero(finite & ((cls < -1) | ((cls >= k) if k is not None else False)))
            if len(bad):
                add("shard-label", f"boxes: class {boxes[bad[0], 2]:g} outside -1..{(k or 1) - 1}", rows[bad])
    for name in ("audio_logmel", "audio_vggish"):
        if name in f:
            bad = [r for r in range(n) if not np.isfinite(f[name][r]).all()]
            if bad:
                add("shard-audio-values", f"{name}: NaN/inf", bad)
    return out


def verify_shards(directory: os.PathLike | str, quiet: bool = True, record: bool = False) -> list[Finding]:
    """Every shard against the manifest: presence, byte size, sha256, clip count, schema, index.

    ``record``: shards that pass are written to the verification record
    (``avsprep.shards.integrity``), so readers trust them without hashing; shards
    that fail are removed from it.
    """
    directory = Path(directory)
    mpath = directory / MANIFEST
    try:
        manifest = read_manifest(directory)
    except (DataError, IntegrityError) as exc:
        return [Finding("manifest-missing" if isinstance(exc, DataError) else "manifest-invalid",
                        "error", str(exc).split(": ", 1)[-1], file=str(mpath))]
    findings: list[Finding] = []
    passed: dict[str, dict] = {}
    failed: set[str] = set()
    listed = set()
    index = manifest.get("index", {})
    entries = [(sp, e) for sp, v in manifest["splits"].items() for e in v["shards"]]
    for sp, entry in progress(entries, quiet=quiet, desc="verify", unit="shard"):
        path = directory / entry["file"]
        listed.add(path.resolve())

        def err(code, msg):
            findings.append(Finding(code, "error", msg, file=str(path)))

        if not path.is_file():
            err("shard-missing", "listed in the manifest but missing; run avsprep build --resume")
            continue
        before = len(findings)
        ident = file_identity(path)
        size = ident["bytes"]
        if size != entry["bytes"]:
            err("shard-size", f"{size} bytes, manifest says {entry['bytes']}; the file is truncated or replaced")
        digest = file_sha256(path)
        if digest != entry["sha256"]:
            err("shard-sha256", f"sha256 {digest[:12]}... != manifest {entry['sha256'][:12]}...; "
                                "the shard is corrupt: rebuild it")
        if len(entry["clips"]) != entry["count"]:
            err("manifest-count", f"manifest lists {len(entry['clips'])} clips but count {entry['count']}")
        findings.extend(check_shard_file(path, split=sp, clips=entry["clips"], classes=manifest.get("classes"),
                                         values=True))
        for row, name in enumerate(entry["clips"]):
            where = index.get(name)
            if where != [sp, Path(entry["file"]).name, row]:
                err("manifest-index", f"clip {name!r} is at row {row} but the index says {where}")
                break
        if len(findings) == before and file_identity(path) == ident:
            passed[entry["file"]] = dict(ident, sha256=digest)
        else:
            failed.add(entry["file"])
    n_index = sum(len(e["clips"]) for _, e in entries)
    if n_index != len(index):
        findings.append(Finding("manifest-index", "error",
                                f"index has {len(index)} clips, shards hold {n_index}", file=str(mpath)))
    for sp in manifest["splits"]:
        for p in sorted((directory / sp).glob("shard-*.h5")):
            if p.resolve() not in listed:
                findings.append(Finding("shard-unlisted", "warning",
                                        "shard file not in the manifest (left from another build?)", file=str(p)))
    if record:
        files = {e["file"] for _, e in entries}
        keep = {k: v for k, v in read_record(directory).items() if k in files and k not in failed}
        keep.update(passed)
        write_record(directory, keep)
    return findings
