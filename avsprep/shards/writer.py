"""``ShardWriter``: one shard written row by row into memory, then to its (temporary) path."""

from __future__ import annotations

import io
import os
from pathlib import Path

import h5py
import numpy as np

from avsprep.shards.schema import COMPRESSION, LIBVER, SHARD_BOX_COLUMNS, dataset_schema


class ShardWriter:
    """Write one shard row by row: ``add(arrays)`` per clip, then ``close(boxes, attrs)``.

    Datasets are created for the planned clip count and shrunk at the end when
    clips were skipped; only written chunks take space, so the bytes depend on
    the content and the order of the rows only.
    """

    def __init__(self, path: os.PathLike | str, n: int, crop_size: int, vggish: bool, setting: str = "s4"):
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
        ncol = len(SHARD_BOX_COLUMNS)
        boxes = np.asarray(boxes, np.float32).reshape(-1, ncol)
        self.f.create_dataset("boxes", data=boxes, maxshape=(None, ncol),
                              chunks=(max(1, min(len(boxes), 4096)), ncol), track_times=False)
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
