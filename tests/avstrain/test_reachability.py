"""Feature: which loss terms reach which modules (issue 18): the table at the start of training,
RUN/reachability.json, the one-line warning, `avstrain presets NAME --explain`, and the coupled
variants whose crop terms do reach the segmentation model."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from avstrain import reachability as reach
from avstrain.cli import cli
from avstrain.config import load_preset, preset_names
from avstrain.data import to_device
from avstrain.system import build_system, loss_weights
from tests.helpers.train import tiny_shards

SMALL = ["--set", "backbone=tiny", "--set", "crop_backbone=tiny", "--set", "channel=16", "--set", "image_size=64",
         "--batch-size", "2", "--set", "workers=0", "--epochs", "1", "--set", "max_steps_per_epoch=3",
         "--set", "max_eval_clips=1", "--set", "device=cpu", "--seed", "5"]


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return tiny_shards(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def vggish_file(tmp_path_factory):
    """A VGGish state dict standing in for the official file: the recipe's audio is frozen."""
    from avsprep.audio import VGGish

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("vggish") / "vggish.pth"
    torch.save(VGGish().state_dict(), path)
    return path


def expected_reaches_segmentation(term: str, cfg) -> bool:
    """The wiring rule the table must show: the segmentation losses always reach the model; a
    crop term only through a coupling key."""
    return (term in ("seg", "avm") or term == "mask_crop" or cfg.crop_encoder == "segmentation"
            or (term == "audio" and cfg.audio_crop_source == "tpavi"))


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_table_follows_its_coupling_keys(name):
    cfg = load_preset(name)
    doc = reach.explain(cfg)
    terms = doc["terms"]
    assert set(terms) == set(reach.active_terms(loss_weights(cfg))) and "seg" in terms
    for term in terms:
        assert (reach.segmentation_reach(terms, term) > 0) == expected_reaches_segmentation(term, cfg), term
    for term in set(terms) & {"ce", "pairwise", "audio", "mask_crop"}:
        assert terms[term]["crop_head"] > 0  # every crop term trains the crop head (its classifier or feature)
    dead = [t for t in terms if reach.segmentation_reach(terms, t) == 0]
    assert (doc["warning"] is None) == (not dead)
    if dead:
        assert doc["warning"].startswith(f"crop loss term(s) {', '.join(dead)} reach no parameter")
        assert "crop_encoder=segmentation" in doc["warning"]


def test_literal_recipe_crop_terms_reach_only_their_head():
    doc = reach.explain(load_preset("s4-resnet50-croplosses"))
    assert doc["audio_encoder"] == "precomputed"  # the README recipe's shards carry VGGish embeddings
    for term in ("ce", "pairwise", "audio"):
        reached = doc["terms"][term]
        assert reached["seg_encoder"] == reached["tpavi_decoder"] == reached["audio_encoder"] == 0
    assert doc["terms"]["ce"]["crop_head"] == doc["groups"]["crop_head"]
    assert doc["terms"]["audio"]["projections"] == doc["groups"]["projections"] == 2


def test_coupled_variants_reach_the_part_they_name():
    shared = reach.explain(load_preset("s4-resnet50-croplosses-shared-encoder"))["terms"]
    assert all(shared[t]["seg_encoder"] > 0 for t in ("ce", "pairwise", "audio"))
    tpavi = reach.explain(load_preset("s4-resnet50-croplosses-tpavi-audio"))["terms"]
    assert tpavi["audio"]["tpavi_decoder"] > 0 and tpavi["ce"]["tpavi_decoder"] == 0
    mask = reach.explain(load_preset("s4-resnet50-croplosses-mask-crop"))["terms"]
    assert mask["mask_crop"]["seg_encoder"] > 0 and mask["mask_crop"]["tpavi_decoder"] > 0


def test_check_changes_no_weight_buffer_or_rng():
    cfg = load_preset("s4-resnet50-croplosses-coupled")
    from avstrain.config import apply

    cfg = apply(cfg, reach.TINY_WIRING, "test")
    model = build_system(cfg, num_classes=23, has_vggish=True).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    batch = to_device(reach.synthetic_batch(5, False, 23), torch.device("cpu"), False, 64)
    rng = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())
    reach.reachability(model, batch, loss_weights(cfg))
    assert model.training and all(p.grad is None for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # BatchNorm stats too
    assert torch.equal(rng[0], torch.get_rng_state()) and np.array_equal(rng[1], np.random.get_state()[1])
    assert rng[2] == random.getstate()


def _train(shards, out, preset, vggish_file, caplog):
    caplog.clear()
    res = CliRunner().invoke(cli, ["train", str(shards), "-o", str(out), "--preset", preset, *SMALL,
                                   "--set", "audio_encoder=vggish", "--set", f"vggish_weights={vggish_file}"])
    assert res.exit_code == 0, res.output
    return caplog.text, torch.load(out / "last.pt", weights_only=True)


def test_literal_recipe_trains_the_baselines_segmentation_weights(shards, vggish_file, tmp_path, caplog):
    """The README's explanation, backed: same seed, the crop-loss recipe's segmentation weights
    are the baseline's, update for update; only the crop head and P learn."""
    out, crop = _train(shards, tmp_path / "crop", "s4-resnet50-croplosses", vggish_file, caplog)
    _, base = _train(shards, tmp_path / "base", "s4-resnet50-avsbench", vggish_file, caplog)
    assert "loss reachability" in out and "\nterm      seg_encoder" in out
    warnings = [line for line in out.splitlines() if "warning: crop loss term(s)" in line]
    assert len(warnings) == 1 and "ce, pairwise, audio reach no parameter of the segmentation model" in warnings[0]
    saved = json.loads((tmp_path / "crop" / "reachability.json").read_text())
    assert saved["warning"] in warnings[0] and saved["terms"]["audio"]["seg_encoder"] == 0
    assert set(crop["model"]) == set(base["model"])
    assert crop["step"] == base["step"] == 3  # the weights moved: 3 updates each (lr > 0)
    for key, value in base["model"].items():
        assert torch.equal(crop["model"][key], value), key
    assert crop["crop_head"] is not None and base["crop_head"] is None


def test_shared_encoder_variant_changes_the_segmentation_weights(shards, vggish_file, tmp_path, caplog):
    """Same seed, same data: with crop_encoder=segmentation the crop losses do move the masks' weights."""
    out, crop = _train(shards, tmp_path / "crop", "s4-resnet50-croplosses-shared-encoder", vggish_file, caplog)
    _, base = _train(shards, tmp_path / "base", "s4-resnet50-avsbench", vggish_file, caplog)
    assert "warning: crop loss" not in out
    backbone = [k for k in base["model"] if k.startswith("backbone.") and k.endswith("weight")]
    assert backbone and not any(torch.equal(crop["model"][k], base["model"][k]) for k in backbone[:1])
    assert set(crop["model"]) == set(base["model"])  # the shared trunk is saved once, in the AVS model


def test_presets_explain_cli():
    res = CliRunner().invoke(cli, ["presets", "s4-resnet50-croplosses", "--explain"])
    assert res.exit_code == 0, res.output
    assert "backbones swapped for tiny ones" in res.output and "\nce " in res.output
    assert res.output.strip().splitlines()[-1].startswith("warning: crop loss term(s) ce, pairwise, audio")
    res = CliRunner().invoke(cli, ["presets", "demo", "--explain", "--set", "crop_encoder=segmentation", "--json"])
    doc = json.loads(res.output)
    assert doc["warning"] is None and doc["terms"]["ce"]["seg_encoder"] > 0
    res = CliRunner().invoke(cli, ["presets", "--explain"])
    assert res.exit_code == 2


def test_mask_crop_consistency_is_zero_only_when_both_sides_agree():
    from avstrain.losses import mask_crop_consistency

    feat = torch.randn(2, 3, 8)
    labels = torch.tensor([[1, 1, 1], [0, 0, 0]])
    valid = torch.tensor([[True, True, False], [True, False, False]])
    sure = torch.full((6, 4), -50.0)
    sure[torch.arange(6), labels.reshape(-1)] = 50.0  # confident, right class
    assert mask_crop_consistency(feat, feat, sure, labels, valid).item() == pytest.approx(0.0, abs=1e-5)
    assert mask_crop_consistency(-feat, feat, sure, labels, valid).item() == pytest.approx(2.0, abs=1e-5)
    wrong = sure.roll(1, dims=1)
    assert mask_crop_consistency(feat, feat, wrong, labels, valid).item() > 50
    garbage = feat.clone()
    garbage[0, 2] = -feat[0, 2]  # an invalid crop may hold anything
    assert mask_crop_consistency(garbage, feat, sure, labels, valid).item() == pytest.approx(0.0, abs=1e-5)


@pytest.mark.parametrize("name,changed", [
    ("s4-resnet50-croplosses-shared-encoder", {"crop_encoder": "segmentation"}),
    ("s4-resnet50-croplosses-tpavi-audio", {"audio_crop_source": "tpavi"}),
    ("s4-resnet50-croplosses-mask-crop", {"w_mask_crop": 1.0}),
    ("s4-resnet50-croplosses-coupled", {"crop_encoder": "segmentation", "audio_crop_source": "tpavi",
                                        "w_mask_crop": 1.0}),
])
def test_coupled_presets_differ_from_the_literal_one_only_in_their_keys(name, changed):
    literal, variant = load_preset("s4-resnet50-croplosses").to_dict(), load_preset(name).to_dict()
    assert {k: v for k, v in variant.items() if literal[k] != v} == changed


def test_audio_blind_control_never_sees_the_audio():
    """``audio_blind=true`` (the control of the ablation): the masks do not depend on the audio,
    in training and evaluation, and the audio encoder receives no gradient; without it they do."""
    from avstrain.config import apply

    outs = {}
    for blind in (False, True):
        cfg = apply(load_preset("demo"), {**reach.TINY_WIRING, "audio_blind": blind}, "test")
        assert cfg.audio_blind is blind
        torch.manual_seed(0)
        model = build_system(cfg, num_classes=23, has_vggish=False).eval()
        with torch.no_grad():  # TPAVI starts as the identity (zero-initialised W_z BatchNorm): wake it up
            for p in model.parameters():
                p.add_(0.1 * torch.randn_like(p))
        batch = to_device(reach.synthetic_batch(5, False, 23), torch.device("cpu"), False, 64)
        loud = dict(batch, audio_logmel=torch.randn_like(batch["audio_logmel"]) * 3)
        with torch.no_grad():
            outs[blind] = (model(batch, crops=False)["logits"], model(loud, crops=False)["logits"])
        table = reach.reachability(model.train(), batch, loss_weights(cfg))
        outs[blind] += (table,)
    assert not torch.allclose(outs[False][0], outs[False][1])
    assert torch.equal(outs[True][0], outs[True][1])
    assert outs[True][2]["terms"]["seg"]["audio_encoder"] == 0  # no gradient reaches the audio encoder
    assert outs[False][2]["terms"]["seg"]["audio_encoder"] > 0
