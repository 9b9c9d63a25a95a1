"""The official AVSBench preprocessing re-stated for tests (written from reading
preprocess_s4.py / preprocess_ms3.py and moviepy 1.0.3; no code copied).

- frames: imageio's ffmpeg reader decodes every frame, each is ``cv2.resize``d to 224x224, the
  frame at ``int(l*r + 15/16*r)`` (``r = round(fps)``) per second is kept, clamped to the last;
- audio: moviepy 1.x's FFMPEG_AudioReader/AudioClip.write_audiofile(fps=16000) behaviour, as a
  literal object with an ffmpeg pipe (imageio-ffmpeg's binary), a buffer array that is sliced
  and stacked on refill, and chunked writing.

Needs the test extra ``imageio`` + ``imageio-ffmpeg``.
"""

from __future__ import annotations

import re
import subprocess

import numpy as np


def official_frames(path, seconds: int):
    """(chosen decoded indices, [224x224x3 RGB] frames) as the official scripts make them."""
    import cv2
    import imageio

    reader = imageio.get_reader(str(path), "ffmpeg")
    r = int(round(reader.get_meta_data()["fps"]))
    resized = [cv2.resize(im, (224, 224)) for im in reader]
    reader.close()
    picks = []
    for l in range(seconds):
        for i in range(16):
            n = int(l * r + (i * 1.0 / 16) * r)
            if i == 15:
                picks.append(min(n, len(resized) - 1))
    return picks, [resized[n] for n in picks]


def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def ffmpeg_duration(path) -> float:
    """The ``Duration: HH:MM:SS.cc`` ffmpeg -i prints, in seconds (moviepy's ffmpeg_parse_infos)."""
    proc = subprocess.run([ffmpeg_exe(), "-i", str(path)], capture_output=True, text=True)
    m = re.search(r"Duration: (\d\d):(\d\d):(\d\d\.\d\d)", proc.stderr)
    h, mnt, s = m.groups()
    return int(h) * 3600 + int(mnt) * 60 + float(s)


class MoviepyAudioReader:
    """moviepy 1.x's audio reader: ffmpeg pipe of s16le 44.1 kHz stereo, a sliding buffer."""

    def __init__(self, path, buffersize=200000, fps=44100):
        self.fps = fps
        self.duration = ffmpeg_duration(path)
        self.nframes = int(self.fps * self.duration)
        self.buffersize = min(self.nframes + 1, buffersize)
        self.proc = subprocess.Popen(
            [ffmpeg_exe(), "-i", str(path), "-vn", "-loglevel", "error", "-f", "s16le",
             "-acodec", "pcm_s16le", "-ar", str(fps), "-ac", "2", "-"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        self.pos = 0
        self.buffer = None
        self.buffer_startframe = 1
        self.fill_around(1)

    def read(self, count):
        count = int(round(count))
        raw = self.proc.stdout.read(2 * 2 * count)
        self.pos += count
        return (np.frombuffer(raw, dtype=np.int16) / 32768.0).reshape(-1, 2)

    def fill_around(self, frame):
        new_start = max(0, frame - self.buffersize // 2)
        if self.buffer is not None:
            old_end = self.buffer_startframe + self.buffersize
            if new_start < old_end < new_start + self.buffersize:
                keep = old_end - new_start + 1
                fresh = self.read(self.buffersize - keep)
                self.buffer = np.vstack([self.buffer[-keep:], fresh])
                self.buffer_startframe = new_start
                return
        if new_start > self.pos:  # forward skip (sequential use never seeks back)
            self.read(new_start - self.pos)
        assert new_start >= self.pos - 0, "backward seek not re-stated"
        self.buffer = self.read(self.buffersize)
        self.buffer_startframe = new_start

    def get(self, tt):
        in_time = (tt >= 0) & (tt < self.duration)
        frames = np.round(self.fps * tt).astype(int)[in_time]
        if not 0 <= frames.min() - self.buffer_startframe < len(self.buffer):
            self.fill_around(frames.min())
        elif not 0 <= frames.max() - self.buffer_startframe < len(self.buffer):
            self.fill_around(frames.max())
        result = np.zeros((len(tt), 2))
        indices = frames - self.buffer_startframe
        if len(self.buffer) < self.buffersize // 2:
            indices = indices - (self.buffersize // 2 - len(self.buffer) + 1)
        try:
            result[in_time] = self.buffer[indices]
        except IndexError:
            indices[indices >= len(self.buffer)] = len(self.buffer) - 1
            result[in_time] = self.buffer[indices]
        return result

    def close(self):
        self.proc.kill()
        self.proc.wait()
        self.proc.stdout.close()


def moviepy_wav_samples(path, fps=16000, chunksize=2000) -> np.ndarray:
    """int16 [n, 2]: what ``VideoFileClip(path).audio.write_audiofile(wav, fps=16000)`` writes."""
    reader = MoviepyAudioReader(path)
    try:
        total = int(fps * reader.duration)
        nchunks = total // chunksize + 1
        bounds = np.linspace(0, total, nchunks + 1, endpoint=True, dtype=int)
        parts = []
        for i in range(nchunks):
            tt = (1.0 / fps) * np.arange(bounds[i], bounds[i + 1])
            snd = reader.get(tt)
            snd = np.maximum(-0.99, np.minimum(0.99, snd))
            parts.append((32768 * snd).astype(np.int16))
        return np.vstack(parts)
    finally:
        reader.close()
