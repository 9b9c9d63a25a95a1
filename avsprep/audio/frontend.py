"""VGGish log-mel frontend in float64 numpy, numerically equal to torchvggish.

Steps (``docs/reference/vggish.md`` section 2): mono by channel mean, resample to
16 kHz, 400-sample frames with hop 160 and no padding, periodic Hann window,
512-point rFFT magnitude, 64 HTK-mel bands (125-7500 Hz), ``log(mel + 0.01)``,
then non-overlapping 96-frame examples.  AVSBench then forces 5 examples per
clip (repeat the last one when short, keep the first 5 when long).

Resampling: ``resampy`` is a regular dependency (setup.cfg), so we call
``resampy.resample(x, sr, 16000)`` (``kaiser_best``), which is what torchvggish
does, and the numbers match at every sample rate.  Only if it cannot be imported
(a broken install) do we fall back to ``scipy.signal.resample_poly`` with
a FIR designed like resampy's kaiser_best (64 zero crossings, Kaiser beta 14.77,
roll-off 0.948).  That is a documented deviation: not bit-equal to torchvggish
on resampled input (with scipy's default filter the top mel bands, about
6.9-7.5 kHz, move by up to 0.4; with this filter a resampled sine stays within
about 1e-4 of the exactly sampled one in bands 0-59, away from the edges).  AVSBench's own
wavs are 16 kHz, where no resampling happens and both paths are exact.
``resampler_name()`` says which one is in use; shards record it.
"""

from __future__ import annotations

from fractions import Fraction
from functools import lru_cache

import numpy as np

from avsprep.common.errors import DataError

SAMPLE_RATE = 16000
WINDOW_LENGTH = 400  # 0.025 s at 16 kHz
HOP_LENGTH = 160  # 0.010 s
FFT_LENGTH = 512  # next power of two above 400
NUM_BANDS = 64
NUM_FRAMES = 96  # frames per example (0.96 s)
MEL_MIN_HZ = 125.0
MEL_MAX_HZ = 7500.0
LOG_OFFSET = 0.01
MIN_SAMPLES = WINDOW_LENGTH + (NUM_FRAMES - 1) * HOP_LENGTH  # 15,600 = 0.975 s for one example


def hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """HTK mel scale, as in VGGish: 1127 ln(1 + f / 700)."""
    return 1127.0 * np.log(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


@lru_cache(maxsize=1)
def _mel_matrix_cached() -> np.ndarray:
    num_bins = FFT_LENGTH // 2 + 1
    bins_mel = hz_to_mel(np.linspace(0.0, SAMPLE_RATE / 2.0, num_bins))
    edges = np.linspace(hz_to_mel(MEL_MIN_HZ), hz_to_mel(MEL_MAX_HZ), NUM_BANDS + 2)
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    # Triangles with slopes linear in mel (not in Hz), peak <= 1, no area normalisation.
    rising = (bins_mel[:, None] - lower) / (center - lower)
    falling = (upper - bins_mel[:, None]) / (upper - center)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights[0, :] = 0.0  # the DC bin never contributes
    weights.setflags(write=False)
    return weights


def mel_matrix() -> np.ndarray:
    """The [257, 64] float64 mel weight matrix of VGGish (a fresh copy)."""
    return _mel_matrix_cached().copy()


@lru_cache(maxsize=1)
def _periodic_hann() -> np.ndarray:
    n = np.arange(WINDOW_LENGTH, dtype=np.float64)
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * n / WINDOW_LENGTH)


def _have_resampy() -> bool:
    try:
        import resampy  # noqa: F401
    except Exception:  # ImportError, or numba failing at import time
        return False
    return True


def resampler_name() -> str:
    """Which resampler ``to_mono_16k`` uses for rates other than 16 kHz."""
    return "resampy.kaiser_best" if _have_resampy() else "scipy.resample_poly.kaiser_best_like"


# resampy's ``kaiser_best`` filter parameters (64 zero crossings, Kaiser beta,
# roll-off), used to design the FIR of the scipy fallback so it is close to it.
_KAISER_BEST_ZEROS = 64
_KAISER_BEST_BETA = 14.769656459379492
_KAISER_BEST_ROLLOFF = 0.9475937167399596


@lru_cache(maxsize=8)
def _kaiser_best_like_fir(up: int, down: int) -> np.ndarray:
    """Low-pass FIR for ``resample_poly``, shaped like resampy's kaiser_best."""
    from scipy.signal import firwin

    rate = max(up, down)
    taps = 2 * _KAISER_BEST_ZEROS * rate + 1
    h = firwin(taps, _KAISER_BEST_ROLLOFF / rate, window=("kaiser", _KAISER_BEST_BETA))
    h.setflags(write=False)
    return h


def _resample(x: np.ndarray, sample_rate: int) -> np.ndarray:
    """Resample mono float64 ``x`` to 16 kHz; length floor(N * 16000 / sr)."""
    if _have_resampy():
        import resampy

        return np.asarray(resampy.resample(x, sample_rate, SAMPLE_RATE), dtype=np.float64)
    from scipy.signal import resample_poly

    ratio = Fraction(SAMPLE_RATE, sample_rate)
    up, down = ratio.numerator, ratio.denominator
    # scipy's default filter (10 zero crossings, beta 5) leaks images and aliases
    # that the log(mel + 0.01) magnifies in near-silent bands; a kaiser_best-like
    # filter stays within ~1e-4 of an exactly sampled sine (bands 0-59, after the
    # first frame).  resample_poly gives ceil(N * up / down) samples; keep
    # resampy's floor(N * 16000 / sr).
    out = resample_poly(x, up, down, window=_kaiser_best_like_fir(up, down).copy())
    return out[: (len(x) * SAMPLE_RATE) // sample_rate]


def to_mono_16k(wave: np.ndarray, sample_rate: int) -> np.ndarray:
    """Float64 mono 16 kHz waveform: mean over channels (last axis), then resample."""
    x = np.asarray(wave, dtype=np.float64)
    if x.ndim == 2:
        x = x.mean(axis=1)
    elif x.ndim != 1:
        raise ValueError(f"waveform must be [samples] or [samples, channels], got shape {list(x.shape)}")
    if not np.all(np.isfinite(x)):
        raise ValueError("waveform contains NaN or infinite samples")
    if int(sample_rate) != sample_rate or sample_rate <= 0:
        raise ValueError(f"sample rate must be a positive integer, got {sample_rate!r}")
    sample_rate = int(sample_rate)
    if sample_rate != SAMPLE_RATE and len(x):
        x = _resample(x, sample_rate)
    return x


def log_mel(x16k: np.ndarray) -> np.ndarray:
    """[frames, 64] float64 log-mel of a mono 16 kHz waveform (no padding)."""
    x = np.asarray(x16k, dtype=np.float64)
    if len(x) < WINDOW_LENGTH:
        return np.zeros((0, NUM_BANDS), dtype=np.float64)
    # [frames, 400]: frame k starts at sample 160 k; an incomplete last frame is dropped.
    frames = np.lib.stride_tricks.sliding_window_view(x, WINDOW_LENGTH)[::HOP_LENGTH]
    # The 400 windowed samples are zero-padded at the end to 512 (not centred).
    magnitude = np.abs(np.fft.rfft(frames * _periodic_hann(), FFT_LENGTH))
    return np.log(magnitude @ _mel_matrix_cached() + LOG_OFFSET)


def waveform_to_examples(wave: np.ndarray, sample_rate: int, *, dtype=np.float32) -> np.ndarray:
    """All VGGish examples of a waveform: [n, 96, 64] (float32 by default), no padding.

    ``wave`` is [samples] or [samples, channels] in [-1, 1].  Audio shorter than
    0.975 s at 16 kHz gives n = 0.
    """
    mel = log_mel(to_mono_16k(wave, sample_rate))
    n = mel.shape[0] // NUM_FRAMES
    return mel[: n * NUM_FRAMES].reshape(n, NUM_FRAMES, NUM_BANDS).astype(dtype, copy=False)


def fix_example_count(examples: np.ndarray, frames: int = 5, *, name: str | None = None) -> np.ndarray:
    """AVSBench's rule: repeat the last example when short, keep the first ``frames`` when long."""
    n = examples.shape[0]
    if n == 0:
        where = f"{name}: " if name else ""
        raise DataError(
            f"{where}audio shorter than 0.975 s gives no VGGish example; "
            "supply at least 1 s of audio (5 s for a full AVSBench clip)"
        )
    if n >= frames:
        return examples[:frames]
    pad = np.repeat(examples[-1:], frames - n, axis=0)
    return np.concatenate([examples, pad], axis=0)


def clip_examples(wave: np.ndarray, sample_rate: int, frames: int = 5, *, name: str | None = None) -> np.ndarray:
    """Exactly ``frames`` examples [frames, 96, 64] float32 for one clip.

    ``name`` (e.g. the wav path) goes into the ``DataError`` raised when the
    audio is too short for a single example.
    """
    return fix_example_count(waveform_to_examples(wave, sample_rate), frames, name=name)


def expected_example_count(num_samples_16k: int) -> int:
    """n examples from N samples at 16 kHz (README formula), for checks and messages."""
    if num_samples_16k < WINDOW_LENGTH:
        return 0
    return (1 + (num_samples_16k - WINDOW_LENGTH) // HOP_LENGTH) // NUM_FRAMES


__all__ = [
    "SAMPLE_RATE",
    "MIN_SAMPLES",
    "hz_to_mel",
    "mel_matrix",
    "resampler_name",
    "to_mono_16k",
    "log_mel",
    "waveform_to_examples",
    "fix_example_count",
    "clip_examples",
    "expected_example_count",
]
