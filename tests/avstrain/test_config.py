"""Feature: one TrainConfig in three layers (defaults -> preset/file -> overrides), strict keys."""

from __future__ import annotations

import json

import pytest

from avstrain.config import (ConfigError, TrainConfig, load_preset, parse_set, preset_names, resolve_config)

EXPECTED_PRESETS = {"s4-resnet50-avsbench", "s4-resnet50-croplosses", "ms3-resnet50-avsbench",
                    "s4-pvt-avsbench", "demo"}


def test_presets_present():
    assert EXPECTED_PRESETS <= set(preset_names())


def test_precedence_defaults_preset_overrides(tmp_path):
    assert TrainConfig().lr == 1e-4 and TrainConfig().epochs == 15
    demo = load_preset("demo")
    assert demo.backbone == "tiny" and demo.audio_encoder == "tiny"
    cfg = resolve_config("demo", None, {"lr": "3e-4", "epochs": 2, "tpavi_stages": "0,2", "seed": None})
    assert cfg.lr == pytest.approx(3e-4) and cfg.epochs == 2 and cfg.tpavi_stages == [0, 2]
    assert cfg.seed == demo.seed  # None overrides are skipped
    f = tmp_path / "c.yaml"
    f.write_text("backbone: tiny\nepochs: 3\nw_ce: 0.5\n")
    cfg = resolve_config(None, f, {"epochs": "7"})
    assert (cfg.backbone, cfg.epochs, cfg.w_ce, cfg.lr) == ("tiny", 7, 0.5, 1e-4)
    j = tmp_path / "c.json"
    j.write_text(json.dumps({"setting": "ms3", "crop_head": "false", "w_ce": 0, "w_pairwise": 0, "w_audio": 0}))
    cfg = resolve_config(None, j, {})
    assert cfg.setting == "ms3" and cfg.crop_head is False and cfg.avm_weight() == 0.5


def test_unknown_key_names_it_and_lists_valid(tmp_path):
    with pytest.raises(ConfigError) as e:
        resolve_config("demo", None, {"learning_rate": 1})
    assert "'learning_rate'" in str(e.value) and "lr" in str(e.value) and "tpavi_stages" in str(e.value)
    f = tmp_path / "bad.yaml"
    f.write_text("epochz: 3\n")
    with pytest.raises(ConfigError, match="epochz.*bad.yaml"):
        resolve_config(None, f, {})


@pytest.mark.parametrize("key,value", [("epochs", "many"), ("lr", "fast"), ("crop_head", "maybe"),
                                       ("backbone", "vgg16"), ("image_size", "100"), ("tpavi_stages", "0,7"),
                                       ("batch_size", "0")])
def test_bad_values_raise(key, value):
    with pytest.raises(ConfigError, match=key):
        resolve_config(None, None, {key: value})


def test_crop_losses_need_crop_head():
    with pytest.raises(ConfigError, match="crop head"):
        resolve_config(None, None, {"crop_head": False})
    cfg = resolve_config(None, None, {"crop_head": False, "w_ce": 0, "w_pairwise": 0, "w_audio": 0})
    assert not cfg.crop_losses_on()


def test_parse_set():
    assert parse_set(["lr=1e-3", "vggish_weights=a=b.pth"]) == {"lr": "1e-3", "vggish_weights": "a=b.pth"}
    with pytest.raises(ConfigError, match="key=value"):
        parse_set(["lr"])


def test_preset_values_match_reference():
    s4 = load_preset("s4-resnet50-avsbench")
    assert (s4.setting, s4.backbone, s4.tpavi_stages, s4.lr, s4.batch_size, s4.epochs, s4.seed) == \
        ("s4", "resnet50", [0, 1, 2, 3], 1e-4, 4, 15, 123)
    assert not s4.crop_losses_on() and s4.avm_weight() == 0
    crop = load_preset("s4-resnet50-croplosses")
    assert crop.crop_losses_on() and (crop.w_ce, crop.w_pairwise, crop.w_audio) == (1.0, 1.0, 1.0)
    assert crop.crop_backbone == "resnet50" and crop.crop_logits_relu
    ms3 = load_preset("ms3-resnet50-avsbench")
    assert (ms3.setting, ms3.epochs, ms3.avm_weight()) == ("ms3", 30, 0.5)
    assert load_preset("s4-pvt-avsbench").backbone == "pvt_v2_b5"


def test_unknown_preset_lists_available():
    with pytest.raises(ConfigError, match="demo"):
        load_preset("nope")


def _build(name):
    from avstrain.system import build_system

    cfg = load_preset(name)
    return build_system(cfg, num_classes=23, has_vggish=False)


@pytest.mark.parametrize("name", ["demo", "s4-resnet50-avsbench", "s4-resnet50-croplosses", "ms3-resnet50-avsbench"])
def test_every_preset_builds_without_weights(name):
    import torch

    torch.manual_seed(0)
    model = _build(name)
    cfg = load_preset(name)
    assert (model.crop_head is not None) == cfg.crop_losses_on()
    assert model.audio_encoder is not None  # no vggish embeddings, no weights -> tiny encoder
    if name == "demo":  # forward one clip through the tiny model
        with torch.no_grad():
            logits = model.avs(torch.zeros(5, 3, 64, 64), torch.zeros(5, 128))[0]
        assert logits.shape == (5, 1, 64, 64)


@pytest.mark.slow
def test_pvt_preset_builds_without_weights():
    model = _build("s4-pvt-avsbench")
    assert sum(p.numel() for p in model.parameters()) > 50_000_000
