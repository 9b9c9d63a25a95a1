"""Where ``avstrain segment`` runs the model in a video: pure functions of the frame rate.

A video is cut into 5-s windows (window ``w`` holds the frames shown in ``[5w, 5w + 5)`` s, the
last one is padded). Each window gets:

- the **official** pass: for second ``l`` the frame the official preprocessing keeps,
  ``start + int(l * r + 15/16 * r)`` with ``r = round(fps)`` (``avsprep.extract.frames``) and
  ``start`` the frame nearest to ``5w`` s (``5w * r`` for integer rates, as ``extract --windows``);
- ``N`` **dense** passes (``--fps N``): pass ``k`` takes for second ``l`` the frame shown at
  ``5w + l + k / N`` s, so at ``N`` = the video's (integer) rate every frame is in exactly one pass.

Every pass is 5 frames with the window's audio, as the model was trained. A frame of the output
video shows the mask of the dense pass and second nearest to its own time. Indices past the
last frame are clamped to it (the official rule), which pads the last window. Frame ``i`` is
taken to be shown at ``i / rate`` (constant frame rate; ``extract`` warns about variable ones).
Rates are ``Fraction``s, so no index drifts over a long video.
"""

from __future__ import annotations

import math
from fractions import Fraction

from avsprep.extract.frames import official_indices

WINDOW_SECONDS = 5   # AVSBench clips: 5 s, one frame and one VGGish example per second
MAX_DEFAULT_FPS = 25  # --fps default: the video's rate, at most this


def default_fps(rate: Fraction) -> int:
    """``--fps`` when not given: the video's rate rounded, at most 25, at least 1."""
    return max(1, min(MAX_DEFAULT_FPS, round(rate)))


def window_of(i: int, rate: Fraction) -> int:
    """The window holding frame ``i``."""
    return math.floor(Fraction(i) / (rate * WINDOW_SECONDS))


def window_count(frames: int, rate: Fraction) -> int:
    """Windows of a video of ``frames`` frames (the last one padded)."""
    return window_of(frames - 1, rate) + 1 if frames > 0 else 0


def window_frames(w: int, rate: Fraction) -> range:
    """The frames shown in window ``w`` (before clamping to the video's end)."""
    lo = math.ceil(rate * WINDOW_SECONDS * w)
    return range(lo, math.ceil(rate * WINDOW_SECONDS * (w + 1)))


def official_pass(w: int, rate: Fraction, printed_fps: float) -> tuple[int, ...]:
    """The official frame of each second of window ``w`` (unclamped)."""
    start = round(rate * WINDOW_SECONDS * w)
    return tuple(start + i for i in official_indices(printed_fps, WINDOW_SECONDS))


def dense_passes(w: int, rate: Fraction, n: int) -> list[tuple[int, ...]]:
    """``n`` passes of window ``w``: pass ``k`` holds the frame shown at ``5w + l + k/n`` s, l = 0..4."""
    return [tuple(math.floor((WINDOW_SECONDS * w + l + Fraction(k, n)) * rate) for l in range(WINDOW_SECONDS))
            for k in range(n)]


def mask_source(i: int, rate: Fraction, n: int) -> tuple[int, int, int]:
    """``(window, dense pass k, second l)`` whose mask frame ``i`` shows: the nearest in time."""
    w = window_of(i, rate)
    units = round((Fraction(i) / rate - WINDOW_SECONDS * w) * n)  # time in the window, in 1/n s
    units = min(max(units, 0), WINDOW_SECONDS * n - 1)
    return w, units % n, units // n


def audio_span(w: int, duration: float | None, tail: float) -> tuple[float, float]:
    """``(start s, length s)`` of window ``w``'s audio: its 5 s, cut at the video's ``duration``;
    a last window with under ``tail`` s of sound (no full VGGish example) takes the video's last
    ``tail`` s instead (one example, which the loader's rule then repeats)."""
    start, length = float(WINDOW_SECONDS * w), float(WINDOW_SECONDS)
    if duration is not None:
        length = min(length, duration - start)
        if length < tail:
            start = max(0.0, duration - tail)
            length = min(tail, duration)
    return start, length


def clamp(indices: tuple[int, ...], last: int) -> tuple[int, ...]:
    """Indices past the last decoded frame become it (the official rule; pads the last window)."""
    return tuple(min(i, last) for i in indices)
