"""Checks of an AVSS release: metadata anomalies, files per clip, mask colours, audio length.

Pure functions take parsed values and return findings; :func:`check_clip`
reads the files of one clip, :func:`check_release` runs it all (the AVSS
layout's ``extra_checks``). Frame sizes come from ``validate``'s one read of
every frame. The anomalies are those of docs/reference/avss.md 3.3
(``h orse``, ``background``, ``off-the-screen``) plus anything that would make
the official loader fail or silently differ (extra entries in ``frames/``,
mask colours outside the palette, wavs of 10.575 s or more).
"""

from __future__ import annotations

import os
from typing import Iterable, Optional

import numpy as np
import soundfile

from avsprep.audio.frontend import expected_example_count
from avsprep.common.clikit import progress
from avsprep.common.errors import DataError
from avsprep.common.findings import Finding
from avsprep.common.images import open_guarded
from avsprep.datasets.avss import AVSSClip, AVSSLayout
from avsprep.datasets.avss_classes import (
    AVSS_CLASSES,
    TYPOS,
    clip_classes,
    decode_rgb_mask,
)
from avsprep.datasets.avss_loader import MAX_WAV_SECONDS

ANNOTATION_SUFFIXES = (".xml", ".txt", ".json")


def check_metadata(clips: Iterable[AVSSClip], meta_name: str = "metadata.csv") -> list[Finding]:
    """The a_obj anomalies of docs/reference/avss.md 3.3, one finding per row."""
    out = []
    for c in clips:
        for tok in c.a_obj:
            if tok in TYPOS:
                out.append(Finding.of("a-obj-typo", f"a_obj token {tok!r} read as {TYPOS[tok]!r}", meta_name, c.name))
            elif tok == "background":
                out.append(Finding.of("a-obj-background", "a_obj is 'background': no sounding class is named; "
                                      "boxes on this clip cannot be checked against a_obj",
                                      meta_name, c.name))
            elif tok == "off-the-screen":
                out.append(Finding.of("a-obj-off-screen", "sound source off-screen; expect empty masks and no boxes",
                                      meta_name, c.name))
            elif tok not in AVSS_CLASSES:
                out.append(Finding.of("a-obj-unknown", f"a_obj token {tok!r} is not an AVSS class; fix the row",
                                      meta_name, c.name))
    return out


def check_frame_listing(names: list[str], n: int, rel: str, clip: str) -> list[Finding]:
    """Entries of ``frames/`` against the expected ``0.jpg .. n-1.jpg`` (pure)."""
    out = []
    expected = {f"{i}.jpg" for i in range(n)}
    present = set(names)
    for i in range(n):
        if f"{i}.jpg" not in present:
            out.append(Finding.of("frame-file-missing", f"frames/{i}.jpg missing (the clip needs {n} frames)",
                                  f"{rel}/{i}.jpg", clip, i))
    annotations = []
    for name in sorted(present - expected):
        stem, dot, ext = name.partition(".")
        if name.lower().endswith(".jpg") and stem.isdigit():
            out.append(Finding.of("frame-extra", f"frame {name} beyond the clip's {n}; the official loader would "
                                  "read it as a time step", f"{rel}/{name}", clip, int(stem)))
        elif name.lower().endswith(ANNOTATION_SUFFIXES):
            annotations.append(name)
        else:
            out.append(Finding.of("frames-extra-file", f"{name!r} in frames/ breaks the official loader's frame count; "
                                  "delete it", f"{rel}/{name}", clip))
    if annotations:  # one finding per clip: labelImg puts its XMLs here by design
        out.append(Finding.of("frames-annotation-file", f"{len(annotations)} annotation file(s) ({annotations[0]}...) "
                              "that the official loader would count as frames", rel, clip))
    return out


def off_palette_summary(unknown: np.ndarray, rgb: np.ndarray) -> Optional[str]:
    """'N pixels in x a..b, y c..d, colours (r,g,b) ...' or None when every pixel is a palette colour."""
    count = int(unknown.sum())
    if not count:
        return None
    ys, xs = np.nonzero(unknown)
    colours = np.unique(rgb[unknown].reshape(-1, 3), axis=0)
    shown = ", ".join(str(tuple(int(v) for v in c)) for c in colours[:3])
    more = f" and {len(colours) - 3} more" if len(colours) > 3 else ""
    return (f"{count} pixel(s) in x {xs.min()}..{xs.max()}, y {ys.min()}..{ys.max()} have colour(s) {shown}{more} "
            "outside the palette; read as background, as the official loader does - repaint them")


def check_mask(rgb: np.ndarray, frame_size: Optional[tuple[int, int]], allowed: list[int],
               rel: str, clip: str, i: int) -> list[Finding]:
    """One decoded ``labels_rgb`` array: size against the frame, off-palette pixels, classes vs a_obj."""
    out = []
    h, w = rgb.shape[:2]
    if frame_size is not None and frame_size != (w, h):
        out.append(Finding.of("mask-size-mismatch", f"mask is {w}x{h}, frame {frame_size[0]}x{frame_size[1]}",
                              rel, clip, i))
    index, unknown = decode_rgb_mask(rgb)
    msg = off_palette_summary(unknown, rgb)
    if msg:
        out.append(Finding.of("mask-off-palette", msg, rel, clip, i))
    if allowed:
        extra = sorted(set(np.unique(index).tolist()) - set(allowed) - {0})
        if extra:
            out.append(Finding.of("mask-class-not-in-a-obj", "mask shows " + ", ".join(AVSS_CLASSES[c] for c in extra) +
                                  " not listed in a_obj", rel, clip, i))
    return out


def check_audio_length(seconds: float, subset_frames: int, rel: str, clip: str) -> list[Finding]:
    n = expected_example_count(int(seconds * 16000))
    if seconds >= MAX_WAV_SECONDS or n > 10:
        return [Finding.of("audio-too-long", f"{seconds:.3f} s gives {n} VGGish examples; trim the wav to 10 s",
                           rel, clip)]
    if n < subset_frames:
        return [Finding.of("audio-short", f"{seconds:.3f} s gives {n} VGGish example(s) for {subset_frames} frames; "
                           "the rest are zero log-mel examples", rel, clip)]
    return []


def check_release(layout: AVSSLayout, clips: list[AVSSClip], sizes: dict, errors: dict,
                  quiet: bool = True) -> list[Finding]:
    """The metadata anomalies and every clip's files; ``sizes`` / ``errors`` of every frame of ``clips``
    (:func:`avsprep.datasets.frames.read_frame_sizes`)."""
    findings = check_metadata(clips, layout.meta_path.name)
    for clip in progress(clips, quiet=quiet, desc="validate", unit="clip"):
        findings += check_clip(layout, clip, sizes, errors)
    return findings


def check_clip(layout: AVSSLayout, clip: AVSSClip, sizes: dict, errors: dict) -> list[Finding]:
    """Every file of one clip: frames listing, frame/mask readability, mask colours, audio length.
    Frames are not opened here: ``sizes`` / ``errors`` hold what reading them gave."""
    out: list[Finding] = []
    base = layout.clip_dir(clip)
    rel = base.relative_to(layout.root).as_posix()
    if not base.is_dir():
        return [Finding.of("clip-dir-missing", f"{rel}/ is missing; the release is incomplete", rel, clip.name)]
    fdir = base / "frames"
    names = sorted(os.listdir(fdir)) if fdir.is_dir() else []
    out += check_frame_listing(names, clip.frames, f"{rel}/frames", clip.name)
    for i in layout.frame_indices(clip):
        exc = errors.get((clip.name, i))
        if exc is not None and layout.frame_path(clip, i).is_file():
            out.append(Finding.of("frame-unreadable", f"cannot open ({exc}); re-extract it", f"{rel}/frames/{i}.jpg",
                                  clip.name, i))
    allowed = clip_classes(clip.a_obj)
    for i in layout.mask_frames(clip):
        p = layout.mask_path(clip, i)
        mrel = f"{rel}/labels_rgb/{i}.png"
        if not p.is_file():
            out.append(Finding.of("mask-missing", f"labels_rgb/{i}.png missing; the official loader needs "
                                  f"{len(layout.mask_frames(clip))} mask(s) here", mrel, clip.name, i))
            continue
        try:  # the guarded opener's size check, with the finding's own wording for a corrupt file
            with open_guarded(p) as im:
                rgb = np.asarray(im.convert("RGB"))
        except OSError as exc:
            out.append(Finding.of("mask-unreadable", f"cannot open ({exc})", mrel, clip.name, i))
            continue
        except DataError as exc:
            out.append(Finding.of("mask-unreadable", str(exc), mrel, clip.name, i))
            continue
        out += check_mask(rgb, sizes.get((clip.name, i)), allowed, mrel, clip.name, i)
    wav = layout.wav_path(clip)
    wrel = f"{rel}/audio.wav"
    if not wav.is_file():
        out.append(Finding.of("audio-missing", "audio.wav missing; extract the clip's audio", wrel, clip.name))
    else:
        try:
            info = soundfile.info(str(wav))
            out += check_audio_length(info.frames / info.samplerate, clip.frames, wrel, clip.name)
        except RuntimeError as exc:
            out.append(Finding.of("audio-unreadable", f"cannot read ({exc})", wrel, clip.name))
    return out
