"""Hostile inputs of issue 21, shared by tests/avsprep/test_hostile.py, test_shard_values.py,
tests/avstrain/test_weights_hostile.py and tools/robustness.py: names that would become paths outside
the output folder, decompression-bomb images, deeply nested JSON; damaged checkpoints and shards."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

# names that must never become a path component; each would escape OUT/s4_data/visual_frames/train/cat/
ESCAPES = ["../../../../../esc_zz", "..", "."]
HOSTILE = ESCAPES + ["a/b", "a\\b", "a\nb", "a\x00b", "a\tb", "C:zz", "", "x" * 256]


def tree(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` -> its sha256 (the snapshot compared before / after a run)."""
    out = {}
    for dirpath, _dirs, files in os.walk(folder):
        for n in files:
            p = Path(dirpath) / n
            out[p.relative_to(folder).as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def s4_csv(path: Path, names: list[str]) -> Path:
    """An S4 metadata CSV (written with the csv module, so any name survives) with 2 categories."""
    import csv

    with open(path, "w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["name", "start", "category", "split"])
        for i, n in enumerate(names):
            w.writerow([n, 0, ("dog_barking", "cat_meowing")[i % 2], ("train", "test")[i % 2]])
    return path


def bomb_png(path: Path, w: int = 20000, h: int = 20000) -> Path:
    """A PNG whose header says ``w`` x ``h`` (400 MP by default) in a few hundred bytes: opening it for
    its size is cheap, decoding it would take GBs (the rows after the first few are missing)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)  # 8-bit greyscale
    idat = zlib.compress(b"\0" * (w + 1) * 4)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def bomb_jpeg(path: Path, w: int = 20000, h: int = 20000) -> Path:
    """A small JPEG whose SOF header is patched to say ``w`` x ``h``."""
    import io
    import struct

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (16, 16)).save(buf, "JPEG")
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", h, w)
    path.write_bytes(bytes(data))
    return path


DEEP_JSON = "[" * 100_000 + "]" * 100_000  # a CreateML file nested 100,000 levels deep


def rehash_shards(shards: Path) -> None:
    """After a hand edit: the manifest's sha256 and byte size made to match every shard again and the
    verification record dropped, so only the checks of the values themselves can notice the edit."""
    import json

    mpath = shards / "manifest.json"
    doc = json.loads(mpath.read_text())
    for split in doc["splits"].values():
        for entry in split["shards"]:
            data = (shards / entry["file"]).read_bytes()
            entry["sha256"], entry["bytes"] = hashlib.sha256(data).hexdigest(), len(data)
    mpath.write_text(json.dumps(doc, indent=1))
    (shards / "verified.json").unlink(missing_ok=True)


# --------------------------------------------------------------------------- weights, checkpoints, shards


def tiny_checkpoint(path: Path, edit=None, model_edit=None) -> Path:
    """A checkpoint of the demo model (channel 16, 23 classes); ``edit(ckpt)`` changes the dict and
    ``model_edit(state_dict)`` the model's tensors before it is saved again."""
    import torch

    from avstrain.checkpoints import save_checkpoint
    from avstrain.config import apply, load_preset
    from avstrain.system import build_system

    cfg = apply(load_preset("demo"), {"channel": 16}, "test")
    torch.manual_seed(0)
    system = build_system(cfg, num_classes=23, has_vggish=False)
    save_checkpoint(path, system, None, cfg, epoch=1, step=1)
    if edit or model_edit:
        ckpt = torch.load(path, weights_only=True)
        if model_edit:
            model_edit(ckpt["model"])
        if edit:
            edit(ckpt)
        torch.save(ckpt, path)
    return path


def nan_first(sd: dict) -> str:
    """Fill the first floating-point tensor of ``sd`` with NaN; returns its key."""
    key = next(k for k, v in sd.items() if v.is_floating_point() and v.numel() > 1)
    sd[key].fill_(float("nan"))
    return key


def replace_dataset(name: str, shape=None, dtype=None):
    """A shard edit (``f`` open ``r+``): dataset ``name`` replaced by zeros of another shape or dtype."""
    import numpy as np

    def change(f):
        old = f[name]
        data = np.zeros(shape or old.shape, dtype or old.dtype)
        del f[name]
        f.create_dataset(name, data=data, chunks=(1,) + data.shape[1:])
    return change


def edit_first_shard(shards: Path, change) -> tuple[Path, list]:
    """Apply ``change(h5py file)`` to the first train shard, then ``rehash_shards``; (path, its clips)."""
    import json

    import h5py

    entry = json.loads((shards / "manifest.json").read_text())["splits"]["train"]["shards"][0]
    with h5py.File(shards / entry["file"], "r+") as f:
        change(f)
    rehash_shards(shards)
    return shards / entry["file"], entry["clips"]
