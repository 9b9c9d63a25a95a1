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
from avsprep.shards.reader import read_manifest
from avsprep.shards.schema import MANIFEST, REQUIRED_ATTRS, SCHEMA_VERSION, as_text, dataset_schema

def check_shard_file(path: os.PathLike | str, split: Optional[str] = None,
                     clips: Optional[list[str]] = None) -> list[Finding]:
    """Open one shard and check datasets, shapes, dtypes and attributes against the schema.

    ``clips``: the expected clip names, in row order (manifest or build plan).
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
        missing = [a for a in REQUIRED_ATTRS if a not in f.attrs]
        if missing:
            err("shard-attrs", f"missing attribute(s) {', '.join(missing)}")
            return out
        if int(f.attrs["schema_version"]) != SCHEMA_VERSION:
            err("shard-schema-version", f"schema version {f.attrs['schema_version']} "
                                        f"!= {SCHEMA_VERSION}; rebuild the shards")
            return out
        if split is not None and as_text(f.attrs["split"]) != split:
            err("shard-split", f"split attribute {as_text(f.attrs['split'])!r} != {split!r}")
        if "video" not in f:
            err("shard-dataset-missing", "no 'video' dataset")
            return out
        n = f["video"].shape[0]
        crop = int(f.attrs["crop_size"])
        vggish = "audio_vggish" in f
        m = f["boxes"].shape[0] if "boxes" in f else 0
        setting = as_text(f.attrs["setting"])
        for name, (shape, dtype) in dataset_schema(n, crop, vggish, m, setting).items():
            if name not in f:
                err("shard-dataset-missing", f"no {name!r} dataset")
                continue
            ds = f[name]
            if ds.shape != shape:
                err("shard-shape", f"{name} has shape {list(ds.shape)}, expected {list(shape)}")
            ok = (h5py.check_string_dtype(ds.dtype) is not None) if dtype == "str" else ds.dtype == dtype
            if not ok:
                err("shard-dtype", f"{name} has dtype {ds.dtype}, expected {dtype}")
            if name != "boxes" and n and ds.chunks is not None and ds.chunks[0] != 1:
                err("shard-chunks", f"{name} is chunked {ds.chunks}, expected one clip per chunk")
        extra = sorted(set(f.keys()) - set(dataset_schema(n, crop, vggish, m, setting)))
        if extra:
            err("shard-dataset-extra", f"unexpected dataset(s) {', '.join(extra)}")
        if out:
            return out
        names = [as_text(v) for v in f["video"][()]]
        if clips is not None and names != list(clips):
            err("shard-clips", f"holds {len(names)} clip(s) {names[:3]}..., expected {len(clips)} "
                               f"{list(clips)[:3]}... (the manifest index disagrees)")
        labels = f["label"][()]
        if n and (labels.min() < 0):
            err("shard-label", "negative class index in 'label'")
        if m:
            rows = f["boxes"][:, 0]
            if (rows < 0).any() or (rows >= n).any() or (np.diff(rows) < 0).any():
                err("shard-boxes", "boxes clip_row column out of range or not sorted")
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
        findings.extend(check_shard_file(path, split=sp, clips=entry["clips"]))
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
