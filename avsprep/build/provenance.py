"""What each shard was built from: the input record ``shard-NNNNN.h5.inputs.json`` beside it.

Per clip of the shard (clips skipped under ``--on-bad-input skip`` included): every release file
the build reads for it (frames, GT masks, the log-mel pickle and the wav, absent ones marked
absent) with its byte size, ``st_mtime_ns`` and sha256, paths relative to the release root;
the sha256 of its box-table rows; its class label. Plus the build options (the record also
stored in the shard's ``build_options`` attribute). The record is written after the shard is
renamed and before its ``.sha256``, so every finished shard has one.

A file is unchanged when its size and mtime are those recorded; a file whose mtime moved is
hashed, and only a different sha256 counts as a change (a copied or re-generated release with
the same bytes keeps its shards). ``stale_reason`` is what ``build --resume`` asks of a finished
shard; ``check_inputs`` is ``avsprep verify --inputs ROOT``.

The record holds mtimes, so it differs between two copies of a release with equal bytes; the
shards, their ``.sha256`` files and the manifest do not.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Optional

from avsprep.common.atomic import file_sha256, write_text
from avsprep.common.errors import DataError
from avsprep.common.findings import Finding
from avsprep.shards.reader import read_manifest

SUFFIX = ".inputs.json"
FORMAT = 1


def record_path(shard: Path) -> Path:
    return shard.with_name(shard.name + SUFFIX)


# ----------------------------------------------------------------------------- one clip


def _rel(path: Path, root: Path) -> str:
    """``path`` relative to the release root (posix); absolute when it lies outside."""
    try:
        return Path(os.path.abspath(path)).relative_to(root).as_posix()
    except ValueError:
        return Path(os.path.abspath(path)).as_posix()


def file_state(path: Path) -> dict:
    """``{"bytes", "mtime_ns", "sha256"}`` of a file, or ``{"absent": True}``."""
    try:
        st = os.stat(path)
        digest = file_sha256(path)
    except OSError:
        return {"absent": True}
    return {"bytes": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}


def clip_files(layout, clip) -> list[tuple[str, Path]]:
    """(role, path) of every release file the build reads for ``clip``, in a fixed order."""
    out = [(f"frame {k}", Path(layout.frame_path(clip, k))) for k in layout.frame_indices(clip)]
    out += [(f"mask {k}", Path(layout.mask_path(clip, k))) for k in layout.mask_frames(clip)]
    out += [("audio", Path(p)) for p in layout.audio_files(clip)]
    return out


def boxes_digest(boxes: list) -> str:
    """sha256 of a clip's box-table rows as the build uses them (``build._boxes_by_video``)."""
    return hashlib.sha256(json.dumps([list(map(str, b)) for b in boxes]).encode()).hexdigest()


def clip_inputs(layout, clip, boxes: list, label: int) -> dict:
    """The input record of one clip; taken before its files are read, so a file changed while
    the build reads it shows as changed at the next ``--resume``."""
    root = Path(os.path.abspath(layout.root))
    files = [{"role": role, "path": _rel(p, root), **file_state(p)} for role, p in clip_files(layout, clip)]
    return {"label": int(label), "boxes_sha256": boxes_digest(boxes), "files": files}


# ----------------------------------------------------------------------------- the record file


def write_record(shard: Path, options: dict, clips: dict) -> None:
    doc = {"format": FORMAT, "shard": shard.name, "options": options, "clips": clips}
    write_text(record_path(shard), json.dumps(doc, indent=1, sort_keys=True) + "\n")


def read_record(shard: Path) -> Optional[dict]:
    """The input record of a shard, or None when absent or unreadable."""
    try:
        doc = json.loads(record_path(shard).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("clips"), dict):
        return None
    return doc


# ----------------------------------------------------------------------------- comparing


def file_change(entry: dict, path: Path) -> Optional[str]:
    """Why the file at ``path`` is not the one recorded in ``entry`` (None: unchanged)."""
    was_absent = entry.get("absent", False)
    try:
        st = os.stat(path)
    except OSError:
        return None if was_absent else "missing"
    if was_absent:
        return "new file"
    if st.st_size != entry["bytes"]:
        return f"size {entry['bytes']} -> {st.st_size} bytes"
    if st.st_mtime_ns == entry["mtime_ns"]:
        return None
    try:
        same = file_sha256(path) == entry["sha256"]
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"
    return None if same else "content changed (sha256 differs)"


def clip_change(recorded: dict, root: Path) -> Optional[str]:
    """The first changed file of a recorded clip under ``root``, as ``role path: why``, plus how
    many more changed; None when every file is as recorded."""
    changes = []
    for entry in recorded.get("files", []):
        p = Path(entry["path"])
        why = file_change(entry, p if p.is_absolute() else root / p)
        if why:
            changes.append(f"{entry['role']} {entry['path']}: {why}")
    if not changes:
        return None
    return changes[0] + (f" (and {len(changes) - 1} more file(s))" if len(changes) > 1 else "")


def options_change(recorded: dict, now: dict) -> Optional[str]:
    """The build options that differ, as ``key old -> new`` (None: the same)."""
    keys = sorted(k for k in set(recorded) | set(now) if recorded.get(k) != now.get(k))
    if not keys:
        return None
    short = [k if k.endswith("sha256") or k == "root" else f"{k} {recorded.get(k)!r} -> {now.get(k)!r}"
             for k in keys]
    return "options changed: " + ", ".join(short)


def stale_reason(shard: Path, options: dict, layout, clips: list, boxes: dict) -> Optional[str]:
    """Why a finished shard (hash and plan already checked) must be rebuilt for ``--resume``:
    no input record, other options, or a clip whose files, box rows or label changed."""
    rec = read_record(shard)
    if rec is None:
        return "no input record (built by an older version, or the record was removed)"
    why = options_change(rec.get("options", {}), options)
    if why:
        return why
    root = Path(os.path.abspath(layout.root))
    for clip in clips:
        was = rec["clips"].get(clip.name)
        if was is None:
            return f"clip {clip.name}: not in the input record"
        now_files = [(role, _rel(p, root)) for role, p in clip_files(layout, clip)]
        if now_files != [(e["role"], e["path"]) for e in was.get("files", [])]:
            return f"clip {clip.name}: reads other files than at the build"
        if was.get("boxes_sha256") != boxes_digest(boxes.get(clip.name, [])):
            return f"clip {clip.name}: its box-table rows changed"
        if was.get("label") != layout.clip_label(clip):
            return f"clip {clip.name}: its class label changed"
        why = clip_change(was, root)
        if why:
            return f"clip {clip.name}: {why}"
    return None


def check_inputs(directory: os.PathLike | str, root: os.PathLike | str) -> list[Finding]:
    """``avsprep verify --inputs ROOT``: every clip of every listed shard against the release at
    ``ROOT``; one ``input-changed`` finding per clip whose files changed since the build."""
    directory, root = Path(directory), Path(os.path.abspath(root))
    try:
        manifest = read_manifest(directory)
    except DataError as exc:
        return [Finding("manifest-missing", "error", str(exc).split(": ", 1)[-1], file=str(directory))]
    findings = []
    for v in manifest["splits"].values():
        for entry in v["shards"]:
            shard = directory / entry["file"]
            rec = read_record(shard)
            if rec is None:
                findings.append(Finding("input-record-missing", "error",
                                        f"no readable input record {record_path(shard).name}: the inputs cannot "
                                        "be checked; rebuild with avsprep build --resume", file=str(shard)))
                continue
            for name, was in sorted(rec["clips"].items()):
                why = clip_change(was, root)
                if why:
                    findings.append(Finding("input-changed", "error",
                                            f"{why} since the build; rebuild with avsprep build "
                                            "--resume", file=str(shard), clip=name))
    return findings
