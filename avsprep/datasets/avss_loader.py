"""What the official AVSS loader makes of one clip (docs/reference/avss.md 1.4, 2), as arrays.

Geometry (``CROP_IMG_AND_MASK``, 224): **train** resizes the short edge to 224
(long edge ``int(long * 224 / short)``; bilinear frames, nearest masks) and cuts
a centre crop at ``round((L - 224) / 2)``; **val/test** resize to 224x224. Boxes
go through the same map; a box crop is cut from the full-resolution frame.
Padding: ``v1`` clips (5 steps) are padded to 10 with zero images, background
masks and flags 0; audio gets 5 zero log-mel examples after the real ones.
Pure functions on numpy arrays and PIL images; no file I/O here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from avsprep.common.errors import DataError
from avsprep.datasets.steps import AVSS_REAL_STEPS, STEPS_PER_CLIP

SIZE = 224
MAX_WAV_SECONDS = 10.575  # 11 VGGish examples from here on: the official copy into [10,...] fails


@dataclass(frozen=True)
class Geometry:
    """Resize to ``(rw, rh)`` then crop ``(x0, y0, x0 + out, y0 + out)``; maps boxes the same way."""

    width: int  # source frame size
    height: int
    rw: int  # resized size
    rh: int
    x0: int  # crop offset in the resized image
    y0: int
    out: int = SIZE

    def box(self, xmin: float, ymin: float, xmax: float, ymax: float) -> tuple[float, float, float, float]:
        """A pixel-edge box on the source frame -> on the output, clipped to it (may become empty)."""
        sx, sy = self.rw / self.width, self.rh / self.height
        bx = np.clip([xmin * sx - self.x0, xmax * sx - self.x0], 0, self.out)
        by = np.clip([ymin * sy - self.y0, ymax * sy - self.y0], 0, self.out)
        return float(bx[0]), float(by[0]), float(bx[1]), float(by[1])


def geometry(width: int, height: int, split: str, size: int = SIZE) -> Geometry:
    """The official per-split geometry for a ``width x height`` frame."""
    if split != "train":
        return Geometry(width, height, size, size, 0, 0, size)
    if width <= height:  # short edge = width
        rw, rh = size, int(height * size / width)
    else:
        rw, rh = int(width * size / height), size
    x0 = int(round((rw - size) / 2))
    y0 = int(round((rh - size) / 2))
    return Geometry(width, height, rw, rh, x0, y0, size)


def apply_geometry(img, geo: Geometry, nearest: bool):
    """PIL image -> PIL image of ``geo.out`` squared: resize (bilinear / nearest), then crop."""
    if img.size != (geo.width, geo.height):
        raise ValueError(f"image is {img.size[0]}x{img.size[1]}, geometry made for {geo.width}x{geo.height}")
    resample = Image.NEAREST if nearest else Image.BILINEAR
    out = img.resize((geo.rw, geo.rh), resample)
    if (geo.rw, geo.rh) != (geo.out, geo.out):
        out = out.crop((geo.x0, geo.y0, geo.x0 + geo.out, geo.y0 + geo.out))
    return out


def flags(subset: str) -> tuple[np.ndarray, np.ndarray]:
    """(frame-valid, GT) flags ``[10]`` bool, independent of the split (reference table 1.4.7)."""
    real = AVSS_REAL_STEPS[subset]
    vid = np.zeros(STEPS_PER_CLIP["avss"], bool)
    vid[:real] = True
    gt = np.zeros(STEPS_PER_CLIP["avss"], bool)
    gt[: 1 if subset == "v1s" else real] = True
    return vid, gt


def pad_steps(x: np.ndarray, steps: int = STEPS_PER_CLIP["avss"]) -> np.ndarray:
    """Append all-zero steps along axis 0 up to ``steps`` (masks: background; log-mel: zero examples)."""
    x = np.asarray(x)
    if len(x) > steps:
        raise ValueError(f"{len(x)} steps, more than {steps}")
    if len(x) == steps:
        return x
    pad = np.zeros((steps - len(x),) + x.shape[1:], x.dtype)
    return np.concatenate([x, pad], axis=0)


def audio_examples(examples: np.ndarray, name: str = "audio.wav") -> np.ndarray:
    """VGGish examples ``[n,96,64]`` -> ``[10,96,64]`` as the official forward: zeros after n, refuse n > 10."""
    if len(examples) > STEPS_PER_CLIP["avss"]:
        raise DataError(f"{name}: {len(examples)} VGGish examples (audio of {MAX_WAV_SECONDS} s or more); "
                        "the official loader fails on it - trim the wav to 10 s")
    return pad_steps(np.asarray(examples, np.float32))


# What the official loader does to a clip, recorded in the build options and in every AVSS shard.
LOADER_NOTES = {
    "avss_mask_decoding": "labels_rgb palette exact match -> class index, off-palette colours -> 0 (official V2Dataset)",
    "padding": ("v1 clips: 5 real steps + 5 padded (frames zero, to be set to zero after normalisation; masks 0; "
                "log-mel zero; frame_valid 0); v1s GT flag on step 0 only"),
    "geometry": "train: short edge 224 + centre crop; val/test: resize 224x224",
}
