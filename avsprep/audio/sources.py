"""Audio inputs of a clip: AVSBench log-mel pickles and wav files.

A clip's audio comes from its log-mel pickle when present, else from its wav
(docs/formats.md, audio).  Pickles are untrusted: they are read with a restricted
unpickler that only rebuilds tensors / arrays and never runs pickled code.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import sys
from pathlib import Path

import numpy as np
import soundfile

from avsprep.audio.frontend import NUM_BANDS, NUM_FRAMES, clip_examples
from avsprep.common.errors import DataError

CLIP_EXAMPLES = 5


def read_wav(path: os.PathLike | str) -> tuple[np.ndarray, int]:
    """Read a wav as float64 [samples] or [samples, channels] and its rate.

    16-bit PCM is read as int16 / 32768.0, exactly like torchvggish; other
    encodings are read as float by soundfile.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: audio file not found")
    try:
        info = soundfile.info(str(path))
        if info.subtype == "PCM_16":
            data, sr = soundfile.read(str(path), dtype="int16")
            wave = data.astype(np.float64) / 32768.0
        else:
            wave, sr = soundfile.read(str(path), dtype="float64")
    except (RuntimeError, ValueError, TypeError) as exc:  # soundfile.LibsndfileError is a RuntimeError
        raise DataError(f"{path}: cannot read audio ({exc}); re-extract the wav (16 kHz PCM_16)") from None
    return wave, int(sr)


# --- restricted unpickling ---------------------------------------------------

# Globals a ``pickle.dump`` of a torch tensor or numpy array needs; nothing else
# is ever resolved.  torch's own ``_load_from_bytes`` calls torch.load with
# weights_only=False, so it is replaced by a weights_only version below.
_NUMPY_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # protocol-2 numpy pickles encode bytes as latin-1 text
}
_TORCH_GLOBALS = {
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_tensor"),
    ("torch.storage", "_load_from_bytes"),
}


def _torch_load_from_bytes(data: bytes):
    """Storage bytes inside a tensor pickle, loaded with torch's weights-only unpickler."""
    import torch

    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only" in str(exc).lower():
            raise _Refused("a global outside torch's weights-only allow-list") from None
        raise


_TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # first object of a legacy torch.save file


class _RestrictedUnpickler(pickle.Unpickler):
    """Rebuilds numpy arrays, and torch tensors with torch's own functions (imports torch)."""

    def find_class(self, module: str, name: str):
        key = (module, name)
        if key == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if key in _NUMPY_GLOBALS:
            return super().find_class(module, name)
        if key in _TORCH_GLOBALS:
            if key == ("torch.storage", "_load_from_bytes"):
                return _torch_load_from_bytes
            return super().find_class(module, name)
        raise _Refused(f"{module}.{name}")

    def persistent_load(self, pid):
        raise _Refused(f"persistent id {pid!r}")


# --- torch tensor pickles without torch ------------------------------------------
#
# ``pickle.dump(tensor)`` stores ``torch._utils._rebuild_tensor_v2(storage, offset,
# size, stride, requires_grad, hooks)`` where ``storage`` is
# ``torch.storage._load_from_bytes(b)`` and ``b`` is a legacy ``torch.save`` of the
# storage: five pickles (magic number, protocol 1001, sys info, a persistent id
# ``('storage', torch.FloatStorage, key, location, numel, None)``, the key list)
# followed by an int64 element count and the raw little-endian elements. The
# common case is rebuilt here with numpy, bit for bit, so loading a pickle does
# not import torch (seconds per process); anything else raises ``_NeedTorch`` and
# the file is read again with torch (``_RestrictedUnpickler``).

_STORAGE_DTYPES = {"FloatStorage": "<f4", "DoubleStorage": "<f8", "HalfStorage": "<f2"}


class _NeedTorch(Exception):
    """The pickle is a valid-looking tensor this module does not rebuild itself."""


class _Storage:
    """A storage's persistent id inside the legacy torch.save bytes."""

    def __init__(self, key: str, dtype: np.dtype, numel: int):
        self.key, self.dtype, self.numel = key, dtype, numel


class _StorageUnpickler(pickle.Unpickler):
    """The pickles inside storage bytes: only float storage types and their persistent ids."""

    def find_class(self, module: str, name: str):
        if module == "torch" and name in _STORAGE_DTYPES:
            return np.dtype(_STORAGE_DTYPES[name])
        raise _NeedTorch(f"{module}.{name}")  # torch's weights-only loader decides

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"):
            raise _NeedTorch("persistent id")
        _, dtype, key, _location, numel, *view = pid
        if (not isinstance(dtype, np.dtype) or not isinstance(key, str) or type(numel) is not int
                or numel < 0 or (view and view[0] is not None)):
            raise _NeedTorch("storage id")
        return _Storage(key, dtype, numel)


def _numpy_load_from_bytes(data: bytes) -> np.ndarray:
    """A float storage from legacy torch.save bytes as a 1-D little-endian numpy array."""
    fh = io.BytesIO(data)
    load = lambda: _StorageUnpickler(fh).load()  # noqa: E731 - each pickle in turn
    if load() != _TORCH_LEGACY_MAGIC or load() != 1001:
        raise _NeedTorch("not a legacy torch.save")
    info = load()
    if not (isinstance(info, dict) and info.get("little_endian") is True):
        raise _NeedTorch("byte order")
    storage, keys = load(), load()
    if not isinstance(storage, _Storage) or keys != [storage.key]:
        raise _NeedTorch("storage layout")
    head = fh.read(8)
    if len(head) != 8 or int.from_bytes(head, "little", signed=True) != storage.numel:
        raise _NeedTorch("storage size")
    raw = fh.read()
    if len(raw) != storage.numel * storage.dtype.itemsize:
        raise _NeedTorch("storage bytes")
    return np.frombuffer(raw, storage.dtype)


def _numpy_rebuild_tensor(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                          metadata=None) -> np.ndarray:
    """``torch._utils._rebuild_tensor_v2`` as a numpy copy; every index is bounds-checked."""
    ints = lambda v: isinstance(v, tuple) and all(type(x) is int and x >= 0 for x in v)  # noqa: E731
    if (not isinstance(storage, np.ndarray) or type(storage_offset) is not int or storage_offset < 0
            or not ints(size) or not ints(stride) or len(size) != len(stride) or metadata):
        raise _NeedTorch("tensor layout")
    if 0 in size:
        return np.zeros(size, storage.dtype)
    last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= storage.size:
        raise _NeedTorch("tensor outside its storage")  # torch reports it
    step = storage.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(storage[storage_offset:], size, [s * step for s in stride],
                                           writeable=False)
    return view.copy()


class _NumpyUnpickler(_RestrictedUnpickler):
    """Like ``_RestrictedUnpickler``, but rebuilds float tensors as numpy arrays, without torch."""

    def find_class(self, module: str, name: str):
        key = (module, name)
        if key == ("torch.storage", "_load_from_bytes"):
            return _numpy_load_from_bytes
        if key in (("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_tensor")):
            return _numpy_rebuild_tensor
        return super().find_class(module, name)


class _Refused(Exception):
    """A pickle asked for a global outside the allow-list."""


def _to_numpy(obj) -> np.ndarray | None:
    if isinstance(obj, np.ndarray):
        return obj
    if "torch" not in sys.modules:  # not imported: obj cannot be a tensor
        return None
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return None
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu()
        return (t.float() if t.dtype == torch.bfloat16 else t).numpy()  # numpy has no bfloat16; exact
    return None


def check_logmel(arr: np.ndarray, path: os.PathLike | str) -> np.ndarray:
    """[5,1,96,64] or [5,96,64] float -> [5,96,64] float32, else ``DataError`` naming the file."""
    if not np.issubdtype(arr.dtype, np.floating):
        raise DataError(f"{path}: log-mel has dtype {arr.dtype}, expected float; regenerate it from the wav")
    shape = list(arr.shape)
    if arr.ndim == 4 and shape[1] == 1:
        arr = arr[:, 0]
    if list(arr.shape) != [CLIP_EXAMPLES, NUM_FRAMES, NUM_BANDS]:
        raise DataError(
            f"{path}: log-mel has shape {shape}, expected [5, 1, 96, 64] or [5, 96, 64]; "
            "regenerate it from the wav"
        )
    if not np.all(np.isfinite(arr)):
        raise DataError(f"{path}: log-mel contains NaN or infinite values; regenerate it from the wav")
    return np.ascontiguousarray(arr, dtype=np.float32)


def load_logmel_pickle(path: os.PathLike | str) -> np.ndarray:
    """Load an AVSBench log-mel pickle as [5, 96, 64] float32 without running pickled code.

    Accepts ``pickle.dump`` of a torch tensor (AVSBench's files, [5,1,96,64],
    possibly ``requires_grad``) or of a numpy array, and ``torch.save`` files
    (read with ``weights_only=True``). Float tensor pickles are rebuilt with
    numpy (exactly; torch is not imported); other tensors go through torch.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: log-mel pickle not found")
    data = path.read_bytes()
    try:
        if data[:2] == b"PK":  # a torch.save zip archive rather than a plain pickle
            obj = _torch_load_from_bytes(data)
        else:
            try:
                obj = _NumpyUnpickler(io.BytesIO(data)).load()
            except _NeedTorch:
                obj = _RestrictedUnpickler(io.BytesIO(data)).load()
            if type(obj) is int and obj == _TORCH_LEGACY_MAGIC:  # legacy (pre-1.6) torch.save file
                obj = _torch_load_from_bytes(data)
    except _Refused as exc:
        raise DataError(
            f"{path}: refusing to unpickle (it tries to load {exc}); regenerate the log-mel from the wav"
        ) from None
    except Exception as exc:  # truncated or corrupt: pickle, torch and numpy raise many types
        raise DataError(
            f"{path}: cannot read log-mel pickle ({type(exc).__name__}: {exc}); regenerate it from the wav"
        ) from None
    arr = _to_numpy(obj)
    if arr is None:
        raise DataError(
            f"{path}: pickle holds a {type(obj).__name__}, expected a tensor or array [5, 1, 96, 64]; "
            "regenerate it from the wav"
        )
    return check_logmel(arr, path)


def clip_audio(layout, clip) -> tuple[np.ndarray, str]:
    """The clip's 5 log-mel examples [5, 96, 64] float32 and their source ("pickle" or "wav")."""
    pkl = Path(layout.logmel_path(clip))
    if pkl.is_file():
        return load_logmel_pickle(pkl), "pickle"
    wav = Path(layout.wav_path(clip))
    if wav.is_file():
        wave, sr = read_wav(wav)
        return clip_examples(wave, sr, CLIP_EXAMPLES, name=str(wav)), "wav"
    name = getattr(clip, "name", clip)
    raise DataError(f"clip {name}: no audio; expected {pkl} or {wav}")
