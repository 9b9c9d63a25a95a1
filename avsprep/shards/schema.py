"""The shard format: datasets, shapes, dtypes, attributes and the constants that fix the bytes.

``SHARDS/{split}/shard-00000.h5 ...`` plus ``SHARDS/manifest.json`` (docs/formats.md, shards).
One clip per chunk on every per-clip dataset; ``track_times=False`` and a fixed
``libver`` so the same inputs give the same bytes.

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

import numpy as np

from avsprep.datasets.steps import STEPS_PER_CLIP

SCHEMA_VERSION = 2  # 2: masks decoded as the official loaders (MASK_DECODING), CSV order in the manifest
FRAME_SIZE = 224
MEL_SHAPE = (96, 64)
VGGISH_DIM = 128
MANIFEST = "manifest.json"
SPLIT_ORDER = ("train", "val", "test")
LIBVER = ("v110", "v110")
# the 7 columns of the ``boxes`` dataset (the box table's 4 box columns are annotations.table.BOX_COLUMNS)
SHARD_BOX_COLUMNS = ("clip_row", "frame", "class", "xmin", "ymin", "xmax", "ymax")

# per dataset: compression keyword arguments (see the module docstring for the figures)
COMPRESSION = {
    "masks": {"compression": "gzip", "compression_opts": 1},
}

# GT mask decoding per setting, as the official loaders do (docs/reference/avsbench.md 1.4): the PIL
# mode the PNG is converted to, and the scale that turns the stored uint8 into the float target
# (S4: Image.convert('1') then ToTensor -> 0/1; MS3: Image.convert('P') then ToTensor -> value/255,
# soft on anti-aliased masks). Recorded in each shard's ``mask_decoding`` attribute and the manifest.
MASK_DECODING = {"s4": {"pil_mode": "1", "scale": 1}, "ms3": {"pil_mode": "P", "scale": 255},
                 # AVSS: labels_rgb through the 71-colour palette -> class index (AVSSLayout.decode_mask)
                 "avss": {"pil_mode": "RGB", "palette": "avss-71", "off_palette": 0, "scale": 1}}

# The largest value a stored mask may hold under each decoding: S4 0/1; MS3 the P-mode value 0..255
# (soft targets value/255); AVSS a class index, so below the manifest's class count.
MASK_MAX = {"s4": 1, "ms3": 255, "avss": "classes"}

# Datasets a setting adds to the common ones: name -> (per "step" or per "clip", dtype).
# AVSS: the official loader's flags, the class of the cropped box (-1: no crop / unknown) and the subset.
SETTING_DATASETS = {
    "avss": {"frame_valid": ("step", np.dtype("bool")), "gt_flag": ("step", np.dtype("bool")),
             "crop_label": ("step", np.dtype("int16")), "subset": ("clip", "str")},
}

REQUIRED_ATTRS = ("schema_version", "toolkit_version", "split", "setting", "frames", "frame_size",
                  "crop_size", "crop_policy", "audio_source", "resampler", "vggish_sha256",
                  "clips", "build_options", "mask_decoding")

NO_MANIFEST = "no manifest.json: the build did not finish; run avsprep build --resume"


def dataset_schema(n: int, crop_size: int, vggish: bool, boxes: int = 0, setting: str = "s4") -> dict:
    """name -> (shape, numpy dtype or 'str') of one shard with ``n`` clips and ``boxes`` box rows.

    ``STEPS_PER_CLIP[setting]`` time steps; AVSS: 10 steps, ``masks`` hold class indices, plus
    the datasets of ``SETTING_DATASETS["avss"]``.
    """
    t, s, c = STEPS_PER_CLIP.get(setting, STEPS_PER_CLIP["s4"]), FRAME_SIZE, crop_size  # unknown: as S4
    spec = {
        "video": ((n,), "str"),
        "label": ((n,), np.dtype("int16")),
        "frames": ((n, t, s, s, 3), np.dtype("uint8")),
        "masks": ((n, t, s, s), np.dtype("uint8")),
        "mask_valid": ((n, t), np.dtype("bool")),
        "crops": ((n, t, c, c, 3), np.dtype("uint8")),
        "crop_valid": ((n, t), np.dtype("bool")),
        "boxes": ((boxes, len(SHARD_BOX_COLUMNS)), np.dtype("float32")),
        "audio_logmel": ((n, t) + MEL_SHAPE, np.dtype("float32")),
    }
    if vggish:
        spec["audio_vggish"] = ((n, t, VGGISH_DIM), np.dtype("float32"))
    for name, (per, dtype) in SETTING_DATASETS.get(setting, {}).items():
        spec[name] = ((n, t) if per == "step" else (n,), dtype)
    return spec


def as_text(v) -> str:
    """An HDF5 string value (bytes or str) as str."""
    return v.decode("utf-8") if isinstance(v, bytes) else str(v)
