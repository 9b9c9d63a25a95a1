"""avstrain convert: official AVSBench state dicts <-> avstrain checkpoints; no partial loads.

Key layouts come from ``../shared/fixtures/avsbench_official/`` (every key and shape of both
official S4/MS3 models) and ``tests/data/avsbench_official/`` (the AVSS models); mapping tests run
on meta tensors, so they cost no memory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from avstrain.models.weights import (compare_shapes, detect_backbone, head_classes_of, official_to_ours,
                                     ours_to_official, tpavi_stages_of, unwrap_state_dict)
from tests.conftest import FIXTURES, need


def official_layout(backbone: str) -> list:
    path = need(FIXTURES / "avsbench_official" / f"state_dict_{backbone}.json")
    return json.loads(path.read_text())["keys"]


def meta_official(backbone: str) -> dict:
    dt = {"float32": torch.float32, "int64": torch.int64}
    return {k: torch.empty(shape, dtype=dt[d], device="meta") for k, shape, d in official_layout(backbone)}


def our_shapes(backbone: str) -> dict:
    from avstrain.models import build_avs_model

    with torch.device("meta"):
        model = build_avs_model(backbone)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


@pytest.mark.parametrize("backbone", ["resnet50", "pvt_v2_b5"])
def test_official_keys_map_onto_every_tensor_of_our_model(backbone):
    sd = meta_official(backbone)
    assert detect_backbone(sd) == backbone
    assert tpavi_stages_of(sd) == [0, 1, 2, 3]
    m = official_to_ours(sd, backbone)
    missing, unexpected, wrong = compare_shapes(our_shapes(backbone), {k: tuple(v.shape) for k, v in m.state_dict.items()})
    assert (missing, unexpected, wrong) == ([], [], [])
    assert m.unexpected == []
    if backbone == "resnet50":
        # the unused layer3_2/layer4_2 branch: 114 + 60 tensors, 22,063,104 parameters
        assert len(m.dropped) == 174
        params = [k for k in m.dropped if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
        assert sum(sd[k].numel() for k in params) == 22_063_104
        assert len(m.state_dict) == 456
    else:
        assert m.dropped == [] and len(m.state_dict) == 1190


@pytest.mark.parametrize("backbone", ["resnet50", "pvt_v2_b5"])
def test_export_gives_exactly_the_official_keys_and_shapes(backbone):
    official = {k: tuple(s) for k, s, _ in official_layout(backbone)}
    ours = official_to_ours(meta_official(backbone), backbone).state_dict
    back = ours_to_official(ours, backbone)
    assert compare_shapes(official, {k: tuple(v.shape) for k, v in back.items()}) == ([], [], [])


def test_round_trip_keeps_every_used_tensor_and_copies_the_unused_branch():
    sd = {k: torch.full(tuple(s) if s else (), float(i)) if d == "float32" else torch.tensor(i)
          for i, (k, s, d) in enumerate(official_layout("resnet50")) if "layer" not in k or "layer1" in k
          or "layer3_" in k or "layer4_" in k}
    ours = official_to_ours(sd, "resnet50").state_dict
    back = ours_to_official(ours, "resnet50")
    for k, v in sd.items():
        if "layer3_2" in k or "layer4_2" in k:
            assert torch.equal(back[k], sd[k.replace("_2.", "_1.")]), k  # written from the used branch
        else:
            assert torch.equal(back[k], v), k


@pytest.mark.parametrize("wrap", ["plain", "module", "model", "state_dict"])
def test_unwrap_accepts_the_ways_official_files_are_passed_around(wrap):
    sd = {"resnet.conv1.weight": torch.zeros(1), "conv1.conv2d_list.0.bias": torch.zeros(1)}
    obj = {"plain": sd, "module": {f"module.{k}": v for k, v in sd.items()},
           "model": {"model": sd, "epoch": 3}, "state_dict": {"state_dict": sd}}[wrap]
    assert list(unwrap_state_dict(obj)) == list(sd)


def test_unknown_keys_are_reported_not_dropped():
    sd = meta_official("resnet50")
    sd["extra_head.weight"] = torch.empty(3, device="meta")
    assert official_to_ours(sd, "resnet50").unexpected == ["extra_head.weight"]


# --------------------------------------------------------------------------- files and CLI


@pytest.fixture(scope="module")
def official_file(tmp_path_factory):
    """A random-weight official-format S4 ResNet-50 file (plain state dict, as train.py saves)."""
    from avstrain.models import build_avs_model

    torch.manual_seed(0)
    model = build_avs_model("resnet50")
    sd = ours_to_official(model.state_dict(), "resnet50")
    order = [k for k, _, _ in official_layout("resnet50")]
    path = tmp_path_factory.mktemp("official") / "S4_best.pth"
    torch.save({k: sd[k] for k in order}, path)
    return path


@pytest.mark.slow
def test_convert_both_ways_through_the_cli(official_file, tmp_path):
    from click.testing import CliRunner

    from avstrain.checkpoints import load_checkpoint, system_from_checkpoint
    from avstrain.cli import cli

    ck, back = tmp_path / "s4.pt", tmp_path / "back.pth"
    r = CliRunner().invoke(cli, ["convert", str(official_file), "-o", str(ck)])
    assert r.exit_code == 0, r.output
    assert "loaded 456 tensors" in r.output and "dropped 174" in r.output
    src = torch.load(official_file, weights_only=True)
    model, cfg = system_from_checkpoint(load_checkpoint(ck), ck)
    assert (cfg.backbone, cfg.setting, cfg.audio_encoder) == ("resnet50", "s4", "precomputed")
    ours = model.avs.state_dict()
    assert torch.equal(ours["backbone.layer3.0.conv1.weight"], src["resnet.layer3_1.0.conv1.weight"])
    assert torch.equal(ours["decoder.output_conv.4.bias"], src["output_conv.4.bias"])

    r = CliRunner().invoke(cli, ["convert", str(ck), "-o", str(back), "--to", "official"])
    assert r.exit_code == 0, r.output
    out = torch.load(back, weights_only=True)
    official = {k: tuple(s) for k, s, _ in official_layout("resnet50")}
    assert compare_shapes(official, {k: tuple(v.shape) for k, v in out.items()}) == ([], [], [])
    assert all(torch.equal(out[k], src[k]) for k in src if "_2." not in k)  # same tensors -> same logits

    frames, audio = torch.randn(5, 3, 64, 64), torch.randn(5, 128)
    with torch.no_grad():
        a = model.avs.eval()(frames, audio)[0]
        again, _ = system_from_checkpoint(load_checkpoint(ck), ck)
        b = again.avs.eval()(frames, audio)[0]
    assert torch.equal(a, b)


def test_convert_names_a_missing_tensor_and_writes_nothing(official_file, tmp_path):
    from click.testing import CliRunner

    from avstrain.cli import cli

    sd = torch.load(official_file, weights_only=True)
    del sd["tpavi_b2.theta.weight"]
    sd = {f"module.{k}": v for k, v in sd.items()}  # DataParallel prefix is fine
    bad = tmp_path / "bad.pth"
    torch.save({"state_dict": sd}, bad)
    r = CliRunner().invoke(cli, ["convert", str(bad), "-o", str(tmp_path / "x.pt")])
    assert r.exit_code == 1
    assert "tpavi_b2.theta.weight" in r.output and "missing" in r.output
    assert not (tmp_path / "x.pt").exists()


def test_a_pickle_that_runs_code_is_refused(tmp_path):
    import pickle

    from avstrain.models.weights import ConvertError, read_weights

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    p = tmp_path / "evil.pth"
    p.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(ConvertError, match="weights_only"):
        read_weights(p)


# --------------------------------------------------------------------------- no partial load


def test_full_checkpoint_as_backbone_weights_points_to_convert(official_file, tmp_path_factory, tmp_path):
    from click.testing import CliRunner

    from avstrain.cli import cli
    from tests.helpers.train import tiny_shards

    shards = tiny_shards(tmp_path_factory.getbasetemp())
    r = CliRunner().invoke(cli, ["train", str(shards), "-o", str(tmp_path / "run"), "--preset",
                                 "s4-resnet50-avsbench", "--set", f"backbone_weights={official_file}",
                                 "--set", "allow_random_init=true", "--quiet"])
    assert r.exit_code == 1
    assert "avstrain convert" in r.output and "--init-from" in r.output


def _minus_one(sd: dict, key: str) -> dict:
    sd = dict(sd)
    del sd[key]
    return sd


def test_backbone_and_crop_weights_lacking_one_tensor_are_refused(tmp_path):
    from avsprep.common.errors import DataError
    from avstrain.models.backbones import ResNet50Backbone
    from avstrain.models.crop_head import CropHead

    p = tmp_path / "resnet50.pth"
    torch.save(_minus_one(ResNet50Backbone().state_dict(), "layer2.1.conv2.weight"), p)
    with pytest.raises(DataError, match="layer2.1.conv2.weight"):
        ResNet50Backbone().load_pretrained(p)
    with pytest.raises(DataError, match="layer2.1.conv2.weight"):
        CropHead(23, pretrained=p)


@pytest.mark.slow
def test_pvt_weights_lacking_one_tensor_are_refused(tmp_path):
    from avsprep.common.errors import DataError
    from avstrain.models.backbones import pvt_v2_b5_backbone

    with torch.device("meta"):
        keys = pvt_v2_b5_backbone().state_dict()
    sd = {k: torch.zeros(v.shape) for k, v in keys.items() if k != "stages.2.blocks.7.attn.q.weight"}
    p = tmp_path / "pvt.pth"
    torch.save(sd, p)
    with pytest.raises(DataError, match="stages.2.blocks.7.attn.q.weight"):
        pvt_v2_b5_backbone(pretrained=p)


def test_vggish_weights_lacking_one_tensor_are_refused(tmp_path):
    from avsprep.audio import VGGish, load_vggish
    from avsprep.common.errors import DataError

    p = tmp_path / "vggish.pth"
    torch.save(_minus_one(VGGish().state_dict(), "embeddings.2.weight"), p)
    with pytest.raises(DataError, match="embeddings.2.weight"):
        load_vggish(p)


def test_init_from_lacking_one_tensor_is_refused(official_file, tmp_path):
    from avsprep.common.errors import DataError
    from avstrain.checkpoints import init_from
    from avstrain.config import apply, load_preset
    from avstrain.system import build_system

    cfg = apply(load_preset("s4-resnet50-avsbench"), {"audio_encoder": "precomputed"}, "test")
    system = build_system(cfg, num_classes=23, has_vggish=True)
    assert init_from(system, official_file) == ["model"]
    src = torch.load(official_file, weights_only=True)
    assert torch.equal(system.avs.state_dict()["conv3.conv2d_list.1.weight"], src["conv3.conv2d_list.1.weight"])
    bad = tmp_path / "bad.pth"
    torch.save(_minus_one(src, "path3.resConfUnit2.conv1.bias"), bad)
    with pytest.raises(DataError, match="path3.resConfUnit2.conv1.bias"):
        init_from(system, bad)


@pytest.mark.slow
def test_convert_with_vggish_weights_and_evaluate_needs_embeddings_without(official_file, tmp_path,
                                                                           tmp_path_factory):
    from avsprep.audio import VGGish
    from avsprep.common.errors import DataError
    from avstrain.checkpoints import load_checkpoint
    from avstrain.convert import official_to_checkpoint
    from avstrain.evaluation import run_evaluate
    from tests.helpers.train import tiny_shards

    torch.manual_seed(1)
    vgg = tmp_path / "vggish.pth"
    torch.save(VGGish().state_dict(), vgg)
    with_audio = tmp_path / "a.pt"
    report = official_to_checkpoint(official_file, with_audio, vggish_weights=vgg)
    assert report["audio"] == "vggish" and report["loaded"] == 456
    ck = load_checkpoint(with_audio)
    assert ck["audio_kind"] == "vggish"
    src = torch.load(vgg, weights_only=True)
    assert all(torch.equal(ck["audio_encoder"][f"net.{k}"], v) for k, v in src.items())

    plain = tmp_path / "p.pt"
    official_to_checkpoint(official_file, plain)
    shards = tiny_shards(tmp_path_factory.getbasetemp())  # built without --vggish-weights
    with pytest.raises(DataError, match="--vggish-weights"):
        run_evaluate(plain, shards, device="cpu")


# --------------------------------------------------------------------------- numbers that cannot be weights (issue 21)


@pytest.mark.parametrize("damage", ["nan", "int64"])
def test_convert_refuses_an_official_file_with_nan_or_integer_weights(official_file, tmp_path, damage):
    from click.testing import CliRunner

    from avstrain.cli import cli

    sd = torch.load(official_file, weights_only=True)
    if damage == "nan":
        sd["tpavi_b3.W_z.0.weight"].fill_(float("nan"))
        named = f"tpavi_b3.W_z.0.weight ({sd['tpavi_b3.W_z.0.weight'].numel()} NaN/inf"
    else:  # every tensor cast to int64: every weight would load as a whole number, most as 0.0
        sd = {k: v.to(torch.int64) for k, v in sd.items()}
        named = "resnet.conv1.weight (int64, the model's is float32)"
    bad = tmp_path / "bad.pth"
    torch.save(sd, bad)
    r = CliRunner().invoke(cli, ["convert", str(bad), "-o", str(tmp_path / "x.pt")])
    assert r.exit_code == 1, r.output
    assert named in r.output and str(bad) in r.output and "Traceback" not in r.output
    assert not (tmp_path / "x.pt").exists()


def test_init_from_an_official_nan_file_is_refused_naming_the_key(official_file, tmp_path):
    from avsprep.common.errors import DataError
    from avstrain.checkpoints import init_from
    from avstrain.config import apply, load_preset
    from avstrain.system import build_system

    sd = torch.load(official_file, weights_only=True)
    sd["output_conv.4.bias"].fill_(float("inf"))
    bad = tmp_path / "inf.pth"
    torch.save(sd, bad)
    cfg = apply(load_preset("s4-resnet50-avsbench"), {"audio_encoder": "precomputed"}, "test")
    system = build_system(cfg, num_classes=23, has_vggish=True)
    with pytest.raises(DataError, match=r"decoder\.output_conv\.4\.bias \(1 NaN/inf of 1\)"):
        init_from(system, bad)


# --------------------------------------------------------------------------- AVSBench-semantic (AVSS)
# Layout: tests/data/avsbench_official/ (generated from the official code by tools/official_avss.py)

AVSS_LAYOUTS = Path(__file__).resolve().parent.parent / "data" / "avsbench_official"


def avss_layout(backbone: str) -> list:
    return json.loads((AVSS_LAYOUTS / f"avss_state_dict_{backbone}.json").read_text())["keys"]


def meta_avss(backbone: str) -> dict:
    dt = {"float32": torch.float32, "int64": torch.int64}
    return {k: torch.empty(shape, dtype=dt[d], device="meta") for k, shape, d in avss_layout(backbone)}


def our_avss_shapes(backbone: str) -> dict:
    from avstrain.models import build_avs_model

    with torch.device("meta"):
        model = build_avs_model(backbone, num_classes=71, audio_bias=False)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


@pytest.mark.parametrize("backbone", ["resnet50", "pvt_v2_b5"])
def test_official_avss_keys_map_onto_every_tensor_of_our_avss_model(backbone):
    sd = meta_avss(backbone)
    assert (detect_backbone(sd), tpavi_stages_of(sd), head_classes_of(sd)) == (backbone, [0, 1, 2, 3], 71)
    m = official_to_ours(sd, backbone)
    got = {k: tuple(v.shape) for k, v in m.state_dict.items()}
    assert compare_shapes(our_avss_shapes(backbone), got) == ([], [], [])
    assert m.unexpected == []
    assert len(m.dropped) == (174 if backbone == "resnet50" else 0)
    back = ours_to_official(m.state_dict, backbone)
    official = {k: tuple(s) for k, s, _ in avss_layout(backbone)}
    assert compare_shapes(official, {k: tuple(v.shape) for k, v in back.items()}) == ([], [], [])


def test_avss_layout_differs_from_s4_in_the_head_and_the_audio_bias_only():
    s4 = {k: tuple(s) for k, s, _ in official_layout("resnet50")}
    avss = {k: tuple(s) for k, s, _ in avss_layout("resnet50")}
    missing, extra, wrong = compare_shapes(s4, avss)
    assert sorted(missing) == [f"tpavi_b{i}.align_channel.bias" for i in range(1, 5)] and extra == []
    assert wrong == ["output_conv.4.weight", "output_conv.4.bias"]
    assert avss["output_conv.4.weight"] == (71, 32, 1, 1)


@pytest.fixture(scope="module")
def official_avss_file(tmp_path_factory):
    """A random-weight official-format AVSS ResNet-50 file, in the official key order."""
    from avstrain.models import build_avs_model

    torch.manual_seed(3)
    sd = ours_to_official(build_avs_model("resnet50", num_classes=71, audio_bias=False).state_dict(), "resnet50")
    path = tmp_path_factory.mktemp("official_avss") / "AVSS_resnet_miou_best.pth"
    torch.save({k: sd[k] for k, _, _ in avss_layout("resnet50")}, path)
    return path


@pytest.mark.parametrize("given, hint", [("s4", "--setting avss"), ("ms3", "--setting avss")])
def test_an_avss_file_given_as_s4_or_ms3_is_refused_naming_avss(official_avss_file, tmp_path, given, hint):
    from click.testing import CliRunner

    from avstrain.cli import cli

    r = CliRunner().invoke(cli, ["convert", str(official_avss_file), "-o", str(tmp_path / "x.pt"), "--setting", given])
    assert r.exit_code == 1 and hint in r.output and "71 output channel" in r.output
    assert not (tmp_path / "x.pt").exists()


def test_an_s4_file_given_as_avss_is_refused(official_file, tmp_path):
    from click.testing import CliRunner

    from avstrain.cli import cli

    r = CliRunner().invoke(cli, ["convert", str(official_file), "-o", str(tmp_path / "x.pt"), "--setting", "avss"])
    assert r.exit_code == 1 and "--setting s4" in r.output and "1 output channel" in r.output
    assert not (tmp_path / "x.pt").exists()


def test_an_avss_file_lacking_one_tensor_is_refused_naming_it(official_avss_file, tmp_path):
    from click.testing import CliRunner

    from avstrain.cli import cli

    sd = torch.load(official_avss_file, weights_only=True)
    del sd["tpavi_b3.align_channel.weight"]
    sd["tpavi_b1.align_channel.bias"] = torch.zeros(256)  # the S4 model's bias: not in the AVSS model
    bad = tmp_path / "bad.pth"
    torch.save(sd, bad)
    r = CliRunner().invoke(cli, ["convert", str(bad), "-o", str(tmp_path / "x.pt")])
    assert r.exit_code == 1, r.output
    assert "AVSS" in r.output and "tpavi_b3.align_channel.weight" in r.output
    assert "1 unexpected: tpavi_b1.align_channel.bias" in r.output
    assert not (tmp_path / "x.pt").exists()


@pytest.mark.slow
def test_avss_convert_evaluate_predict_and_back(official_avss_file, tmp_path, tmp_path_factory):
    from click.testing import CliRunner

    from avsprep.audio import VGGish
    from avsprep.build import BuildOptions, build_shards
    from avsprep.demo.avss import write_avss_demo
    from avsprep.importer import run_import
    from avstrain.checkpoints import load_checkpoint, system_from_checkpoint
    from avstrain.cli import cli

    ck, back, vgg = tmp_path / "avss.pt", tmp_path / "back.pth", tmp_path / "vggish.pth"
    torch.save(VGGish().state_dict(), vgg)
    runner = CliRunner()
    r = runner.invoke(cli, ["convert", str(official_avss_file), "-o", str(ck), "--vggish-weights", str(vgg)])
    assert r.exit_code == 0, r.output
    assert "official resnet50 AVSS model" in r.output and "loaded 452 tensors" in r.output
    ckpt = load_checkpoint(ck)
    assert ckpt["num_classes"] == 71 and len(ckpt["classes"]) == 71 and ckpt["classes"][0] == "background"
    model, cfg = system_from_checkpoint(ckpt, ck)
    assert (cfg.setting, cfg.backbone) == ("avss", "resnet50")
    src = torch.load(official_avss_file, weights_only=True)
    ours = model.avs.state_dict()
    assert torch.equal(ours["decoder.output_conv.4.weight"], src["output_conv.4.weight"])
    assert torch.equal(ours["tpavi_b2.align_channel.weight"], src["tpavi_b2.align_channel.weight"])

    base = tmp_path_factory.mktemp("avss_convert")
    write_avss_demo(base / "release", clips=3, seed=2, quiet=True)
    run_import(base / "release", base / "boxes.csv", quiet=True)
    build_shards(base / "boxes.csv", base / "release", base / "shards", BuildOptions(crop_size=32), quiet=True)
    r = runner.invoke(cli, ["evaluate", str(ck), str(base / "shards"), "--json", "--device", "cpu", "--quiet"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc["setting"] == "avss" and doc["frames"] == 30
    r = runner.invoke(cli, ["predict", str(ck), str(base / "shards"), "-o", str(tmp_path / "pred"), "--device",
                            "cpu", "--quiet"])
    assert r.exit_code == 0, r.output
    assert len(list((tmp_path / "pred" / "test").rglob("*.png"))) == 30

    r = runner.invoke(cli, ["convert", str(ck), "-o", str(back), "--to", "official"])
    assert r.exit_code == 0, r.output
    assert "avs_scripts/avss/model/ResNet_AVSModel.Pred_endecoder" in r.output and "NUM_CLASSES=71" in r.output
    out = torch.load(back, weights_only=True)
    official = {k: tuple(s) for k, s, _ in avss_layout("resnet50")}
    assert compare_shapes(official, {k: tuple(v.shape) for k, v in out.items()}) == ([], [], [])
    assert all(torch.equal(out[k], src[k]) for k in src if "_2." not in k)


def test_weights_verify_checks_an_official_avss_file_against_its_row(official_avss_file):
    from click.testing import CliRunner

    from avstrain.cli import cli

    r = CliRunner().invoke(cli, ["weights", "verify", str(official_avss_file), "--name", "avss-resnet50"])
    assert r.exit_code == 0, r.output
    assert "no hash published" in r.output and "fits the official resnet50 AVSS model (452 tensors" in r.output
    assert f"avstrain convert {official_avss_file.resolve()} -o avss-resnet50.pt --setting avss" in r.output
    r = CliRunner().invoke(cli, ["weights", "verify", str(official_avss_file), "--name", "avss-pvt"])
    assert r.exit_code == 1 and "--backbone resnet50" in r.output
