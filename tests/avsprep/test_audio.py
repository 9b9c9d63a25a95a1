"""Feature: the VGGish log-mel frontend and clip audio sources reproduce torchvggish / AVSBench."""

from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile

from avsprep.audio import (
    clip_audio,
    clip_examples,
    load_logmel_pickle,
    mel_matrix,
    read_wav,
    resampler_name,
    waveform_to_examples,
)
from avsprep.audio import frontend
from avsprep.common.errors import DataError
from tests.conftest import FIXTURES, need

VG = FIXTURES / "vggish"


def case(name: str) -> dict:
    with np.load(need(VG / f"case_{name}.npz")) as z:
        return {k: z[k] for k in z.files}


# --- frontend against the torchvggish fixtures --------------------------------


@pytest.mark.parametrize("name", ["a", "d", "e"])
def test_examples_match_torchvggish_float64(name):
    c = case(name)
    got = waveform_to_examples(c["wave"], int(c["sample_rate"]), dtype=np.float64)
    assert got.shape == c["examples_f64"].shape
    np.testing.assert_allclose(got, c["examples_f64"], rtol=0, atol=1e-9)


@pytest.mark.parametrize("name", ["a", "d", "e"])
def test_examples_match_torchvggish_float32(name):
    c = case(name)
    got = waveform_to_examples(c["wave"], int(c["sample_rate"]))
    assert got.dtype == np.float32
    assert got.shape == c["examples"].shape
    np.testing.assert_allclose(got, c["examples"], rtol=0, atol=1e-6)


def test_case_e_has_no_examples_and_clip_examples_refuses():
    c = case("e")
    assert waveform_to_examples(c["wave"], 16000).shape == (0, 96, 64)
    with pytest.raises(DataError, match=r"clip\.wav: audio shorter than 0\.975 s"):
        clip_examples(c["wave"], 16000, name="clip.wav")


def test_very_short_wave_gives_zero_examples_not_a_crash():
    # torchvggish raises from as_strided below 240 samples; we return [0, 96, 64].
    assert waveform_to_examples(np.zeros(100), 16000).shape == (0, 96, 64)
    assert waveform_to_examples(np.zeros(0), 16000).shape == (0, 96, 64)


def test_avsbench_padding_repeats_last_example():
    c = case("d")
    got = clip_examples(c["wave"], int(c["sample_rate"]))
    assert got.shape == (5, 96, 64) and got.dtype == np.float32
    np.testing.assert_allclose(got, c["examples_avsbench5"], rtol=0, atol=1e-6)


def test_long_wave_keeps_first_five_examples():
    rng = np.random.default_rng(7)
    wave = rng.normal(0, 0.1, 7 * 16000)
    every = waveform_to_examples(wave, 16000)
    assert every.shape[0] == 7  # (1 + (112000 - 400) // 160) // 96
    np.testing.assert_array_equal(clip_examples(wave, 16000), every[:5])


def test_example_count_formula_boundaries():
    for n_samples, expected in [(15599, 0), (15600, 1), (77039, 4), (77040, 5), (80000, 5), (92400, 6)]:
        got = waveform_to_examples(np.full(n_samples, 0.01), 16000).shape[0]
        assert got == expected == frontend.expected_example_count(n_samples), n_samples


def test_silence_is_log_offset():
    got = waveform_to_examples(np.zeros(16000), 16000, dtype=np.float64)
    np.testing.assert_allclose(got, np.log(0.01), rtol=0, atol=1e-12)


def test_mel_matrix_matches_reference():
    with np.load(need(VG / "mel_matrix.npz")) as z:
        ref = z["mel_matrix"]
    got = mel_matrix()
    assert got.shape == (257, 64) and got.dtype == np.float64
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12)
    got[:] = 0  # a copy: the cached matrix is not affected
    np.testing.assert_allclose(mel_matrix(), ref, rtol=0, atol=1e-12)


def test_stereo_is_mean_of_channels():
    c = case("a")
    left = c["wave"].astype(np.float64)
    right = np.random.default_rng(1).normal(0, 0.05, left.shape)
    stereo = np.stack([left, right], axis=1)  # [samples, channels], as soundfile returns
    np.testing.assert_array_equal(
        waveform_to_examples(stereo, 16000, dtype=np.float64),
        waveform_to_examples((left + right) / 2, 16000, dtype=np.float64),
    )


def test_bad_wave_shapes_and_values_are_refused():
    with pytest.raises(ValueError, match="samples, channels"):
        waveform_to_examples(np.zeros((2, 3, 4)), 16000)
    with pytest.raises(ValueError, match="NaN"):
        waveform_to_examples(np.full(20000, np.nan), 16000)
    with pytest.raises(ValueError, match="sample rate"):
        waveform_to_examples(np.zeros(20000), 0)


# --- resampling ----------------------------------------------------------------


def _sine(freq: float, sr: int, seconds: float = 5.0) -> np.ndarray:
    return 0.5 * np.sin(2 * np.pi * freq * np.arange(int(seconds * sr)) / sr)


@pytest.mark.parametrize("sr,freq", [(44100, 440.0), (22050, 1000.0), (48000, 3000.0)])
def test_resampled_sine_is_close_to_16k_sine(sr, freq, monkeypatch):
    # The fallback filter (used only if resampy cannot be imported); not bit-exact with
    # resampy (README: compare bands 0-59 with atol 1e-2 for another resampler).
    monkeypatch.setattr(frontend, "_have_resampy", lambda: False)
    x = frontend.to_mono_16k(_sine(freq, sr), sr)
    assert len(x) == (int(5 * sr) * 16000) // sr
    got = waveform_to_examples(_sine(freq, sr), sr, dtype=np.float64)
    ref = waveform_to_examples(_sine(freq, 16000), 16000, dtype=np.float64)
    assert got.shape == ref.shape == (5, 96, 64)
    np.testing.assert_allclose(got[..., :60], ref[..., :60], rtol=0, atol=1e-2)
    assert np.abs(got - ref).mean() < 1e-3


def test_resampled_length_is_floor(monkeypatch):
    monkeypatch.setattr(frontend, "_have_resampy", lambda: False)
    assert resampler_name().startswith("scipy.resample_poly")
    for sr, n in [(44100, 44101), (8000, 8001), (22050, 12345)]:
        assert len(frontend.to_mono_16k(np.zeros(n), sr)) == (n * 16000) // sr


def test_resampler_name_follows_resampy_availability(monkeypatch):
    monkeypatch.setattr(frontend, "_have_resampy", lambda: True)
    assert resampler_name() == "resampy.kaiser_best"
    monkeypatch.setattr(frontend, "_have_resampy", lambda: False)
    assert resampler_name() == "scipy.resample_poly.kaiser_best_like"


def test_resampy_path_when_installed():
    pytest.importorskip("resampy", reason="resampy (a regular dependency in setup.cfg) is not installed")
    x = frontend.to_mono_16k(_sine(440.0, 44100), 44100)
    assert resampler_name() == "resampy.kaiser_best"
    assert len(x) == 80000
    got = waveform_to_examples(_sine(440.0, 44100), 44100, dtype=np.float64)
    ref = waveform_to_examples(_sine(440.0, 16000), 16000, dtype=np.float64)
    np.testing.assert_allclose(got[..., :60], ref[..., :60], rtol=0, atol=1e-2)


# --- wav files -------------------------------------------------------------------


def test_wav_round_trip_pcm16(tmp_path):
    c = case("a")
    path = tmp_path / "-_wznbUu3DY.wav"
    soundfile.write(str(path), c["wave"], 16000, subtype="PCM_16")
    wave, sr = read_wav(path)
    assert sr == 16000 and wave.dtype == np.float64
    np.testing.assert_array_equal(wave, c["wave"].astype(np.float64))  # quantized to k / 32768
    np.testing.assert_allclose(waveform_to_examples(wave, sr), c["examples"], rtol=0, atol=1e-6)


def test_wav_float_and_stereo(tmp_path):
    rng = np.random.default_rng(2)
    stereo = rng.uniform(-0.5, 0.5, (20000, 2))
    path = tmp_path / "s.wav"
    soundfile.write(str(path), stereo, 22050, subtype="FLOAT")
    wave, sr = read_wav(path)
    assert sr == 22050 and wave.shape == (20000, 2)
    np.testing.assert_allclose(wave, stereo, rtol=0, atol=1e-7)


def test_unreadable_wav_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_wav(tmp_path / "missing.wav")
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF....not a wav")
    with pytest.raises(DataError, match=r"bad\.wav: cannot read audio"):
        read_wav(bad)


# --- log-mel pickles -------------------------------------------------------------


def _avsbench_tensor(n: int = 4):
    """What AVSBench's preprocess_s4.py pickles: [5,1,96,64], requires_grad, last example repeated."""
    import torch

    examples = case("d")["examples_f64"][:n]
    t = torch.tensor(examples, requires_grad=True)[:, None].float()
    padded = torch.zeros(5, 1, 96, 64)
    padded[:n] = t
    padded[n:] = t[-1]
    assert padded.requires_grad
    return padded


def test_avsbench_tensor_pickle_loads(tmp_path):
    path = tmp_path / "-_wznbUu3DY.pkl"
    with open(path, "wb") as fh:
        pickle.dump(_avsbench_tensor(), fh)
    got = load_logmel_pickle(path)
    assert got.shape == (5, 96, 64) and got.dtype == np.float32
    np.testing.assert_allclose(got, case("d")["examples_avsbench5"], rtol=0, atol=1e-6)


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_numpy_pickles_load(tmp_path, protocol):
    arr = case("d")["examples_avsbench5"]
    path = tmp_path / "a.pkl"
    path.write_bytes(pickle.dumps(arr[:, None], protocol=protocol))
    np.testing.assert_array_equal(load_logmel_pickle(path), arr)


def test_torch_save_file_loads(tmp_path):
    import torch

    path = tmp_path / "t.pkl"
    torch.save(_avsbench_tensor(), path)
    np.testing.assert_allclose(load_logmel_pickle(path), case("d")["examples_avsbench5"], atol=1e-6)


def _tensor_pickle_cases():
    import torch

    g = torch.Generator().manual_seed(0)
    base = torch.randn(7, 1, 96, 64, generator=g)
    return {
        "contiguous": base[:5].clone(),
        "requires_grad": _avsbench_tensor(),
        "storage_offset": base[2:],  # a view: the whole storage is pickled, with an offset
        "transposed": torch.randn(5, 64, 96, generator=g).transpose(1, 2),  # non-contiguous strides
        "float64": base[:5].double(),
        "float16": base[:5].half(),
    }


def test_tensor_pickles_rebuilt_without_torch_equal_torch(tmp_path):
    """The numpy rebuild of tensor pickles gives the same bytes as torch's own rebuild."""
    from avsprep.audio import sources

    for name, t in _tensor_pickle_cases().items():
        data = pickle.dumps(t)
        fast = sources._NumpyUnpickler(io.BytesIO(data)).load()
        ref = t.detach().numpy()
        assert isinstance(fast, np.ndarray) and fast.dtype == ref.dtype and fast.shape == ref.shape, name
        assert fast.tobytes() == np.ascontiguousarray(ref).tobytes(), name
        path = tmp_path / f"{name}.pkl"
        path.write_bytes(data)
        assert load_logmel_pickle(path).tobytes() == np.ascontiguousarray(
            ref.reshape(5, 96, 64), np.float32).tobytes(), name


def test_bfloat16_tensor_pickle_falls_back_to_torch(tmp_path):
    import torch

    from avsprep.audio import sources

    data = pickle.dumps(torch.ones(5, 1, 96, 64, dtype=torch.bfloat16))
    with pytest.raises(sources._NeedTorch):
        sources._NumpyUnpickler(io.BytesIO(data)).load()
    path = tmp_path / "bf16.pkl"
    path.write_bytes(data)
    got = load_logmel_pickle(path)  # torch path; numpy has no bfloat16
    np.testing.assert_array_equal(got, np.ones((5, 96, 64), np.float32))


def test_tensor_pickle_outside_its_storage_is_not_read():
    """A crafted size/stride/offset past the storage end must not read foreign memory."""
    from avsprep.audio import sources

    storage = np.arange(5 * 96 * 64, dtype="<f4")
    with pytest.raises(sources._NeedTorch):
        sources._numpy_rebuild_tensor(storage, 0, (5, 96, 64), (96 * 64, 64, 2))
    with pytest.raises(sources._NeedTorch):
        sources._numpy_rebuild_tensor(storage, storage.size, (1,), (1,))
    with pytest.raises(sources._NeedTorch):
        sources._numpy_rebuild_tensor(storage, 0, (2,), (-1,))
    assert sources._numpy_rebuild_tensor(storage, 1, (2,), (3,)).tolist() == [1.0, 4.0]


def test_loading_a_tensor_pickle_does_not_import_torch(tmp_path):
    path = tmp_path / "-_wznbUu3DY.pkl"
    path.write_bytes(pickle.dumps(_avsbench_tensor()))
    code = ("import sys; from avsprep.audio import load_logmel_pickle; "
            f"a = load_logmel_pickle({str(path)!r}); "
            "assert 'torch' not in sys.modules, 'torch imported'; print(a.shape)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "(5, 96, 64)"


class _Evil:
    def __init__(self, target: Path):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"echo pwned > {self.target}",))


def test_malicious_pickle_is_refused(tmp_path):
    target = tmp_path / "PWNED"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(_Evil(target)))
    with pytest.raises(DataError, match=r"evil\.pkl: refusing to unpickle .*system.*regenerate the log-mel"):
        load_logmel_pickle(path)
    assert not target.exists()


def test_malicious_storage_bytes_are_refused(tmp_path):
    """torch's own _load_from_bytes would torch.load(weights_only=False) the nested bytes."""
    import torch
    import torch.storage

    target = tmp_path / "PWNED"
    nested = io.BytesIO()
    torch.save(_Evil(target), nested, _use_new_zipfile_serialization=False)

    class Wrap:
        def __reduce__(self):
            return (torch.storage._load_from_bytes, (nested.getvalue(),))

    path = tmp_path / "nested.pkl"
    path.write_bytes(pickle.dumps(Wrap()))
    with pytest.raises(DataError, match="refusing to unpickle"):
        load_logmel_pickle(path)
    assert not target.exists()


def test_bad_pickles_name_the_file(tmp_path):
    bad_shape = tmp_path / "shape.pkl"
    bad_shape.write_bytes(pickle.dumps(np.zeros((4, 96, 64), np.float32)))
    with pytest.raises(DataError, match=r"shape\.pkl: log-mel has shape \[4, 96, 64\]"):
        load_logmel_pickle(bad_shape)
    bad_dtype = tmp_path / "dtype.pkl"
    bad_dtype.write_bytes(pickle.dumps(np.zeros((5, 96, 64), np.int16)))
    with pytest.raises(DataError, match="dtype int16"):
        load_logmel_pickle(bad_dtype)
    not_array = tmp_path / "dict.pkl"
    not_array.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(DataError, match="holds a dict"):
        load_logmel_pickle(not_array)
    truncated = tmp_path / "trunc.pkl"
    truncated.write_bytes(pickle.dumps(np.zeros((5, 96, 64), np.float32))[:100])
    with pytest.raises(DataError, match=r"trunc\.pkl: cannot read"):
        load_logmel_pickle(truncated)
    with pytest.raises(DataError, match="not found"):
        load_logmel_pickle(tmp_path / "missing.pkl")


# --- clip_audio: pickle first, else wav -----------------------------------------


@dataclass(frozen=True)
class _Clip:
    name: str


class _FakeLayout:
    """Just the two Layout methods clip_audio uses."""

    def __init__(self, root: Path):
        self.root = root

    def logmel_path(self, clip):
        return self.root / "audio_log_mel" / f"{clip.name}.pkl"

    def wav_path(self, clip):
        return self.root / "audio_wav" / f"{clip.name}.wav"


def test_clip_audio_prefers_pickle_then_wav(tmp_path):
    layout, clip = _FakeLayout(tmp_path), _Clip("-abc_1")
    with pytest.raises(DataError, match=r"clip -abc_1: no audio"):
        clip_audio(layout, clip)

    c = case("d")
    layout.wav_path(clip).parent.mkdir()
    soundfile.write(str(layout.wav_path(clip)), c["wave"], 16000, subtype="PCM_16")
    got, source = clip_audio(layout, clip)
    assert source == "wav"
    np.testing.assert_allclose(got, c["examples_avsbench5"], rtol=0, atol=1e-6)

    marker = np.full((5, 96, 64), -1.0, np.float32)
    layout.logmel_path(clip).parent.mkdir()
    layout.logmel_path(clip).write_bytes(pickle.dumps(marker))
    got, source = clip_audio(layout, clip)
    assert source == "pickle"
    np.testing.assert_array_equal(got, marker)


def test_clip_audio_short_wav_names_the_file(tmp_path):
    layout, clip = _FakeLayout(tmp_path), _Clip("short")
    layout.wav_path(clip).parent.mkdir()
    soundfile.write(str(layout.wav_path(clip)), case("e")["wave"], 16000, subtype="PCM_16")
    with pytest.raises(DataError, match=r"short\.wav: audio shorter than 0\.975 s"):
        clip_audio(layout, clip)


def test_import_audio_does_not_import_torch():
    code = "import sys, avsprep.audio; assert 'torch' not in sys.modules, 'torch imported'; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_clip_audio_on_demo_dataset(demo_root):
    """Integration with the real Layout: the demo's pickle equals the frontend run on its wav."""
    from avsprep.datasets.avsbench import AVSBenchLayout

    layout = AVSBenchLayout.from_root(demo_root)
    clip = layout.clips()[0]
    from_pickle, source = clip_audio(layout, clip)
    assert source == "pickle" and from_pickle.shape == (5, 96, 64)
    wave, sr = read_wav(layout.wav_path(clip))
    np.testing.assert_allclose(from_pickle, clip_examples(wave, sr), rtol=0, atol=1e-6)

    class NoPickle:  # the shared demo tree must stay untouched: hide the pickle instead
        logmel_path = staticmethod(lambda c: demo_root / "absent.pkl")
        wav_path = staticmethod(layout.wav_path)

    from_wav, source = clip_audio(NoPickle(), clip)
    assert source == "wav"
    np.testing.assert_allclose(from_wav, from_pickle, rtol=0, atol=1e-6)


@pytest.mark.parametrize("sr,stereo", [(44100, False), (22050, True)])
def test_resampling_is_resampy_as_torchvggish_does(sr, stereo):
    """resampy is a regular dependency: a 44.1 kHz or 22.05 kHz stereo wave takes the torchvggish
    path (mono by mean, ``resampy.resample(x, sr, 16000)``, then the 16 kHz frontend)."""
    import resampy

    rng = np.random.default_rng(5)
    wave = rng.normal(0, 0.1, size=(int(5 * sr), 2) if stereo else int(5 * sr))
    assert resampler_name() == "resampy.kaiser_best"
    mono = wave.mean(axis=1) if stereo else wave
    ref = waveform_to_examples(resampy.resample(mono, sr, 16000), 16000, dtype=np.float64)
    got = waveform_to_examples(wave, sr, dtype=np.float64)
    assert got.shape == ref.shape == (5, 96, 64)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-4)
