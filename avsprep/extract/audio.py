"""The 16 kHz wav of a clip, sample for sample as moviepy 1.x writes it (the official scripts'
``VideoFileClip(path).audio.write_audiofile(wav, fps=16000)``), or properly resampled.

moviepy 1.x (read in v1.0.3: audio/io/readers.py, audio/AudioClip.py) works like this, and
:func:`moviepy_wav` reproduces it as a pure function of the 44.1 kHz stereo int16 stream that
ffmpeg decodes (``-ar 44100 -ac 2 -f s16le``; :func:`avsprep.extract.decode` gets the same
samples with PyAV's libswresample):

- the clip lasts ``duration`` = the container duration ffmpeg prints (centiseconds), and is
  written as ``int(16000 * duration)`` samples in chunks of at most 2,000, the chunk bounds
  being ``linspace(0, total, total // 2000 + 2, dtype=int)``;
- output sample ``k`` is the 44.1 kHz sample ``round(44100 * (1/16000 * k))`` (float grid,
  round half to even, no low-pass filter), zero where that time is not in ``[0, duration)``;
- the reader keeps a window of ``min(int(44100 * duration) + 1, 200000)`` samples; when a chunk
  needs samples past it, the window is moved to start half a window before the chunk's last
  sample, keeping ``end - new_start + 1`` old samples (one too many) and reading the rest, so
  after every refill the window's book-kept start is one sample ahead of what it holds: each
  refill makes the rest of the clip one more 44.1 kHz sample late (first refill ~4.5 s in);
- a window shorter than half its size (end of stream) shifts indices back further; indices
  past its end repeat its last sample;
- samples are clipped to +-0.99 and scaled by 32768, truncated to int16 (so +-32440 at most).
"""

from __future__ import annotations

import io
import wave

import numpy as np

OUT_RATE = 16000
DECODE_RATE = 44100     # moviepy 1.x AudioFileClip default fps
READER_BUFFER = 200000  # VideoFileClip audio_buffersize default
WRITE_CHUNK = 2000      # AudioClip.write_audiofile buffersize default


def moviepy_duration(container_duration_us: int) -> float:
    """The duration moviepy 1.x parses from ffmpeg's ``Duration: HH:MM:SS.cc`` line.

    ffmpeg prints ``(duration + 5000 us)`` truncated to centiseconds.
    """
    return ((int(container_duration_us) + 5000) // 10000) / 100.0


def moviepy_wav(stream: np.ndarray, duration: float) -> np.ndarray:
    """int16 ``[n, 2]`` 44.1 kHz stream -> int16 ``[int(16000 * duration), 2]`` as moviepy 1.x
    writes it (see the module docstring)."""
    stream = np.asarray(stream)
    if stream.ndim != 2 or stream.shape[1] != 2:
        raise ValueError("stream must be [samples, 2] (ffmpeg -ac 2)")
    n = len(stream)
    size = min(int(DECODE_RATE * duration) + 1, READER_BUFFER)
    half = size // 2

    # The window is always a contiguous slice stream[held : held + length] (the kept tail plus
    # the samples read after it), its book-kept first frame is ``start``, and the decoder pipe
    # has delivered stream[:pipe].
    pipe = 0

    def read(count: int) -> int:
        nonlocal pipe
        got = max(0, min(count, n - pipe))
        pipe += got
        return got

    held, length, start = 0, read(size), 0

    def refill(frame: int) -> None:
        nonlocal held, length, start
        new_start = max(0, frame - half)
        end = start + size
        if new_start < end < new_start + size:
            conserved = end - new_start + 1
            kept = min(conserved, length)   # numpy's buffer[-conserved:] when conserved > length
            first_new = pipe
            got = read(size - conserved)
            held = first_new - kept
            length = kept + got
        else:  # a jump (never for sequential writing of a clip over ~0.3 s): skip ahead and refill
            if new_start > pipe:
                read(new_start - pipe)
            held = pipe
            length = read(size)
        start = new_start

    total = int(OUT_RATE * duration)
    bounds = np.linspace(0, total, total // WRITE_CHUNK + 2, endpoint=True, dtype=int)
    out = np.zeros((total, 2), dtype=np.int16)
    floats = stream.astype(np.float64) / 32768.0
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        tt = (1.0 / OUT_RATE) * np.arange(lo, hi)
        in_time = (tt >= 0) & (tt < duration)
        if not in_time.any():
            continue
        frames = np.round(DECODE_RATE * tt).astype(int)[in_time]
        lo_f, hi_f = frames.min(), frames.max()
        if not 0 <= lo_f - start < length:
            refill(lo_f)
        elif not 0 <= hi_f - start < length:
            refill(hi_f)
        idx = frames - start
        if length < half:
            idx = idx - (half - length + 1)
        if length == 0:
            raise ValueError("the audio stream ended before the clip's first sample")
        idx = np.where(idx >= length, length - 1, idx)
        idx = np.where(idx < 0, idx + length, idx)  # numpy negative indexing of the window
        if (idx < 0).any():
            raise ValueError("the audio stream is too short for its duration")
        chunk = np.zeros((hi - lo, 2))
        chunk[in_time] = floats[held + idx]
        chunk = np.maximum(-0.99, np.minimum(0.99, chunk))
        out[lo:hi] = (32768 * chunk).astype(np.int16)
    return out


def resampled_wav(samples: np.ndarray, rate: int, duration: float) -> np.ndarray:
    """``--audio-resample``: a proper anti-aliased resampler (resampy 'kaiser_best', the one
    VGGish's own frontend uses) of the stereo int16 source to 16 kHz, ``int(16000 * duration)``
    samples, same clipping and scaling as moviepy."""
    import resampy  # lazy: only --audio-resample needs it (optional, not a declared dependency; numba-heavy)

    x = np.asarray(samples, dtype=np.float64) / 32768.0
    y = resampy.resample(x, rate, OUT_RATE, axis=0) if rate != OUT_RATE else x
    total = int(OUT_RATE * duration)
    out = np.zeros((total, 2))
    m = min(total, len(y))
    out[:m] = y[:m]
    out = np.maximum(-0.99, np.minimum(0.99, out))
    return (32768 * out).astype(np.int16)


def wav_bytes(samples: np.ndarray, rate: int = OUT_RATE) -> bytes:
    """A 16-bit PCM WAV (RIFF) file of int16 ``[n, channels]`` samples."""
    samples = np.ascontiguousarray(samples, dtype="<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(samples.shape[1])
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())
    return buf.getvalue()
