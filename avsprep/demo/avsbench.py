"""The synthetic demo dataset, written in exact AVSBench S4 layout (README, what the demo shows).

Each frame shows two objects of different classes (a colour + a shape each);
only one of them makes the sound, and only the audio (a class-specific
harmonic tone with its own rhythm) says which. The sounding class is the
clip's ``category``; masks and labelImg boxes mark the sounding object only.
A model that ignores the audio cannot beat about half the IoU.

Pure parts (planning, rendering, the labelImg XML bytes, the log-mel pickle
bytes) take and return values; ``write_demo`` is the only function that
touches the disk. Everything is seeded and byte-deterministic for the same
``(clips, seed, classes)``, except ``<path>`` in the XMLs, which is absolute.
"""

from __future__ import annotations

import colorsys
import csv
import io
import multiprocessing as mp
import os
import pickle
import struct
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image

from avsprep.audio import clip_examples
from avsprep.common.atomic import write_bytes, write_text
from avsprep.common.paths import inside, same_file
from avsprep.common.clikit import progress
from avsprep.common.errors import DataError
from avsprep.datasets.avsbench import FRAMES, META_COLUMNS, META_FILES, AVSBenchLayout, read_metadata
from avsprep.demo.render import (
    SHAPES, SIGNATURES, Signature, clip_ids, image_bytes, labelimg_box, labelimg_xml, shape_at, wav_bytes,
)

SIZE = 224              # frame width and height (AVSBench frames are 224x224)
SAMPLE_RATE = 16000     # AVSBench wavs are 16 kHz
SECONDS = 5.0
SPLITS = ("train", "val", "test")
DISTRACTOR_DIR = "distractor_masks"  # --distractor: ROOT/distractor_masks/SPLIT/NAME_K.png (K = 1..5)
DISTRACTOR_SOUNDS = 0.75  # --distractor: share of train/val clips whose big object is the sounding one


MAX_CLASSES = len(SIGNATURES)


@dataclass(frozen=True)
class ObjectTrack:
    """One object across the 5 frames: class index, size, shade, linear motion."""

    cls: int
    radius: float
    shade: float
    x0: float
    y0: float
    vx: float
    vy: float

    def centre(self, k: int) -> tuple[float, float]:
        """Centre in frame ``k`` (0-based)."""
        return self.x0 + k * self.vx, self.y0 + k * self.vy


@dataclass(frozen=True)
class ClipSpec:
    """Everything needed to render one clip; ``objects[0]`` is the sounding one."""

    name: str
    split: str
    category: str
    distractor: str
    objects: tuple            # (sounding ObjectTrack, distractor ObjectTrack)
    seed: tuple               # entropy for the clip's own texture/noise/audio RNG
    sigs: tuple = ()          # (sounding, distractor) Signature; () = SIGNATURES[obj.cls]
    start: int = 0            # the metadata CSV's ``start`` column
    setting: str = "s4"       # "s4" or "ms3" (layout, mask frames, box label)
    big: Optional[ObjectTrack] = None   # --distractor: the big, bright, central object (SIGNATURES[big.cls])
    big_sounds: bool = False             # --distractor: the big object is the sounding one (train/val only)

    def signature(self, j: int) -> Signature:
        """How small object ``j`` (0 = the clip's sounding class without ``--distractor``) looks and sounds."""
        return self.sigs[j] if self.sigs else SIGNATURES[self.objects[j].cls]

    def sounding_signature(self) -> Signature:
        """The look and tone of the object that sounds (its tone is the clip's audio)."""
        return SIGNATURES[self.big.cls] if self.big_sounds else self.signature(0)


# --------------------------------------------------------------------------- planning

def split_counts(clips: int) -> dict[str, int]:
    """4:1:1 train/val/test, with at least one clip in val and test."""
    if clips < 3:
        raise ValueError(f"the demo needs at least 3 clips (one per split), got {clips}")
    val = test = max(1, clips // 6)
    return {"train": clips - val - test, "val": val, "test": test}


def demo_classes(classes: int = 4) -> list[str]:
    """The S4 class strings used by a demo with ``classes`` classes."""
    if not 2 <= classes <= MAX_CLASSES:
        raise ValueError(f"classes must be between 2 and {MAX_CLASSES}, got {classes}")
    return [s.category for s in SIGNATURES[:classes]]


def _tracks(rng: np.random.Generator, cls_a: int, cls_b: int) -> tuple[ObjectTrack, ObjectTrack]:
    """Two objects that never overlap in any frame and move a little."""
    for _ in range(10000):
        objs = []
        for cls in (cls_a, cls_b):
            r = float(rng.uniform(24.0, 36.0))
            lo, hi = 0.85 * r, SIZE - 0.85 * r
            x0, y0 = rng.uniform(lo, hi, 2)
            vx, vy = rng.uniform(-3.0, 3.0, 2)
            x4, y4 = x0 + (FRAMES - 1) * vx, y0 + (FRAMES - 1) * vy
            if not (lo <= x4 <= hi and lo <= y4 <= hi):
                break
            objs.append(ObjectTrack(cls, r, float(rng.uniform(0.85, 1.1)),
                                    float(x0), float(y0), float(vx), float(vy)))
        if len(objs) < 2:
            continue
        a, b = objs
        gap = 1.25 * (a.radius + b.radius) + 4.0   # every shape fits in 1.2 r
        if all(np.hypot(*np.subtract(a.centre(k), b.centre(k))) >= gap for k in range(FRAMES)):
            return a, b
    raise RuntimeError("could not place two non-overlapping objects")  # pragma: no cover


def plan_demo(clips: int = 192, seed: int = 0, classes: int = 4) -> list[ClipSpec]:
    """The clips of a demo dataset, in metadata order (train, val, test).

    Classes are balanced within each split, and so are (sounding, distractor)
    pairs; each split's first clip gets an id starting with ``-`` (real S4
    ids do, e.g. ``-_wznbUu3DY``).
    """
    names = demo_classes(classes)
    counts = split_counts(clips)
    rng = np.random.default_rng(seed)
    ids = clip_ids(rng, clips)
    child_seeds = np.random.SeedSequence(seed).spawn(clips)
    specs: list[ClipSpec] = []
    i = 0
    for split in SPLITS:
        n = counts[split]
        offset = int(rng.integers(0, classes))
        labels = [(offset + j) % classes for j in range(n)]
        rng.shuffle(labels)
        seen = [0] * classes
        for j, cls in enumerate(labels):
            other = (cls + 1 + seen[cls] % (classes - 1)) % classes
            seen[cls] += 1
            name = ids[i]
            if j == 0 and not name.startswith("-"):
                name = "-" + name[1:]
            clip_rng = np.random.default_rng(child_seeds[i])
            specs.append(ClipSpec(name=name, split=split, category=names[cls],
                                  distractor=names[other], objects=_tracks(clip_rng, cls, other),
                                  seed=(seed, i)))
            i += 1
    if len({s.name for s in specs}) != len(specs):  # pragma: no cover - '-' prefix collision
        raise RuntimeError("clip ids collided; choose another seed")
    return specs


def big_track(seed: tuple, cls: int) -> ObjectTrack:
    """The big object of ``--distractor``: class ``cls``, radius 46-56 px (the small objects have
    24-36), brighter (shade 1.1-1.2), centred within 16 px of the middle, still. From its own RNG
    stream, so the rest of the clip is drawn exactly as without it."""
    rng = np.random.default_rng([*seed, 3])
    x0, y0 = SIZE / 2 + rng.uniform(-16, 16, 2)
    return ObjectTrack(cls, float(rng.uniform(46.0, 56.0)), float(rng.uniform(1.1, 1.2)),
                       float(x0), float(y0), 0.0, 0.0)


def with_distractor(specs: list[ClipSpec], classes: int = 4, sounds: float = DISTRACTOR_SOUNDS) -> list[ClipSpec]:
    """Add the big, bright, central object of ``--distractor`` to every clip (the saliency bias
    of real videos, made measurable). Its class is a demo class that is neither of the clip's two
    small objects. In a share ``sounds`` of the train and val clips it is the sounding object
    (the clip's category, mask, box and tone become its own; the two small ones are silent); in
    every test clip it is silent and one small object sounds, so a model that segments the
    salient object instead of listening lands on it (``distractor_masks/``)."""
    if not 0.0 <= sounds <= 1.0:
        raise ValueError(f"the distractor's sounding share must be in [0, 1], got {sounds}")
    if any(s.sigs for s in specs):
        raise ValueError("--distractor is drawn in the synthetic demo only (not with --like)")
    if classes < 3:
        raise ValueError(f"--distractor needs at least 3 classes (two small objects and the big one), got {classes}")
    out = []
    for s in specs:
        rng = np.random.default_rng([*s.seed, 4])
        pool = [c for c in range(classes) if c not in (s.objects[0].cls, s.objects[1].cls)]
        cls = pool[int(rng.integers(0, len(pool)))]
        loud = s.split != "test" and bool(rng.uniform() < sounds)
        spec = replace(s, big=big_track(s.seed, cls), big_sounds=loud)
        out.append(replace(spec, category=SIGNATURES[cls].category) if loud else spec)
    return out


# --------------------------------------------------------------------------- --like a real metadata CSV

def signatures_for(categories: list[str]) -> tuple[Signature, ...]:
    """One distinct look and sound per category, in the given order.

    A category that has a hand-tuned demo signature keeps it; the others get a
    shape, a hue on the golden-angle wheel, a pitch spaced on the mel scale
    (250 Hz to 5.5 kHz, inside VGGish's 125-7500 Hz band) and a pulse rate.
    """
    known = {sig.category: sig for sig in SIGNATURES}
    n = len(categories)
    mel = np.linspace(2595 * np.log10(1 + 250 / 700), 2595 * np.log10(1 + 5500 / 700), max(n, 2))
    pitches = 700 * (10 ** (mel / 2595) - 1)
    out = []
    for i, cat in enumerate(categories):
        if cat in known:
            out.append(known[cat])
            continue
        r, g, b = colorsys.hsv_to_rgb((i * 0.618034) % 1.0, 0.8, 0.9)
        out.append(Signature(cat, SHAPES[i % len(SHAPES)], (int(r * 255), int(g * 255), int(b * 255)),
                             float(round(pitches[i], 1)), float((i * 3) % 9)))
    return tuple(out)


def read_like(path) -> tuple[str, list[tuple[str, int, str, str]]]:
    """A real AVSBench metadata CSV -> (setting, [(name, start, category, split)] in file order).

    MS3 rows (``video_id,split``) get category ``""`` and start 0.
    """
    path = Path(path)
    setting = "ms3" if path.name.startswith("ms3") else "s4"  # the file names of META_FILES
    df = read_metadata(path, setting)
    if setting == "s4":
        rows = [(n, int(st or 0), c, sp) for n, st, c, sp in
                zip(df["name"], df["start"], df["category"], df["split"])]
    else:
        rows = [(v, 0, "", sp) for v, sp in zip(df["video_id"], df["split"])]
    if not rows:
        raise DataError(f"{path}: no clips listed; pass s4_meta_data.csv or ms3_meta_data.csv as shipped")
    return setting, rows


def plan_like(rows: list[tuple[str, int, str, str]], seed: int = 0, setting: str = "s4") -> list[ClipSpec]:
    """Demo clips with the names, starts, categories and splits of a real metadata CSV, in its order.

    S4: the sounding object is the clip's category, the distractor another of
    the CSV's categories (cycled, so pairs stay balanced). MS3 has no category:
    each clip gets a sounding class and a distractor from the 8 demo
    signatures, and its boxes are labelled ``sounding``.
    """
    if setting == "s4":
        cats = sorted({r[2] for r in rows})
        if len(cats) < 2:
            raise DataError("--like: the metadata CSV needs at least 2 categories; "
                            "pass s4_meta_data.csv or ms3_meta_data.csv as shipped")
        sigs = signatures_for(cats)
    else:
        cats = [s.category for s in SIGNATURES]
        sigs = SIGNATURES
    k = len(cats)
    cls_of = {c: i for i, c in enumerate(cats)}
    child_seeds = np.random.SeedSequence(seed).spawn(len(rows))
    seen = [0] * k
    specs = []
    for i, (name, start, cat, split) in enumerate(rows):
        clip_rng = np.random.default_rng(child_seeds[i])
        cls = cls_of[cat] if setting == "s4" else int(clip_rng.integers(0, k))
        other = (cls + 1 + seen[cls] % (k - 1)) % k
        seen[cls] += 1
        specs.append(ClipSpec(name=name, split=split, category=cat or "sounding",
                              distractor=cats[other], objects=_tracks(clip_rng, cls, other),
                              seed=(seed, i), sigs=(sigs[cls], sigs[other]), start=int(start),
                              setting=setting))
    return specs


# --------------------------------------------------------------------------- rendering

_GRID_Y, _GRID_X = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) + 0.5  # pixel centres


def shape_mask(shape: str, cx: float, cy: float, r: float) -> np.ndarray:
    """Bool [SIZE, SIZE]: pixels whose centre lies inside the shape (fits in 1.2 r)."""
    return shape_at(shape, _GRID_X - cx, _GRID_Y - cy, r)


def _background(rng: np.random.Generator) -> np.ndarray:
    """A low-saturation smooth texture, float32 [SIZE, SIZE, 3]."""
    base = rng.uniform(80, 150) + rng.uniform(-12, 12, 3)
    grain = rng.normal(0, 25, (7, 7, 1)) + rng.normal(0, 6, (7, 7, 3))   # mostly luminance
    low = np.clip(base + grain, 0, 255).astype(np.uint8)
    tex = Image.fromarray(low, "RGB").resize((SIZE, SIZE), Image.BICUBIC)
    return np.asarray(tex, dtype=np.float32)


def render_frames(spec: ClipSpec) -> tuple[np.ndarray, np.ndarray]:
    """Frames uint8 [5, 224, 224, 3] and object masks bool [5, 2, 224, 224].

    Mask 0 is the sounding object's visible pixels (the GT mask), mask 1 the other small object.
    """
    rng = np.random.default_rng([*spec.seed, 1])
    background = _background(rng)
    frames = np.empty((FRAMES, SIZE, SIZE, 3), np.uint8)
    masks = np.zeros((FRAMES, 2, SIZE, SIZE), bool)
    for k in range(FRAMES):
        img = background + rng.normal(0, 6, background.shape).astype(np.float32)
        img += np.float32(rng.uniform(-3, 3))   # slight exposure drift
        if spec.big is not None:  # beneath the two small objects; flat, so the RNG stream is unchanged
            sig = SIGNATURES[spec.big.cls]
            img[big_mask(spec, k)] = np.minimum(np.asarray(sig.rgb, np.float32) * spec.big.shade, 255)
        for j, obj in enumerate(spec.objects):
            sig = spec.signature(j)
            m = shape_mask(sig.shape, *obj.centre(k), obj.radius)
            colour = np.asarray(sig.rgb, np.float32) * obj.shade
            img[m] = colour + rng.normal(0, 6, (int(m.sum()), 3)).astype(np.float32)
            masks[k, j] = m
        if spec.big_sounds:
            masks[k, 0] = distractor_mask(spec, k)
        frames[k] = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return frames, masks


def big_mask(spec: ClipSpec, k: int) -> np.ndarray:
    """Bool [SIZE, SIZE]: the big object's whole shape in frame ``k`` (some of it may be covered
    by the two small objects, drawn over it)."""
    obj = spec.big
    return shape_mask(SIGNATURES[obj.cls].shape, *obj.centre(k), obj.radius)


def distractor_mask(spec: ClipSpec, k: int) -> np.ndarray:
    """Bool [SIZE, SIZE]: the big object's visible pixels in frame ``k`` (the GT mask when it
    sounds; otherwise what a model that falls for it segments, written as ``distractor_masks/``
    for the distractor rate)."""
    visible = big_mask(spec, k)
    for j, obj in enumerate(spec.objects):
        visible &= ~shape_mask(spec.signature(j).shape, *obj.centre(k), obj.radius)
    return visible


def render_audio(spec: ClipSpec) -> np.ndarray:
    """The clip's 5-s mono track as int16 [80000]: the sounding class's tone + faint noise."""
    rng = np.random.default_rng([*spec.seed, 2])
    sig = spec.sounding_signature()
    t = np.arange(int(SECONDS * SAMPLE_RATE)) / SAMPLE_RATE
    f0 = sig.f0 * rng.uniform(0.97, 1.03)
    wave = np.zeros_like(t)
    norm = 0.0
    for p, amp in ((1, 1.0), (2, 0.5), (3, 0.25)):
        if p * f0 < 7000:
            wave += amp * np.sin(2 * np.pi * p * f0 * t + rng.uniform(0, 2 * np.pi))
            norm += amp
    wave /= norm
    if sig.rate:
        wave *= 0.55 + 0.45 * np.cos(2 * np.pi * sig.rate * t + rng.uniform(0, 2 * np.pi))
    wave = rng.uniform(0.2, 0.35) * wave + rng.normal(0, rng.uniform(0.003, 0.01), t.shape)
    return np.clip(np.rint(wave * 32767), -32768, 32767).astype(np.int16)


# --------------------------------------------------------------------------- labelImg

# --------------------------------------------------------------------------- audio files

def logmel_pickle_bytes(examples: np.ndarray) -> bytes:
    """AVSBench's log-mel pickle: ``pickle.dump`` of a float32 tensor [5,1,96,64], requires_grad=True.

    Torch pickles a storage through its legacy serializer, keyed by the
    storage's memory address; that key is replaced by ``"0"`` so the bytes
    are reproducible (the loader only matches the key with itself).
    """
    import torch  # lazy: the demo module stays torch-free until it writes a pickle

    data = np.ascontiguousarray(examples, dtype=np.float32).reshape(FRAMES, 1, 96, 64)
    tensor = torch.tensor(data, requires_grad=True)

    class _Pickler(pickle.Pickler):
        def reducer_override(self, obj):
            if isinstance(obj, torch.storage.TypedStorage):
                fn, (blob,) = obj.__reduce__()
                key = str(obj._untyped_storage._cdata).encode()
                old = b"X" + struct.pack("<I", len(key)) + key
                if blob.count(old) != 2:  # pragma: no cover - torch changed its legacy format
                    raise RuntimeError("unexpected torch storage pickle layout")
                return fn, (blob.replace(old, b"X" + struct.pack("<I", 1) + b"0"),)
            return NotImplemented

    buf = io.BytesIO()
    _Pickler(buf, protocol=4).dump(tensor)
    return buf.getvalue()


# --------------------------------------------------------------------------- writing

def clip_files(spec: ClipSpec) -> dict[str, object]:
    """Relative paths (under the AVSBench root) of one clip's files, from ``avsprep.datasets.avsbench``."""
    lay = AVSBenchLayout(Path("."), spec.setting)
    clip = lay.video_clip(spec.name, spec.split, spec.category)
    return {
        "frames_dir": lay.frame_path(clip, 1).parent.as_posix(),
        "masks_dir": lay.mask_path(clip, 1).parent.as_posix(),
        "wav": lay.wav_path(clip).as_posix(),
        "pkl": lay.logmel_path(clip).as_posix(),
        "frame_stems": [lay.frame_stem(clip, k) for k in range(1, FRAMES + 1)],
        "mask_names": [lay.mask_path(clip, k).name for k in range(1, FRAMES + 1)],
        "mask_frames": lay.mask_frames(clip),
    }


def _write_clip(root: Path, spec: ClipSpec) -> None:
    files = clip_files(spec)
    for key in ("frames_dir", "masks_dir", "wav", "pkl"):  # names come from a --like CSV: stay under OUT
        inside(root, root / files[key], f"clip {spec.name!r}'s files")
    frames_dir = root / files["frames_dir"]
    masks_dir = root / files["masks_dir"]
    frames_dir.mkdir(parents=True, exist_ok=True)
    masks_dir.mkdir(parents=True, exist_ok=True)
    frames, masks = render_frames(spec)
    mask_frames = files["mask_frames"]
    for k in range(1, FRAMES + 1):
        stem = files["frame_stems"][k - 1]
        png = frames_dir / f"{stem}.png"
        write_bytes(png, image_bytes(frames[k - 1], "RGB"))
        box = labelimg_box(masks[k - 1, 0])
        objects = [(spec.category, *box, 0)] if box else []
        write_bytes(frames_dir / f"{stem}.xml",
                    labelimg_xml(frames_dir.name, png.name, os.path.abspath(png), SIZE, SIZE, 3, objects))
        if k in mask_frames:
            write_bytes(masks_dir / files["mask_names"][k - 1],
                        image_bytes(masks[k - 1, 0].astype(np.uint8) * 255, "L"))
    if spec.big is not None and not spec.big_sounds:
        ddir = root / DISTRACTOR_DIR / spec.split
        ddir.mkdir(parents=True, exist_ok=True)
        for k in range(1, FRAMES + 1):
            mask = distractor_mask(spec, k - 1).astype(np.uint8) * 255
            write_bytes(ddir / f"{spec.name}_{k}.png", image_bytes(mask, "L"))
    pcm = render_audio(spec)
    for key in ("wav", "pkl"):
        (root / files[key]).parent.mkdir(parents=True, exist_ok=True)
    write_bytes(root / files["wav"], wav_bytes(pcm, SAMPLE_RATE))
    examples = clip_examples(pcm.astype(np.float64) / 32768.0, SAMPLE_RATE, frames=FRAMES)
    write_bytes(root / files["pkl"], logmel_pickle_bytes(examples))


def _write_clips(args) -> int:
    """Worker entry: write a batch of clips; returns how many."""
    root, specs = args
    for spec in specs:
        _write_clip(Path(root), spec)
    return len(specs)


def metadata_csv(specs: list[ClipSpec]) -> str:
    """The metadata CSV text, in ``specs`` order, with its setting's columns (S4
    ``name,start,category,split``, MS3 ``video_id,split``: ``datasets.avsbench.META_COLUMNS``)."""
    columns = META_COLUMNS[specs[0].setting if specs else "s4"]
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\n")  # quotes a name with a comma, quote or line break
    out.writerow(columns)
    for s in specs:
        fields = {"name": s.name, "video_id": s.name, "start": s.start, "category": s.category, "split": s.split}
        out.writerow([str(fields[c]) for c in columns])
    return buf.getvalue()


def _batches(specs: list, size: int) -> list[list]:
    return [specs[i:i + size] for i in range(0, len(specs), size)]


def write_avsbench_demo(out, clips: int = 192, seed: int = 0, quiet: bool = False,
               classes: int = 4, workers: int = 1, like=None, distractor: bool = False,
               distractor_sounds: float = DISTRACTOR_SOUNDS) -> dict:
    """Write the demo dataset with OUT as the AVSBench root (the folder of the metadata CSV).

    ``like``: a real AVSBench metadata CSV (``s4_meta_data.csv`` or
    ``ms3_meta_data.csv``); the demo then has its clip names, categories,
    splits and size, and ``clips``/``classes`` are ignored. ``workers``
    processes write clips in parallel; every clip's bytes depend on its own
    seed only, so the output is byte-identical for any ``workers``.
    Existing files of the same names are replaced; the caller decides whether
    a non-empty OUT is acceptable. ``distractor``: every frame also shows a big, bright,
    central object of a third demo class (``with_distractor``), the sounding one in a share
    ``distractor_sounds`` of the train/val clips and silent in every test clip; where silent,
    its visible pixels go to ``distractor_masks/``. Without it the output is unchanged, byte for byte.
    """
    root = Path(out)
    if like is not None:
        setting, rows = read_like(like)
        specs = plan_like(rows, seed, setting)
        if same_file(like, root / META_FILES[setting]):
            raise DataError(f"--like {like} is the metadata CSV the demo would write at {root}; "
                            "choose another OUT (the input is never overwritten)")
    else:
        setting = "s4"
        specs = plan_demo(clips, seed, classes)
    if distractor:
        specs = with_distractor(specs, classes, distractor_sounds)
    root.mkdir(parents=True, exist_ok=True)
    if workers <= 1:
        for spec in progress(specs, quiet=quiet, desc="demo", unit="clip"):
            _write_clip(root, spec)
    else:
        bar = progress(total=len(specs), quiet=quiet, desc="demo", unit="clip")
        jobs = [(str(root), b) for b in _batches(specs, 16)]
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
            for n in pool.map(_write_clips, jobs):
                bar.update(n)
        bar.close()
    write_text(root / META_FILES[setting], metadata_csv(specs))
    counts = {sp: sum(s.split == sp for s in specs) for sp in SPLITS}
    names = sorted({s.category for s in specs}) if like is not None else demo_classes(classes)
    what = f"like {Path(like).name}" if like is not None else "synthetic"
    text = (f"Wrote a {what} AVSBench {setting.upper()} dataset at {root}: {len(specs)} clips "
            f"(train {counts['train']}, val {counts['val']}, test {counts['test']}), "
            f"{len(names)} classes ({', '.join(names[:8])}{', ...' if len(names) > 8 else ''}); "
            f"each frame shows two objects, only the audio says which one sounds; "
            + (f"plus a big, bright, central object that sounds in {sum(s.big_sounds for s in specs)} "
               f"train/val clips and is a silent distractor in the others and in every test clip "
               f"(its masks in distractor_masks/); " if distractor else "")
            + f"one labelImg XML per frame boxes it. Next: avsprep import --root {root} -o boxes.csv")
    return {"text": text, "root": str(root), "clips": counts, "classes": names, "seed": seed,
            "setting": setting}
