"""Reading shards: ``read_manifest`` and ``ShardSet`` (a read-only view of a shard folder, like a
NumPy array of clips), with one ``_OpenShard`` per shard file opened in this process."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import h5py
import numpy as np

from avsprep.common.atomic import file_sha256
from avsprep.common.errors import DataError, IntegrityError
from avsprep.common.jsonread import loads_limited
from avsprep.shards.integrity import untrusted
from avsprep.shards.schema import (MANIFEST, NO_MANIFEST, REQUIRED_ATTRS, SCHEMA_VERSION, SETTING_DATASETS, as_text,
                                   dataset_schema)

def read_manifest(directory: os.PathLike | str) -> dict:
    """The manifest of a shard folder; ``DataError`` when the build did not finish."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise DataError(f"{Path(directory)}: {NO_MANIFEST}")
    try:
        doc = loads_limited(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise IntegrityError(f"{path}: unreadable manifest ({exc}); rebuild with avsprep build --overwrite") from exc
    if not isinstance(doc, dict) or doc.get("schema_version") != SCHEMA_VERSION:
        raise IntegrityError(f"{path}: schema version {doc.get('schema_version') if isinstance(doc, dict) else '?'} "
                             f"!= {SCHEMA_VERSION}; rebuild the shards with this toolkit version")
    return doc


def schema_problems(f: h5py.File) -> list[tuple[str, str]]:
    """``(finding code, message)`` for each way an open shard differs from the schema: attributes,
    schema version, a missing, extra or renamed dataset, a shape, dtype or chunking other than
    ``schema.dataset_schema``'s. Metadata only (no data is read), so every reader can afford it
    when it opens a shard. Empty for a shard as ``avsprep build`` writes it."""
    missing = [a for a in REQUIRED_ATTRS if a not in f.attrs]
    if missing:
        return [("shard-attrs", f"missing attribute(s) {', '.join(missing)}")]
    if int(f.attrs["schema_version"]) != SCHEMA_VERSION:
        return [("shard-schema-version", f"schema version {f.attrs['schema_version']} != {SCHEMA_VERSION}; "
                                         "rebuild the shards")]
    if "video" not in f:
        return [("shard-dataset-missing", "no 'video' dataset")]
    out = []
    n = f["video"].shape[0] if f["video"].shape else 0
    boxes = f["boxes"].shape[0] if "boxes" in f and f["boxes"].shape else 0
    spec = dataset_schema(n, int(f.attrs["crop_size"]), "audio_vggish" in f, boxes, as_text(f.attrs["setting"]))
    for name, (shape, dtype) in spec.items():
        if name not in f:
            out.append(("shard-dataset-missing", f"no {name!r} dataset"))
            continue
        ds = f[name]
        if not isinstance(ds, h5py.Dataset):
            out.append(("shard-dataset-missing", f"{name!r} is a group, not a dataset"))
            continue
        if ds.shape != shape:
            out.append(("shard-shape", f"{name} has shape {list(ds.shape)}, expected {list(shape)}"))
        ok = (h5py.check_string_dtype(ds.dtype) is not None) if dtype == "str" else ds.dtype == dtype
        if not ok:
            out.append(("shard-dtype", f"{name} has dtype {ds.dtype}, expected {dtype}"))
        if name != "boxes" and n and ds.chunks is not None and ds.chunks[0] != 1:
            out.append(("shard-chunks", f"{name} is chunked {ds.chunks}, expected one clip per chunk"))
    extra = sorted(set(f.keys()) - set(spec))
    if extra:
        out.append(("shard-dataset-extra", f"unexpected dataset(s) {', '.join(extra)}"))
    return out


def refuse_off_schema(f: h5py.File, path: Path) -> None:
    """``IntegrityError`` in one line naming the shard and its first problems (``schema_problems``)."""
    problems = [msg for _, msg in schema_problems(f)]
    if problems:
        raise IntegrityError(f"shard {path} does not match the shard schema: " + "; ".join(problems[:3])
                             + (f" (+{len(problems) - 3} more)" if len(problems) > 3 else "")
                             + "; it was edited or comes from another tool: rebuild it with avsprep build")


# per-clip datasets read row by row; the small ones are read whole when a shard is opened
ROW_DATASETS = ("frames", "masks", "crops", "audio_logmel", "audio_vggish")
_EXTRA_DATASETS = [k for extra in SETTING_DATASETS.values() for k in extra]  # read whole, per setting


class _OpenShard:
    """One shard opened for reading in this process, with its dataset handles cached.

    Looking a dataset up by name costs more than reading a clip's frames, so
    handles are looked up once; names, labels, validity flags and boxes (a few
    KiB) are read whole. No HDF5 chunk cache: each chunk is one clip, read once
    per item, and without a cache HDF5 reads it straight into the output array.
    Unfiltered one-clip chunks are read with ``read_direct_chunk`` into a new
    array (no selection machinery). Measured per clip row on this machine (2 cores,
    loaded): frames ``ds[i]`` 0.10-0.20 ms, ``read_direct`` 0.18-0.34 ms,
    ``read_direct_chunk`` 0.08-0.13 ms; a dataset lookup by name 0.14 ms and a
    small-row read (label, flags) 0.1-0.2 ms each, hence the caching.
    """

    def __init__(self, path: Path):
        self.f = h5py.File(path, "r", rdcc_nbytes=0)
        try:
            f = self.f
            refuse_off_schema(f, path)
            self.names = [as_text(v) for v in f["video"][()]]
            self.labels = f["label"][()].astype(np.int64)
            self.mask_valid = f["mask_valid"][()]
            self.crop_valid = f["crop_valid"][()]
            self.extra = {k: f[k][()] for k in _EXTRA_DATASETS if k in f}  # e.g. the AVSS flags
            self.boxes = f["boxes"][()]
            rows = self.boxes[:, 0].astype(np.int64)
            self.box_index = np.searchsorted(rows, np.arange(len(self.names) + 1))
            self.rows = []  # (name, dataset, row shape, dtype, raw chunks readable directly)
            for name in ROW_DATASETS:
                if name not in f:
                    continue
                ds = f[name]
                shape = ds.shape[1:]
                raw = (ds.chunks == (1,) + shape and ds.id.get_create_plist().get_nfilters() == 0)
                self.rows.append((name, ds, shape, ds.dtype, raw))
        except BaseException:
            self.f.close()
            raise

    def item(self, row: int) -> dict:
        a, b = self.box_index[row], self.box_index[row + 1]
        out = {
            "video": self.names[row],
            "label": int(self.labels[row]),
            "mask_valid": self.mask_valid[row].copy(),
            "crop_valid": self.crop_valid[row].copy(),
            "boxes": self.boxes[a:b].copy(),
        }
        for name, values in self.extra.items():
            out[name] = as_text(values[row]) if name == "subset" else values[row].copy()
        for name, ds, shape, dtype, raw in self.rows:
            out[name] = _read_row(ds, row, shape, dtype) if raw else ds[row]
        return out

    def close(self) -> None:
        self.f.close()


def _read_row(ds, row: int, shape: tuple, dtype: np.dtype) -> np.ndarray:
    """Row ``row`` of an unfiltered dataset chunked one row per chunk, read as raw chunk bytes."""
    out = np.empty(shape, dtype)
    try:
        mask, got = ds.id.read_direct_chunk((row,) + (0,) * len(shape), out=out.reshape(-1).view(np.uint8))
    except (KeyError, OSError, ValueError, TypeError):
        return ds[row]  # e.g. a chunk never written: HDF5 fills it
    if mask != 0 or got.nbytes != out.nbytes:
        return ds[row]
    return out


class ShardSet:
    """Read-only view of a shard folder, like a NumPy array of clips.

    ``len(s)``, ``s[i]`` -> dict of arrays for clip i, ``s.index(name)``,
    ``s.names``, ``s.classes``, ``s.manifest``, ``s.has_vggish``. HDF5 files are
    opened lazily and per process (safe in DataLoader workers after fork).

    ``verify=True``: every shard must exist with the manifest's byte size and match the schema's
    datasets, shapes and dtypes (``schema_problems``, metadata only, checked here so a
    hand-edited shard is refused before any DataLoader worker reads it), and
    a shard not covered by a valid verification record (``avsprep.shards.integrity``)
    is hashed against the manifest the first time this process reads from it,
    before any of its clips is returned. ``verify="full"`` hashes every shard
    at open (the old rule). ``verify=False`` checks nothing at open; every
    shard's schema is still checked when this process first reads from it.
    """

    def __init__(self, directory: os.PathLike | str, split: Optional[str] = None, verify=False):
        self.dir = Path(directory)
        self.manifest = read_manifest(self.dir)
        self.classes: list[str] = list(self.manifest["classes"])
        splits = self.manifest["splits"]
        if split is not None and split not in splits:
            raise DataError(f"{self.dir}: no split {split!r} in the manifest (has {', '.join(splits) or 'none'})")
        self.split = split
        self.shards: list[dict] = []
        for sp in ([split] if split else list(splits)):
            for entry in splits[sp]["shards"]:
                self.shards.append(dict(entry, split=sp))
        self._rows: list[tuple[int, int]] = []
        self.names: list[str] = []
        for si, entry in enumerate(self.shards):
            for row, name in enumerate(entry["clips"]):
                self._rows.append((si, row))
                self.names.append(name)
        self._by_name = {n: i for i, n in enumerate(self.names)}
        self.has_vggish = bool(self.manifest["options"].get("vggish_sha256"))
        # -- integrity (see avsprep.shards.integrity and docs/RELIABILITY.md) --------------------
        self._unhashed: set[int] = set()
        if verify:
            for entry in self.shards:
                path = self.dir / entry["file"]
                if not path.is_file():
                    raise IntegrityError(f"shard {path} is missing; rebuild with avsprep build --resume")
                size = path.stat().st_size
                if "bytes" in entry and size != entry["bytes"]:
                    raise IntegrityError(f"shard {path} has {size} bytes, the manifest says {entry['bytes']}; "
                                         "it is truncated or replaced: rebuild with avsprep build --resume")
            self._unhashed = (set(range(len(self.shards))) if verify == "full"
                              else set(untrusted(self.dir, self.shards)))
            if verify == "full":
                for si in sorted(self._unhashed):
                    self._check_hash(si)
            for si in range(len(self.shards)):  # metadata only: an edited shard is refused here, not in a worker
                self._check_schema(si)
        # ------------------------------------------------------------------------------
        self._files: dict[int, _OpenShard] = {}
        self._pid = os.getpid()

    def _check_schema(self, si: int) -> None:
        """Open shard ``si`` for its metadata, refuse it when it is off the schema, close it. One that
        HDF5 cannot open is hashed first when untrusted, so damage is reported as a hash mismatch."""
        path = self.dir / self.shards[si]["file"]
        try:
            with h5py.File(path, "r") as f:
                refuse_off_schema(f, path)
        except OSError as exc:
            if si in self._unhashed:
                self._check_hash(si)
            raise IntegrityError(f"shard {path} cannot be opened ({exc}); "
                                 "run avsprep verify, then avsprep build --resume") from exc

    def _check_hash(self, si: int) -> None:
        """Hash shard ``si`` against the manifest (once per process); IntegrityError naming it."""
        path = self.dir / self.shards[si]["file"]
        try:
            digest = file_sha256(path)
        except OSError as exc:
            raise IntegrityError(f"shard {path} cannot be read ({exc}); rebuild with avsprep build --resume") from exc
        if digest != self.shards[si]["sha256"]:
            raise IntegrityError(f"shard {path} does not match its sha256 in the manifest; "
                                 "it is corrupt: rebuild with avsprep build --overwrite")
        self._unhashed.discard(si)

    def hash_unverified(self) -> None:
        """Hash now every shard not covered by the verification record (raises naming the first bad one)."""
        for si in sorted(self._unhashed):
            self._check_hash(si)

    @property
    def unhashed(self) -> list[int]:
        """Shards this process will hash before reading from them (not covered by the record)."""
        return sorted(self._unhashed)

    def __len__(self) -> int:
        return len(self._rows)

    def subsets(self) -> list[str]:
        """The AVSS subsets (v1s, v1m, v2) the shards of this view hold, sorted, from each shard's
        ``subsets`` attribute; [] for S4/MS3 shards. Opens each file briefly, keeping no handle."""
        found: set[str] = set()
        for entry in self.shards:
            with h5py.File(self.dir / entry["file"], "r") as f:
                if "subsets" in f.attrs:
                    found.update(loads_limited(as_text(f.attrs["subsets"])))
        return sorted(found)

    def index(self, name: str) -> int:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"clip {name!r} is not in {self.dir}"
                           + (f" split {self.split}" if self.split else "")) from None

    def _file(self, si: int) -> "_OpenShard":
        if os.getpid() != self._pid:  # forked: the parent's handles are not ours
            self._files, self._pid = {}, os.getpid()
        f = self._files.get(si)
        if f is None:
            if si in self._unhashed:
                self._check_hash(si)
            path = self.dir / self.shards[si]["file"]
            try:
                f = _OpenShard(path)
            except IntegrityError:
                raise
            except (OSError, ValueError, KeyError) as exc:
                raise IntegrityError(f"shard {path} cannot be opened ({exc}); "
                                     "run avsprep verify, then avsprep build --resume") from exc
            self._files[si] = f
        return f

    def __getitem__(self, i: int) -> dict:
        if not isinstance(i, (int, np.integer)):
            raise TypeError(f"ShardSet indices are integers, not {type(i).__name__}; use .index(name)")
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"clip {i} out of range for {n} clips")
        si, row = self._rows[i]
        return self._file(si).item(row)

    def close(self) -> None:
        if os.getpid() == self._pid:
            for f in self._files.values():
                f.close()
        self._files = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __getstate__(self):  # pickled into spawned workers: no open handles
        state = dict(self.__dict__)
        state["_files"] = {}
        return state

    def __repr__(self) -> str:
        return f"ShardSet({str(self.dir)!r}, split={self.split!r}, clips={len(self)})"
