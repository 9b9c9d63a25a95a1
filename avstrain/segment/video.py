"""Writing ``avstrain segment``'s videos with PyAV (no ffmpeg subprocess): H.264 (yuv420p) +
AAC in mp4, which headless Chromium, browsers and players open. Frames and audio are fed as
they come (a long video streams through); the file appears under its final name only when
complete (temporary name, then ``avsprep.common.atomic.commit``)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Optional

import av
import numpy as np

from avsprep.common import atomic

CRF = "20"
AUDIO_BIT_RATE = 128000


def even(n: int) -> int:
    """yuv420p needs even sides: drop the last row or column of an odd one."""
    return n - (n % 2)


class VideoWriter:
    """``VideoWriter(path, width, height, rate, audio_rate)``; ``frame(rgb)`` appends the next
    frame (one per ``1/rate``, so the output keeps the input's rate and frame count), ``audio(int16
    [n, 2])`` the next stereo samples; ``close()`` flushes and commits, ``abort()`` removes the
    temporary file. ``audio_rate`` None: no audio stream."""

    def __init__(self, path: Path, width: int, height: int, rate: Fraction, audio_rate: Optional[int]):
        self.path = Path(path)
        self.tmp = atomic.tmp_path_for(self.path).with_suffix(".mp4")
        self.width, self.height = even(width), even(height)
        self.container = av.open(str(self.tmp), "w", format="mp4")
        self.v = self.container.add_stream("libx264", rate=Fraction(rate))
        self.v.width, self.v.height, self.v.pix_fmt = self.width, self.height, "yuv420p"
        self.v.options = {"crf": CRF, "preset": "veryfast"}
        self.a = None
        if audio_rate:
            self.a = self.container.add_stream("aac", rate=int(audio_rate), layout="stereo")
            self.a.bit_rate = AUDIO_BIT_RATE
        self.frames = 0
        self.samples = 0
        self.audio_rate = audio_rate

    def frame(self, rgb: np.ndarray) -> None:
        rgb = np.ascontiguousarray(rgb[:self.height, :self.width])
        f = av.VideoFrame.from_ndarray(rgb, format="rgb24")  # pts left to the encoder: one frame per 1/rate
        self.frames += 1
        for p in self.v.encode(f):
            self.container.mux(p)

    def audio(self, pcm: np.ndarray) -> None:
        if self.a is None or len(pcm) == 0:
            return
        x = np.ascontiguousarray(np.asarray(pcm, np.int16).reshape(-1, 2).T.astype(np.float32) / 32768.0)
        af = av.AudioFrame.from_ndarray(x, format="fltp", layout="stereo")
        af.sample_rate = self.audio_rate
        af.pts = self.samples
        af.time_base = Fraction(1, self.audio_rate)
        self.samples += x.shape[1]
        for p in self.a.encode(af):
            self.container.mux(p)

    def close(self) -> Path:
        try:
            for p in self.v.encode(None):
                self.container.mux(p)
            if self.a is not None:
                for p in self.a.encode(None):
                    self.container.mux(p)
            self.container.close()
        except BaseException:
            self.abort()
            raise
        atomic.commit(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        try:
            self.container.close()
        except Exception:  # already closed or half-written: the file goes anyway
            pass
        self.tmp.unlink(missing_ok=True)
