"""Feature: VGGish has torchvggish's layout and forward pass, and loads its weight files safely."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from avsprep.audio import VGGish, file_sha256, load_vggish
from avsprep.audio.vggish import check_hash_suffix, remap_vggish_keys
from avsprep.common.errors import DataError
from tests.conftest import FIXTURES, need

VG = FIXTURES / "vggish"


def rule_weights(keys, shapes) -> dict:
    """The README's deterministic weights: randn(seed 1000 + i), weights * sqrt(2 / fan_in), biases * 0.01."""
    out = {}
    for i, (key, shape) in enumerate(zip(keys, shapes)):
        t = torch.randn(shape, generator=torch.Generator().manual_seed(1000 + i), dtype=torch.float32)
        if key.endswith("weight"):
            t *= math.sqrt(2.0 / math.prod(shape[1:]))
        else:
            t *= 0.01
        out[key] = t
    return out


@pytest.fixture(scope="module")
def reference():
    with np.load(need(VG / "rule_weights_embedding_case_a.npz")) as z:
        embedding, keys = z["embedding"], [str(k) for k in z["keys"]]
    with np.load(need(VG / "case_a.npz")) as z:
        examples = z["examples"]
    model_keys = json.loads(need(VG / "model_keys.json").read_text())
    return {"embedding": embedding, "keys": keys, "examples": examples, "model_keys": model_keys}


@pytest.fixture(scope="module")
def weights(reference):
    shapes = {k: s for k, s, _ in reference["model_keys"]["state_dict"]}
    return rule_weights(reference["keys"], [shapes[k] for k in reference["keys"]])


@pytest.fixture(scope="module")
def model(weights):
    torch.manual_seed(0)
    m = VGGish()
    m.load_state_dict(weights, strict=True)
    return m.eval()


@pytest.fixture(scope="module")
def saved(tmp_path_factory, weights):
    """The rule weights saved once under an official-style name with a correct hash suffix."""
    folder = tmp_path_factory.mktemp("vggish")
    tmp = folder / "weights.pth"
    torch.save(weights, tmp)
    path = folder / f"vggish-{file_sha256(tmp)[:8]}.pth"
    tmp.rename(path)
    return path


def test_state_dict_layout_equals_torchvggish(model, reference):
    expected = [(k, list(s), d) for k, s, d in reference["model_keys"]["state_dict"]]
    got = [(k, list(v.shape), str(v.dtype)) for k, v in model.state_dict().items()]
    assert got == expected
    assert sum(p.numel() for p in model.parameters()) == reference["model_keys"]["num_parameters"] == 72_141_184


def test_module_list_equals_torchvggish(model, reference):
    got = [f"{name}: {mod}" for name, mod in model.named_modules() if name.count(".") == 1]
    assert got == reference["model_keys"]["module_list"]


def test_rule_weights_reproduce_torchvggish_embedding(model, reference):
    x = torch.from_numpy(reference["examples"])[:, None]  # [5, 1, 96, 64]
    with torch.no_grad():
        out = model(x)
    assert out.shape == (5, 128) and out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), reference["embedding"], rtol=1e-4, atol=1e-4)
    with torch.no_grad():  # [n, 96, 64] input is accepted too
        np.testing.assert_array_equal(model(x[:, 0]).numpy(), out.numpy())


def test_relu_off_gives_pre_activation(model, weights, reference):
    with torch.device("meta"):
        pre = VGGish(relu=False)
    pre.load_state_dict(weights, strict=True, assign=True)  # same tensors, no copy
    assert list(pre.state_dict()) == list(model.state_dict())
    x = torch.from_numpy(reference["examples"])[:, None]
    with torch.no_grad():
        raw = pre.eval()(x)
        relu = model(x)
    assert (raw < 0).any(), "rule weights give some negative pre-activations"
    assert (relu >= 0).all()
    np.testing.assert_allclose(torch.relu(raw).numpy(), relu.numpy(), rtol=0, atol=1e-6)


def test_flatten_order_is_nhwc(model, reference):
    """Flattening NCHW directly (the classic porting bug) gives a different embedding."""
    x = torch.from_numpy(reference["examples"])[:, None]
    with torch.no_grad():
        wrong = model.embeddings(model.features(x).reshape(5, -1))
    assert np.abs(wrong.numpy() - reference["embedding"]).max() > 1e-2


def test_load_vggish_saved_file(saved, reference):
    m = load_vggish(saved)
    assert not m.training
    assert all(not p.requires_grad for p in m.parameters())
    with torch.no_grad():
        out = m(torch.from_numpy(reference["examples"])[:, None])
    np.testing.assert_allclose(out.numpy(), reference["embedding"], rtol=1e-4, atol=1e-4)
    assert check_hash_suffix(saved).startswith(saved.stem[-8:])


def test_load_vggish_torchaudio_names_legacy_format(tmp_path, weights, reference):
    renamed = {k.replace("features.", "features_network.").replace("embeddings.", "embedding_network."): v
               for k, v in weights.items()}
    path = tmp_path / "vggish.pt"
    torch.save(renamed, path, _use_new_zipfile_serialization=False)  # also: the legacy (pre-1.6) format
    m = load_vggish(path, relu=False)
    with torch.no_grad():
        out = m(torch.from_numpy(reference["examples"])[:, None])
    np.testing.assert_allclose(torch.relu(out).numpy(), reference["embedding"], rtol=1e-4, atol=1e-4)


def test_remap_vggish_keys_is_pure():
    sd = {"module.features_network.0.weight": 1, "embedding_network.4.bias": 2,
          "features.3.bias": 3, "pproc.pca_means": 4}
    assert remap_vggish_keys(sd) == {"features.0.weight": 1, "embeddings.4.bias": 2, "features.3.bias": 3}
    assert "pproc.pca_means" in sd  # input untouched


def test_load_vggish_missing_key(tmp_path, reference):
    shapes = {k: s for k, s, _ in reference["model_keys"]["state_dict"]}
    small = {k: torch.zeros(1) for k in shapes if k != "embeddings.4.bias"}
    path = tmp_path / "partial.pth"
    torch.save(small, path)
    with pytest.raises(DataError, match=r"partial\.pth: not a VGGish state dict: missing keys \['embeddings\.4\.bias'\]"):
        load_vggish(path)


def test_load_vggish_wrong_shapes_and_extra_keys(tmp_path, reference):
    shapes = {k: s for k, s, _ in reference["model_keys"]["state_dict"]}
    sd = {k: torch.zeros(1) for k in shapes}
    sd["classifier.weight"] = torch.zeros(1)
    path = tmp_path / "wrong.pth"
    torch.save(sd, path)
    with pytest.raises(DataError, match=r"unexpected keys \['classifier\.weight'\].*features\.0\.weight has shape \[1\], expected \[64, 1, 3, 3\]"):
        load_vggish(path)


def test_load_vggish_garbage_and_non_dicts(tmp_path):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"\x00not a torch file" * 10)
    with pytest.raises(DataError, match=r"garbage\.pth: not a readable torch weight file"):
        load_vggish(garbage)
    listed = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], listed)
    with pytest.raises(DataError, match=r"list\.pth: holds a list, not a state dict"):
        load_vggish(listed)
    with pytest.raises(DataError, match="not found"):
        load_vggish(tmp_path / "missing.pth")


def test_load_vggish_refuses_code_in_pickles(tmp_path):
    import os

    class Evil:
        def __reduce__(self):
            return (os.system, (f"echo pwned > {tmp_path / 'PWNED'}",))

    path = tmp_path / "evil.pth"
    torch.save({"features.0.weight": Evil()}, path)
    with pytest.raises(DataError, match=r"evil\.pth: not a readable torch weight file"):
        load_vggish(path)
    assert not (tmp_path / "PWNED").exists()


def test_hash_suffix_mismatch_and_pre_fix_file(tmp_path):
    path = tmp_path / "vggish-00000000.pth"
    path.write_bytes(b"abc")
    assert file_sha256(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    with pytest.raises(DataError, match=r"SHA-256 starts with ba7816bf, but the file name says 00000000"):
        load_vggish(path)
    old = tmp_path / "vggish-cbfe8f1c.pth"
    old.write_bytes(b"abc")
    with pytest.raises(DataError, match="before its 2019 flatten-order fix.*vggish-10086976.pth"):
        load_vggish(old)
