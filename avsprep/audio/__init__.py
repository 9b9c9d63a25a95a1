"""Audio for AVSBench clips: VGGish log-mel frontend, clip audio sources, VGGish model.

``import avsprep.audio`` stays torch-free: ``VGGish`` and ``load_vggish`` are
imported from ``avsprep.audio.vggish`` on first access.
"""

from avsprep.common.atomic import file_sha256
from avsprep.audio.frontend import clip_examples, mel_matrix, resampler_name, waveform_to_examples
from avsprep.audio.sources import clip_audio, load_logmel_pickle, read_wav

_LAZY = {"VGGish", "load_vggish", "remap_vggish_keys", "check_hash_suffix"}

__all__ = [
    "waveform_to_examples",
    "clip_examples",
    "mel_matrix",
    "resampler_name",
    "read_wav",
    "load_logmel_pickle",
    "clip_audio",
    "file_sha256",
    *sorted(_LAZY),
]


def __getattr__(name: str):
    if name in _LAZY:
        from avsprep.audio import vggish

        return getattr(vggish, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
