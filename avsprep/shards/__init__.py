"""HDF5 shard schema, writer, reader (``ShardSet``) and ``verify_shards``.

``SHARDS/{split}/shard-00000.h5 ...`` plus ``SHARDS/manifest.json`` (DESIGN.md 7).
One clip per chunk on every per-clip dataset; ``track_times=False`` and a fixed
``libver`` so the same inputs give the same bytes. The build pipeline itself
(plan, workers, resume, manifest) lives in ``avsprep.build``.

Compression, measured per dataset on this machine (1 core, 32 clips, one chunk
per clip, natural-photo frames, disc masks; write / read ms per clip):

    frames  none 0.64/0.37 ms, lzf x1.12 12.1/3.5 ms, gzip-1 x1.26 22.8/4.9 ms -> none
    masks   none 0.70/0.38 ms, lzf x39 1.2/0.9 ms, gzip-1 x65 0.8/0.6 ms,
            gzip-4 x99 1.8/1.1 ms                                          -> gzip-1
    logmel  none 0.36/0.41 ms, lzf+shuffle x1.07, gzip-1+shuffle x1.14 3.0/0.7 ms -> none
    crops   natural image content like frames                              -> none

Natural frames barely compress and lzf/gzip cost 5-10x the read time, so only
the binary masks (about 1/65 of their raw size with gzip level 1) are compressed.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from avsprep.common.atomic import file_sha256
from avsprep.common.errors import DataError, IntegrityError
from avsprep.common.findings import Finding

SCHEMA_VERSION = 2  # 2: masks decoded as the official loaders (MASK_DECODING), CSV order in the manifest
FRAMES = 5
AVSS_STEPS = 10  # AVSS shards: every clip padded to 10 steps (avsprep.datasets.avss_loader)
FRAME_SIZE = 224
MEL_SHAPE = (96, 64)
VGGISH_DIM = 128
MANIFEST = "manifest.json"
SPLIT_ORDER = ("train", "val", "test")
LIBVER = ("v110", "v110")
BOX_COLUMNS = ("clip_row", "frame", "class", "xmin", "ymin", "xmax", "ymax")

# per dataset: compression keyword arguments (see the module docstring for the figures)
COMPRESSION = {
    "masks": {"compression": "gzip", "compression_opts": 1},
}

# GT mask decoding per setting, as the official loaders do (reference/avsbench.md 1.4): the PIL
# mode the PNG is converted to, and the scale that turns the stored uint8 into the float target
# (S4: Image.convert('1') then ToTensor -> 0/1; MS3: Image.convert('P') then ToTensor -> value/255,
# soft on anti-aliased masks). Recorded in each shard's ``mask_decoding`` attribute and the manifest.
MASK_DECODING = {"s4": {"pil_mode": "1", "scale": 1}, "ms3": {"pil_mode": "P", "scale": 255},
                 # AVSS: labels_rgb through the 71-colour palette -> class index (avsprep.build.avss_clip)
                 "avss": {"pil_mode": "RGB", "palette": "avss-71", "off_palette": 0, "scale": 1}}

NO_MANIFEST = "no manifest.json: the build did not finish; run avsprep build --resume"


# ------------------------------------------------------------------------------- options

@dataclass
class BuildOptions:
    """What ``avsprep build`` was asked to do (``workers``/``overwrite``/``resume`` do not change bytes)."""

    splits: Optional[list[str]] = None
    clips_per_shard: int = 64
    workers: int = 1
    crop_size: int = 224
    crop_policy: str = "largest"
    vggish_weights: Optional[os.PathLike] = None
    on_bad_input: str = "stop"
    overwrite: bool = False
    resume: bool = False
    setting: Optional[str] = None
    subsets: Optional[str] = None  # AVSS: comma-separated v1s,v1m,v2 (None = all)


# ------------------------------------------------------------------------------- schema

def dataset_schema(n: int, crop_size: int, vggish: bool, boxes: int = 0, setting: Optional[str] = None) -> dict:
    """name -> (shape, numpy dtype or 'str') of one shard with ``n`` clips and ``boxes`` box rows.

    AVSS (``setting="avss"``): 10 time steps, ``masks`` hold class indices, plus
    ``frame_valid``/``gt_flag`` (the official loader's flags) and ``subset``.
    """
    t, s, c = (AVSS_STEPS if setting == "avss" else FRAMES), FRAME_SIZE, crop_size
    spec = {
        "video": ((n,), "str"),
        "label": ((n,), np.dtype("int16")),
        "frames": ((n, t, s, s, 3), np.dtype("uint8")),
        "masks": ((n, t, s, s), np.dtype("uint8")),
        "mask_valid": ((n, t), np.dtype("bool")),
        "crops": ((n, t, c, c, 3), np.dtype("uint8")),
        "crop_valid": ((n, t), np.dtype("bool")),
        "boxes": ((boxes, len(BOX_COLUMNS)), np.dtype("float32")),
        "audio_logmel": ((n, t) + MEL_SHAPE, np.dtype("float32")),
    }
    if vggish:
        spec["audio_vggish"] = ((n, t, VGGISH_DIM), np.dtype("float32"))
    if setting == "avss":
        spec["frame_valid"] = ((n, t), np.dtype("bool"))
        spec["gt_flag"] = ((n, t), np.dtype("bool"))
        spec["crop_label"] = ((n, t), np.dtype("int16"))  # class of the cropped box (-1: no crop / unknown)
        spec["subset"] = ((n,), "str")
    return spec


REQUIRED_ATTRS = ("schema_version", "toolkit_version", "split", "setting", "frames", "frame_size",
                  "crop_size", "crop_policy", "audio_source", "resampler", "vggish_sha256",
                  "clips", "build_options", "mask_decoding")


def _h5():
    import h5py

    return h5py


class ShardWriter:
    """Write one shard row by row: ``add(arrays)`` per clip, then ``close(boxes, attrs)``.

    Datasets are created for the planned clip count and shrunk at the end when
    clips were skipped; only written chunks take space, so the bytes depend on
    the content and the order of the rows only.
    """

    def __init__(self, path: os.PathLike | str, n: int, crop_size: int, vggish: bool,
                 setting: Optional[str] = None):
        h5py = _h5()
        self.path = Path(path)
        self.n = 0
        # HDF5 writes into memory and we write the finished image ourselves: a full
        # disk then fails as a plain OSError in Python. (When HDF5 itself hits ENOSPC,
        # h5py crashes the interpreter at exit, whatever cleanup is tried.)
        self.buf = io.BytesIO()
        self.f = h5py.File(self.buf, "w", libver=LIBVER, track_order=False)
        self.ds = {}
        for name, (shape, dtype) in dataset_schema(n, crop_size, vggish, setting=setting).items():
            if name == "boxes":
                continue
            dt = h5py.string_dtype("utf-8") if dtype == "str" else dtype
            self.ds[name] = self.f.create_dataset(
                name, shape=shape, maxshape=(None,) + shape[1:], dtype=dt,
                chunks=(1,) + shape[1:], track_times=False, **COMPRESSION.get(name, {}))

    def add(self, arrays: dict) -> int:
        """Write one clip's arrays as the next row; returns the row."""
        row = self.n
        for name, ds in self.ds.items():
            ds[row] = arrays[name]
        self.n += 1
        return row

    def close(self, boxes: np.ndarray, attrs: dict) -> None:
        """Finish the file. If HDF5 fails here (e.g. disk full), the handle is
        not closed a second time by ``abort`` (a double close can crash h5py)."""
        for ds in self.ds.values():
            ds.resize(self.n, axis=0)
        boxes = np.asarray(boxes, np.float32).reshape(-1, len(BOX_COLUMNS))
        self.f.create_dataset("boxes", data=boxes, maxshape=(None, len(BOX_COLUMNS)),
                              chunks=(max(1, min(len(boxes), 4096)), len(BOX_COLUMNS)),
                              track_times=False)
        for k in sorted(attrs):
            self.f.attrs[k] = attrs[k]
        f, self.f = self.f, None
        f.close()
        with open(self.path, "wb") as fh:
            fh.write(self.buf.getbuffer())
        self.buf = None

    def abort(self) -> None:
        if self.f is None:
            return
        f, self.f = self.f, None
        try:
            f.close()
        except Exception:  # noqa: BLE001 - the file is being thrown away
            pass
        self.buf = None


def _decode(v) -> str:
    return v.decode("utf-8") if isinstance(v, bytes) else str(v)


def check_shard_file(path: os.PathLike | str, split: Optional[str] = None,
                     clips: Optional[list[str]] = None) -> list[Finding]:
    """Open one shard and check datasets, shapes, dtypes and attributes against the schema.

    ``clips``: the expected clip names, in row order (manifest or build plan).
    """
    h5py = _h5()
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
        if split is not None and _decode(f.attrs["split"]) != split:
            err("shard-split", f"split attribute {_decode(f.attrs['split'])!r} != {split!r}")
        if "video" not in f:
            err("shard-dataset-missing", "no 'video' dataset")
            return out
        n = f["video"].shape[0]
        crop = int(f.attrs["crop_size"])
        vggish = "audio_vggish" in f
        m = f["boxes"].shape[0] if "boxes" in f else 0
        setting = _decode(f.attrs["setting"])
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
        names = [_decode(v) for v in f["video"][()]]
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


# ------------------------------------------------------------------------------- manifest

def read_manifest(directory: os.PathLike | str) -> dict:
    """The manifest of a shard folder; ``DataError`` when the build did not finish."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise DataError(f"{Path(directory)}: {NO_MANIFEST}")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise IntegrityError(f"{path}: unreadable manifest ({exc}); rebuild with avsprep build --overwrite") from exc
    if not isinstance(doc, dict) or doc.get("schema_version") != SCHEMA_VERSION:
        raise IntegrityError(f"{path}: schema version {doc.get('schema_version') if isinstance(doc, dict) else '?'} "
                             f"!= {SCHEMA_VERSION}; rebuild the shards with this toolkit version")
    return doc


# ------------------------------------------------------------------------------- reader

# per-clip datasets read row by row; the small ones are read whole when a shard is opened
ROW_DATASETS = ("frames", "masks", "crops", "audio_logmel", "audio_vggish")


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
        self.f = _h5().File(path, "r", rdcc_nbytes=0)
        try:
            f = self.f
            self.names = [_decode(v) for v in f["video"][()]]
            self.labels = f["label"][()].astype(np.int64)
            self.mask_valid = f["mask_valid"][()]
            self.crop_valid = f["crop_valid"][()]
            self.extra = {k: f[k][()] for k in ("frame_valid", "gt_flag", "crop_label", "subset") if k in f}  # AVSS
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
            out[name] = _decode(values[row]) if name == "subset" else values[row].copy()
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

    ``verify=True``: every shard must exist with the manifest's byte size, and
    a shard not covered by a valid verification record (``avsprep.shards.integrity``)
    is hashed against the manifest the first time this process reads from it,
    before any of its clips is returned. ``verify="full"`` hashes every shard
    at open (the old rule). ``verify=False`` checks nothing.
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
            from avsprep.shards.integrity import untrusted

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
        # ------------------------------------------------------------------------------
        self._files: dict[int, _OpenShard] = {}
        self._pid = os.getpid()

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


# ------------------------------------------------------------------------------- verify

def verify_shards(directory: os.PathLike | str, quiet: bool = True, record: bool = False) -> list[Finding]:
    """Every shard against the manifest: presence, byte size, sha256, clip count, schema, index.

    ``record``: shards that pass are written to the verification record
    (``avsprep.shards.integrity``), so readers trust them without hashing; shards
    that fail are removed from it.
    """
    from avsprep.common.clikit import progress
    from avsprep.shards.integrity import file_identity, read_record, write_record

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
