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


class VideoStream:
    """One video opened with PyAV and decoded as a stream: ``for kind, item in stream`` yields
    ``("video", frame)`` (PyAV frames, decode order = presentation order for the codecs ffmpeg
    outputs) and ``("audio", int16 [n, 2])`` chunks resampled to ``audio_rate`` stereo by
    libswresample (the source rate when None), in demux order. The audio stops at the stream's
    edit-list end, as ffmpeg's CLI does: the decoder still returns the codec's end padding
    (measured: mp4/mov AAC). Nothing is held: long videos stream in constant memory.

    :func:`decode` (``avsprep extract``) and ``avstrain segment`` both read videos through it.
    Raises ``av.error.FFmpegError`` / ``ValueError`` for files that cannot be decoded.
    """

    def __init__(self, path, audio_rate: Optional[int] = 44100):
        self.path = str(path)
        self.container = av.open(self.path)
        try:
            if not self.container.streams.video:
                raise ValueError("no video stream")
            self.vstream = self.container.streams.video[0]
            self.vstream.thread_type = "AUTO"
            self.astream = self.container.streams.audio[0] if self.container.streams.audio else None
            self.rate = self.vstream.average_rate or self.vstream.guessed_rate
            self.fps = printed_fps(self.rate)
            if self.fps <= 0:
                raise ValueError("the video stream has no frame rate")
        except BaseException:
            self.container.close()
            raise
        self.has_audio = self.astream is not None
        self.audio_rate = audio_rate or (self.astream.sample_rate if self.astream is not None else 0)
        self.audio_end = None  # samples at audio_rate up to the audio stream's (edit list) end
        if self.astream is not None and self.astream.duration:
            self.audio_end = max(0, math.ceil(float(self.astream.duration * self.astream.time_base)
                                              * self.audio_rate - 1e-6))

    @property
    def duration_us(self) -> Optional[int]:
        """The container duration ffmpeg prints (microseconds), None when the container has none."""
        return self.container.duration

    def __enter__(self) -> "VideoStream":
        return self

    def __exit__(self, *exc) -> None:
        self.container.close()

    def __iter__(self):
        resampler = None
        sent = 0
        streams = [self.vstream] + ([self.astream] if self.astream is not None else [])

        def cut(chunk):
            nonlocal sent
            if self.audio_end is not None:
                chunk = chunk[:max(0, self.audio_end - sent)]
            sent += len(chunk)
            return chunk

        for packet in self.container.demux(*streams):
            if packet.stream.type == "video":
                for frame in packet.decode():
                    yield "video", frame
            else:
                for frame in packet.decode():
                    if resampler is None:
                        resampler = av.AudioResampler(format="s16", layout="stereo", rate=self.audio_rate)
                    for g in resampler.resample(frame):
                        yield "audio", cut(g.to_ndarray().reshape(-1, 2))
        if resampler is not None:
            for g in resampler.resample(None):
                yield "audio", cut(g.to_ndarray().reshape(-1, 2))


def decode(path, seconds: int, audio_rate: Optional[int] = 44100, starts=(0,)) -> Decoded:
    """Decode ``path`` once (:class:`VideoStream`): keep the official frames for ``seconds``
    seconds and the audio resampled to ``audio_rate`` stereo int16 (the source rate when None).

    ``starts`` (``--windows``): the clip starting ``s`` seconds in keeps decoded indices
    ``s * r + official_indices`` (as if the video had been cut there on a frame boundary);
    ``frames``/``indices`` then hold every window's frames one after the other.

    Raises ``av.error.FFmpegError`` / ``ValueError`` for files that cannot be decoded.
    """
    out = Decoded()
    with VideoStream(path, audio_rate) as stream:
        out.has_audio = stream.has_audio
        out.fps = stream.fps
        r = int(round(out.fps))
        wanted = [s * r + i for s in starts for i in official_indices(out.fps, seconds)]
        want_set = set(wanted)
        chosen: dict[int, np.ndarray] = {}
        last = None
        count = 0
        chunks: list[np.ndarray] = []
        pts: list[int] = []
        for kind, item in stream:
            if kind == "video":
                if count in want_set:
                    chosen[count] = to_rgb(item)
                last = item
                if item.pts is not None:
                    pts.append(item.pts)
                count += 1
            else:
                chunks.append(item)
        if count == 0:
            raise ValueError("no video frame could be decoded")
        out.audio_rate = stream.audio_rate if stream.has_audio else 0
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
        elif stream.has_audio:
            out.audio = np.zeros((0, 2), dtype=np.int16)
        dur = stream.duration_us
        if dur is None:
            dur = int(count / out.fps * 1_000_000)
        out.duration_us = int(dur)
    return out
