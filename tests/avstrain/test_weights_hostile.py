"""Issue 21: weight files and checkpoints whose numbers cannot be weights (NaN/inf, a float tensor
cast to an integer type) are refused naming the key, and a checkpoint's config is checked before
any model is built from it. Every file here is tiny (the demo model) except the ResNet-50 ones."""

from __future__ import annotations

import pytest
import torch

from avsprep.common.errors import AvsError, DataError
from avsprep.common.tensors import bad_tensors
from avstrain.checkpoints import init_from, load_checkpoint, system_from_checkpoint
from avstrain.config import apply, load_preset
from avstrain.system import build_system
from tests.helpers.hostile import tiny_checkpoint


def tiny_system():
    cfg = apply(load_preset("demo"), {"channel": 16}, "test")
    torch.manual_seed(0)
    return build_system(cfg, num_classes=23, has_vggish=False), cfg


def first_float(sd: dict) -> str:
    return next(k for k, v in sd.items() if v.is_floating_point() and v.numel() > 1)


# --------------------------------------------------------------------------- the one check


def test_bad_tensors_names_nan_inf_and_integer_casts_but_not_integer_buffers():
    own = {"w": torch.zeros(3), "bn.num_batches_tracked": torch.tensor(0), "b": torch.zeros(2)}
    sd = {"w": torch.tensor([1.0, float("nan"), float("inf")]), "bn.num_batches_tracked": torch.tensor(7),
          "b": torch.zeros(2, dtype=torch.int64)}
    assert bad_tensors(sd, own) == ["w (2 NaN/inf of 3)", "b (int64, the model's is float32)"]
    assert bad_tensors({"w": torch.ones(3), "bn.num_batches_tracked": torch.tensor(3)}, own) == []
    assert bad_tensors({"b": torch.zeros(2, dtype=torch.int64)}) == []  # no model to compare with: only finiteness


# --------------------------------------------------------------------------- checkpoints: evaluate / predict / report


def test_a_nan_checkpoint_is_refused_naming_the_key(tmp_path):
    key = {}

    def poison(sd):
        key["k"] = first_float(sd)
        sd[key["k"]][0] = float("nan")

    p = tiny_checkpoint(tmp_path / "nan.pt", model_edit=poison)
    with pytest.raises(AvsError) as exc:
        load_checkpoint(p)
    msg = str(exc.value)
    assert "\n" not in msg and str(p) in msg and f"model.{key['k']}" in msg and "NaN" in msg


def test_an_integer_cast_checkpoint_is_refused_before_loading(tmp_path):
    key = {}

    def cast(sd):
        key["k"] = first_float(sd)
        sd[key["k"]] = sd[key["k"]].to(torch.int64)

    p = tiny_checkpoint(tmp_path / "int.pt", model_edit=cast)
    with pytest.raises(DataError) as exc:
        system_from_checkpoint(load_checkpoint(p), p)
    assert f"model.{key['k']} (int64" in str(exc.value) and str(p) in str(exc.value)


def test_evaluate_of_a_nan_checkpoint_exits_1_naming_the_key(tmp_path, tmp_path_factory):
    from click.testing import CliRunner

    from avstrain.cli import cli
    from tests.helpers.train import tiny_shards

    shards = tiny_shards(tmp_path_factory.getbasetemp())
    p = tiny_checkpoint(tmp_path / "nan.pt", model_edit=lambda sd: [v.fill_(float("nan")) for v in sd.values()
                                                                     if v.is_floating_point()])
    r = CliRunner().invoke(cli, ["evaluate", str(p), str(shards), "--split", "test"])
    assert r.exit_code == 1, r.output
    assert "NaN" in r.output and "model." in r.output and "Traceback" not in r.output


def test_a_nan_crop_head_in_a_checkpoint_is_refused_naming_the_part(tmp_path):
    def poison(ckpt):
        k = first_float(ckpt["crop_head"])
        ckpt["crop_head"][k].fill_(float("inf"))

    p = tiny_checkpoint(tmp_path / "inf.pt", edit=poison)
    with pytest.raises(AvsError, match=r"crop_head\.\S+ \(\d+ NaN/inf"):
        load_checkpoint(p)


# --------------------------------------------------------------------------- a checkpoint's config


@pytest.mark.parametrize("edit, key", [
    (lambda c: c.update(num_classes=-5), "num_classes"),
    (lambda c: c.update(num_classes="23"), "num_classes"),
    (lambda c: c["config"].update(channel=200000), "channel"),
    (lambda c: c["config"].update(channel=-5), "channel"),
    (lambda c: c["config"].update(head_channels=[128, 10**7]), "head_channels"),
    (lambda c: c["config"].update(image_size=10**6), "image_size"),
    (lambda c: c["config"].update(lr="abc"), "lr"),
    (lambda c: c.update(audio_kind="rm -rf"), "audio_kind"),
    (lambda c: c.update(config=[1, 2]), "config"),
])
def test_a_bad_checkpoint_config_is_refused_before_any_model_is_built(tmp_path, monkeypatch, edit, key):
    import avstrain.checkpoints as checkpoints

    p = tiny_checkpoint(tmp_path / "bad.pt", edit=edit)
    ckpt = load_checkpoint(p)
    built = []
    monkeypatch.setattr(checkpoints, "build_system", lambda *a, **k: built.append(1))
    with pytest.raises(AvsError) as exc:
        system_from_checkpoint(ckpt, p)
    msg = str(exc.value)
    assert built == [] and "\n" not in msg and str(p) in msg and repr(key) in msg, msg


def test_the_config_bounds_apply_to_set_too():
    from avstrain.config import ConfigError, resolve_config

    with pytest.raises(ConfigError, match="'channel' must be <= 4096"):
        resolve_config("demo", None, {"channel": "200000"})
    assert resolve_config("demo", None, {"channel": "4096"}).channel == 4096


# --------------------------------------------------------------------------- init-from, backbones, VGGish


def test_init_from_a_nan_checkpoint_names_the_key_not_the_learning_rate(tmp_path):
    key = {}

    def poison(sd):
        key["k"] = first_float(sd)
        sd[key["k"]].fill_(float("nan"))

    p = tiny_checkpoint(tmp_path / "nan.pt", model_edit=poison)
    system, _ = tiny_system()
    before = {k: v.clone() for k, v in system.avs.state_dict().items()}
    with pytest.raises(DataError, match=rf"--init-from {p}: 1 tensor\(s\) cannot be weights: {key['k']} "):
        init_from(system, p)
    assert all(torch.equal(before[k], v) for k, v in system.avs.state_dict().items())  # nothing loaded


@pytest.mark.parametrize("damage", ["nan", "int"])
def test_backbone_and_crop_weights_with_bad_numbers_are_refused(tmp_path, damage):
    from avstrain.models.backbones import ResNet50Backbone
    from avstrain.models.crop_head import CropHead

    sd = ResNet50Backbone().state_dict()
    key = "layer2.1.conv2.weight"
    sd[key] = sd[key].fill_(float("nan")) if damage == "nan" else sd[key].to(torch.int64)
    p = tmp_path / "resnet50.pth"
    torch.save(sd, p)
    why = "NaN/inf" if damage == "nan" else "int64"
    with pytest.raises(DataError, match=rf"{p}: 1 tensor\(s\) cannot be weights: {key} \(.*{why}"):
        ResNet50Backbone().load_pretrained(p)
    with pytest.raises(DataError, match=key):
        CropHead(23, pretrained=p)


@pytest.mark.parametrize("damage", ["nan", "int"])
def test_vggish_weights_with_bad_numbers_are_refused(tmp_path, damage):
    from avsprep.audio import VGGish, load_vggish

    sd = VGGish().state_dict()
    key = "embeddings.2.weight"
    sd[key] = sd[key].fill_(float("inf")) if damage == "nan" else sd[key].to(torch.int32)
    p = tmp_path / "vggish.pth"
    torch.save(sd, p)
    with pytest.raises(DataError, match=rf"{p}: .*{key} "):  # an integer type was already refused
        load_vggish(p)
