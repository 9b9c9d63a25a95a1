"""Which decoded frames the official scripts keep, and one-pass decoding of a video with PyAV.

Official rule (preprocess_s4.py / preprocess_ms3.py): every frame is decoded (imageio's ffmpeg
reader, RGB); with ``r = int(round(fps))`` (fps as ffmpeg prints it: 2 decimals), the frame kept
for second ``l = 0..t-1`` is decoded index ``int(l * r + 15/16 * r)`` (the 16th of 16 samples per
second), clamped to the last decoded frame; it is resized with ``cv2.resize(im, (224, 224))``
(INTER_LINEAR, aspect ratio not kept) and saved as PNG.

Here only the chosen frames are converted to RGB and resized; the rest are decoded and dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Optional

# av and cv2 at the top: only ``avsprep extract`` (imported inside the command, never by
# ``import avsprep.cli``) and the tests load this module, and every use decodes or resizes.
import av
import cv2
import numpy as np

SIZE = 224
SAMPLES_PER_SECOND = 16  # the official video_frame_sample(..., sample_num=16); index 15 is kept


def printed_fps(rate: Optional[Fraction | float]) -> float:
    """The frame rate as ffmpeg prints it (``%3.2f``, or an integer), which imageio parses."""
    if not rate:
        return 0.0
    v = round(float(rate) * 100)
    return float(v // 100) if v % 100 == 0 else round(v / 100.0, 2)


def official_indices(fps: float, seconds: int) -> list[int]:
    """Decoded frame index kept for each second (before clamping to the last frame)."""
    r = int(round(fps))
    return [int(l * r + (15 * 1.0 / SAMPLES_PER_SECOND) * r) for l in range(seconds)]


def clamp(indices: list[int], count: int) -> list[int]:
    return [min(i, count - 1) for i in indices]


def resize(rgb: np.ndarray, size: int = SIZE) -> np.ndarray:
    """The official resize: OpenCV INTER_LINEAR to 224x224 (``size``) on the RGB frame."""
    return cv2.resize(rgb, (size, size), interpolation=cv2.INTER_LINEAR)


def to_rgb(frame) -> np.ndarray:
    """PyAV frame -> RGB uint8 as ffmpeg's CLI converts it (swscale bicubic), display rotation
    applied like ffmpeg's autorotate."""
    rgb = frame.to_ndarray(format="rgb24", interpolation="BICUBIC")
    rotation = int(round(getattr(frame, "rotation", 0) or 0)) % 360
    if rotation:
        # PyAV reports the display matrix angle counter-clockwise; ffmpeg rotates to undo it.
        rgb = np.ascontiguousarray(np.rot90(rgb, k=rotation // 90))
    return rgb


def is_variable_rate(pts: list) -> bool:
    """Frame durations (pts steps, presentation order) whose longest is over 1.5x the shortest
    (timestamp rounding, e.g. 33/34 ms at 29.97 fps, stays under it)."""
    if len(pts) < 3:
        return False
    steps = np.diff(np.sort(np.asarray(pts, dtype=np.int64)))
    return bool(steps.min() <= 0 or steps.max() > 1.5 * steps.min())


@dataclass
class Decoded:
    """One pass over a video: the chosen frames (RGB, source size), the audio as 44.1 kHz
    stereo int16 (or at the source rate with ``keep_rate``), and the facts the findings need."""

    fps: float = 0.0
    frame_count: int = 0
    indices: list = field(default_factory=list)      # clamped decoded indices, one per second
    frames: list = field(default_factory=list)       # RGB arrays in second order
    audio: Optional[np.ndarray] = None              # int16 [n, 2]
    audio_rate: int = 0
    has_audio: bool = False
    duration_us: int = 0
    variable_rate: bool = False  # frame durations differ: ffmpeg's CLI would make the rate constant


def decode(path, seconds: int, audio_rate: Optional[int] = 44100, starts=(0,)) -> Decoded:
    """Decode ``path`` once (PyAV): keep the official frames for ``seconds`` seconds and the
    audio resampled to ``audio_rate`` stereo int16 (the source rate when None).

    ``starts`` (``--windows``): the clip starting ``s`` seconds in keeps decoded indices
    ``s * r + official_indices`` (as if the video had been cut there on a frame boundary);
    ``frames``/``indices`` then hold every window's frames one after the other.

    Raises ``av.error.FFmpegError`` / ``ValueError`` for files that cannot be decoded.
    """
    out = Decoded()
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise ValueError("no video stream")
        vstream = container.streams.video[0]
        vstream.thread_type = "AUTO"
        astream = container.streams.audio[0] if container.streams.audio else None
        out.has_audio = astream is not None
        rate = vstream.average_rate or vstream.guessed_rate
        out.fps = printed_fps(rate)
        if out.fps <= 0:
            raise ValueError("the video stream has no frame rate")
        r = int(round(out.fps))
        wanted = [s * r + i for s in starts for i in official_indices(out.fps, seconds)]
        want_set = set(wanted)
        chosen: dict[int, np.ndarray] = {}
        last = None
        count = 0
        resampler = None
        chunks: list[np.ndarray] = []
        pts: list[int] = []
        streams = [vstream] + ([astream] if astream is not None else [])
        for packet in container.demux(*streams):
            if packet.stream.type == "video":
                for frame in packet.decode():
                    if count in want_set:
                        chosen[count] = to_rgb(frame)
                    last = frame
                    if frame.pts is not None:
                        pts.append(frame.pts)
                    count += 1
            else:
                for frame in packet.decode():
                    if resampler is None:
                        out.audio_rate = audio_rate or frame.sample_rate
                        resampler = av.AudioResampler(format="s16", layout="stereo", rate=out.audio_rate)
                    for g in resampler.resample(frame):
                        chunks.append(g.to_ndarray().reshape(-1, 2))
        if resampler is not None:
            for g in resampler.resample(None):
                chunks.append(g.to_ndarray().reshape(-1, 2))
        if count == 0:
            raise ValueError("no video frame could be decoded")
        out.frame_count = count
        out.variable_rate = is_variable_rate(pts)
        out.indices = clamp(wanted, count)
        last_rgb = None
        for i in out.indices:
            if i not in chosen:
                if last_rgb is None:
                    last_rgb = to_rgb(last)
                chosen[i] = last_rgb
            out.frames.append(chosen[i])
        if chunks:
            out.audio = np.concatenate(chunks).astype(np.int16, copy=False)
            if astream.duration:  # ffmpeg's CLI stops at the stream's (edit list) end, dropping the
                # codec's end padding that the decoder still returns (measured: mp4/mov AAC)
                end = math.ceil(float(astream.duration * astream.time_base) * out.audio_rate - 1e-6)
                out.audio = out.audio[:max(end, 0)]
        elif astream is not None:
            out.audio = np.zeros((0, 2), dtype=np.int16)
        dur = container.duration
        if dur is None:
            dur = int(count / out.fps * 1_000_000)
        out.duration_us = int(dur)
    return out
