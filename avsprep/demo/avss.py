"""A small synthetic AVSBench-semantic release in the exact AVSS layout (docs/reference/avss.md 1).

``metadata.csv`` (the release header ``vid,uid,s_min,s_sec,a_obj,split,label``),
``label2idx.json``, and per clip ``{subset}/{uid}/frames/{i}.jpg`` (non-224
JPEGs), ``labels_rgb/{i}.png`` (palette RGB), ``labels_semantic/{i}.png``
(class indices), ``audio.wav`` (48 kHz stereo PCM-16) and one labelImg XML per
frame next to it (``frames/{i}.xml``). All three subsets: ``v1s`` (5 s, one
sounding object, only ``0.png`` in train), ``v1m`` (5 s, 1-2 sounding) and
``v2`` (10 s, several sounding classes). Every clip shows three objects of
different classes; only the audio (one tone per sounding class) says which
sound. Seeded and byte-deterministic except ``<path>`` in the XMLs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avsprep.common.atomic import write_bytes, write_text
from avsprep.common.clikit import progress
from avsprep.datasets.avss import SUBSETS, AVSSClip, AVSSLayout, parse_a_obj
from avsprep.datasets.avss_classes import AVSS_CLASSES, S4_TO_AVSS, encode_rgb_mask, label2idx_json
from avsprep.datasets.steps import AVSS_REAL_STEPS
from avsprep.demo.render import (
    SIGNATURES, Signature, clip_ids, image_bytes, labelimg_box, labelimg_xml, shape_at, wav_bytes,
)

SAMPLE_RATE = 48000
SIZES = {"v1s": (320, 240), "v1m": (256, 192), "v2": (400, 224)}  # (width, height): never 224x224
SPLIT_WEIGHTS = (("train", 4), ("val", 1), ("test", 1))

# The demo's classes: the S4 demo signatures under their AVSS names (dog, horse, piano, ...).
DEMO_CLASSES = tuple(Signature(S4_TO_AVSS[s.category], s.shape, s.rgb, s.f0, s.rate) for s in SIGNATURES[:6])


@dataclass(frozen=True)
class AVSSClipSpec:
    name: str
    split: str
    subset: str
    vid: str
    start_s: int
    objects: tuple  # ((class k, radius, x0, y0, vx, vy), ...) in frame-relative units
    sounding: tuple  # indices into objects
    seed: tuple

    @property
    def a_obj(self) -> str:
        return "_".join(DEMO_CLASSES[self.objects[j][0]].category for j in self.sounding)

    @property
    def clip(self) -> AVSSClip:
        """The clip as the release's metadata lists it (paths and mask frames come from the layout)."""
        return AVSSClip(self.name, self.split, self.subset, parse_a_obj(self.a_obj))


def plan_avss_demo(clips_per_subset: int = 6, seed: int = 0) -> list[AVSSClipSpec]:
    """``clips_per_subset`` clips in each subset, split 4:1:1 (at least one val and test each)."""
    if clips_per_subset < 3:
        raise ValueError(f"the AVSS demo needs at least 3 clips per subset, got {clips_per_subset}")
    rng = np.random.default_rng([seed, 7])
    ids = clip_ids(rng, 3 * clips_per_subset)
    specs = []
    val = test = max(1, clips_per_subset // 6)
    splits = ["train"] * (clips_per_subset - val - test) + ["val"] * val + ["test"] * test
    for s_i, subset in enumerate(SUBSETS):
        for c_i, split in enumerate(splits):
            vid = ids[s_i * clips_per_subset + c_i]
            start = int(rng.integers(0, 120))
            length = AVSS_REAL_STEPS[subset]
            name = f"{vid}_{start * 1000}_{(start + length) * 1000}" if subset != "v1m" else f"{vid}_{c_i}"
            classes = rng.choice(len(DEMO_CLASSES), 3, replace=False)
            objs = []
            for k, cx in zip(classes, (0.2, 0.5, 0.8)):
                objs.append((int(k), float(rng.uniform(0.12, 0.16)), cx + float(rng.uniform(-0.04, 0.04)),
                             float(rng.uniform(0.35, 0.65)), float(rng.uniform(-0.01, 0.01)),
                             float(rng.uniform(-0.01, 0.01))))
            n_sound = 1 if subset == "v1s" else (int(rng.integers(1, 3)) if subset == "v1m" else 2)
            sounding = tuple(sorted(int(j) for j in rng.choice(3, n_sound, replace=False)))
            specs.append(AVSSClipSpec(name, split, subset, vid, start, tuple(objs), sounding,
                                      (seed, s_i, c_i)))
    return specs


def render_clip(spec: AVSSClipSpec) -> tuple[np.ndarray, np.ndarray, list]:
    """Frames uint8 ``[T,H,W,3]``, class-index masks uint8 ``[T,H,W]`` (sounding objects only), boxes per frame."""
    w, h = SIZES[spec.subset]
    t_steps = spec.clip.frames
    rng = np.random.default_rng([*spec.seed, 1])
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5
    base = rng.uniform(90, 140, 3).astype(np.float32)
    frames = np.empty((t_steps, h, w, 3), np.uint8)
    masks = np.zeros((t_steps, h, w), np.uint8)
    boxes = []
    for t in range(t_steps):
        img = base + rng.normal(0, 6, (h, w, 3)).astype(np.float32)
        frame_boxes = []
        for j, (k, r, x0, y0, vx, vy) in enumerate(spec.objects):
            cls = DEMO_CLASSES[k]
            m = shape_at(cls.shape, xx - (x0 + t * vx) * w, yy - (y0 + t * vy) * h, r * h)
            img[m] = np.asarray(cls.rgb, np.float32) + rng.normal(0, 6, (int(m.sum()), 3)).astype(np.float32)
            if j in spec.sounding:
                masks[t][m] = AVSS_CLASSES.index(cls.category)
                box = labelimg_box(m)
                if box:
                    frame_boxes.append((cls.category, *box, 0))
        frames[t] = np.clip(np.rint(img), 0, 255).astype(np.uint8)
        boxes.append(frame_boxes)
    return frames, masks, boxes


def render_audio(spec: AVSSClipSpec) -> np.ndarray:
    """Stereo int16 ``[samples, 2]`` at 48 kHz: one tone per sounding class, slightly different per channel."""
    rng = np.random.default_rng([*spec.seed, 2])
    n = spec.clip.frames * SAMPLE_RATE
    t = np.arange(n) / SAMPLE_RATE
    wave = np.zeros(n)
    for j in spec.sounding:
        cls = DEMO_CLASSES[spec.objects[j][0]]
        tone = np.sin(2 * np.pi * cls.f0 * rng.uniform(0.98, 1.02) * t + rng.uniform(0, 2 * np.pi))
        if cls.rate:
            tone *= 0.55 + 0.45 * np.cos(2 * np.pi * cls.rate * t)
        wave += tone / len(spec.sounding)
    left = 0.3 * wave + rng.normal(0, 0.004, n)
    right = 0.28 * wave + rng.normal(0, 0.004, n)
    return np.clip(np.rint(np.stack([left, right], 1) * 32767), -32768, 32767).astype(np.int16)


def write_clip(root: Path, spec: AVSSClipSpec) -> None:
    layout, clip = AVSSLayout(root), spec.clip
    frames, masks, boxes = render_clip(spec)
    h, w = masks.shape[1:]
    for t in range(len(frames)):
        jpg = layout.frame_path(clip, t)
        jpg.parent.mkdir(parents=True, exist_ok=True)
        write_bytes(jpg, image_bytes(frames[t], "RGB", "JPEG"))
        write_bytes(jpg.with_suffix(".xml"),
                    labelimg_xml(jpg.parent.name, jpg.name, os.path.abspath(jpg), w, h, 3, boxes[t]))
    for t in layout.mask_frames(clip):
        for p, arr, mode in ((layout.mask_path(clip, t), encode_rgb_mask(masks[t]), "RGB"),
                             (layout.semantic_mask_path(clip, t), masks[t], "L")):
            p.parent.mkdir(parents=True, exist_ok=True)
            write_bytes(p, image_bytes(np.ascontiguousarray(arr), mode))
    write_bytes(layout.wav_path(clip), wav_bytes(render_audio(spec), SAMPLE_RATE))


def metadata_csv(specs: list[AVSSClipSpec]) -> str:
    rows = ["vid,uid,s_min,s_sec,a_obj,split,label"]
    for s in specs:
        s_min, s_sec = (0, 0) if s.subset == "v1m" else divmod(s.start_s, 60)
        vid = s.name if s.subset == "v1m" else s.vid
        rows.append(f"{vid},{s.name},{s_min},{s_sec},{s.a_obj},{s.split},{s.subset}")
    return "\n".join(rows) + "\n"


def write_avss_demo(out, clips: int = 6, seed: int = 0, quiet: bool = False) -> dict:
    """Write the release at ``out`` (the folder of ``metadata.csv``); ``clips`` per subset."""
    root = Path(out)
    specs = plan_avss_demo(clips, seed)
    root.mkdir(parents=True, exist_ok=True)
    for spec in progress(specs, quiet=quiet, desc="demo", unit="clip"):
        write_clip(root, spec)
    write_text(root / "metadata.csv", metadata_csv(specs))
    write_text(root / "label2idx.json", label2idx_json())
    counts = {sub: {sp: sum(1 for s in specs if s.subset == sub and s.split == sp) for sp in ("train", "val", "test")}
              for sub in SUBSETS}
    names = [c.category for c in DEMO_CLASSES]
    text = (f"Wrote a synthetic AVSBench-semantic release at {root}: {clips} clips in each of "
            f"{', '.join(SUBSETS)} ({len(specs)} in all), classes {', '.join(names)}; three objects per clip, "
            "only the audio says which sound; palette masks, 48 kHz stereo wavs, one labelImg XML per frame. "
            f"Next: avsprep import --root {root} -o boxes.csv")
    return {"text": text, "root": str(root), "clips": counts, "classes": names, "seed": seed}
