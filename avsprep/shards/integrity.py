"""The verification record: which shards were hashed, bound to the files' identity.

Hashing every shard of a split at every open costs seconds per process (5 s
for the S4 train split, paid again by every DDP rank and every DataLoader
worker). Instead ``avsprep build`` and ``avsprep verify``, the two programs
that hash every shard in full, write ``SHARDS/verified.json``: per shard its
sha256 and the identity of the file they hashed (size, inode, mtime and ctime
in ns). A reader trusts a shard without hashing it when the record's sha256
equals the manifest's and the file's identity is unchanged; otherwise it
hashes the shard in full the first time it reads from it, before any of its
clips is returned (``ShardSet(verify=True)``). The rule is stated in
docs/RELIABILITY.md.

Any write to a file changes its ctime (which no user call can set back), and
copying makes a new inode, so a modified or copied shard is always hashed
again. What this does not catch is a change below the file system (bit rot on
the medium, a raw write to the block device); ``avsprep verify`` hashes
everything and catches that.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable

from avsprep.common.atomic import write_text

VERIFIED = "verified.json"
RECORD_VERSION = 1
IDENTITY_KEYS = ("bytes", "inode", "mtime_ns", "ctime_ns")


def file_identity(path: os.PathLike | str) -> dict:
    """What changes when a file is written, replaced or copied: size, inode, mtime, ctime (ns)."""
    st = os.stat(path)
    return {"bytes": st.st_size, "inode": st.st_ino, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns}


def record_entry(path: os.PathLike | str, sha256: str) -> dict:
    """One shard's record: the sha256 just computed for it and its identity now."""
    return dict(file_identity(path), sha256=sha256)


def trusted(entry: dict, record: dict, identity: dict) -> bool:
    """Pure rule: a shard is trusted when its record names the manifest's sha256 and its identity."""
    rec = record.get(entry["file"]) if isinstance(record, dict) else None
    if not isinstance(rec, dict) or rec.get("sha256") != entry.get("sha256"):
        return False
    return all(rec.get(k) == identity.get(k) for k in IDENTITY_KEYS)


def read_record(directory: os.PathLike | str) -> dict:
    """shard file (relative to SHARDS) -> entry; ``{}`` when there is no usable record."""
    path = Path(directory) / VERIFIED
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(doc, dict) or doc.get("version") != RECORD_VERSION or not isinstance(doc.get("shards"), dict):
        return {}
    return doc["shards"]


def write_record(directory: os.PathLike | str, shards: dict, merge: bool = False) -> bool:
    """Write the record atomically (``merge``: keep other shards' entries); False when the folder
    is read-only (readers then hash each shard once per process, as before)."""
    directory = Path(directory)
    doc_shards = dict(read_record(directory)) if merge else {}
    doc_shards.update(shards)
    doc = {"version": RECORD_VERSION,
           "rule": "a shard whose sha256 and file identity (bytes, inode, mtime_ns, ctime_ns) match this "
                   "record is trusted without hashing; any other is hashed before its first clip is read",
           "shards": {k: doc_shards[k] for k in sorted(doc_shards)}}
    try:
        write_text(directory / VERIFIED, json.dumps(doc, indent=1) + "\n")
    except OSError:
        return False
    return True


def untrusted(directory: os.PathLike | str, entries: Iterable[dict]) -> list[int]:
    """Indices of the manifest ``entries`` that must be hashed before use (missing files raise later)."""
    directory = Path(directory)
    record = read_record(directory)
    out = []
    for i, entry in enumerate(entries):
        try:
            ident = file_identity(directory / entry["file"])
        except OSError:
            out.append(i)
            continue
        if not trusted(entry, record, ident):
            out.append(i)
    return out
