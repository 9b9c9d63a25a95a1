"""Feature: training and evaluating on AVSS shards - the semantic task and the binary v1s/v1m tasks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from avstrain.cli import cli
from avstrain.losses.avss import avss_avm_kl, avss_ce

TINY = ["--set", "channel=16", "--set", "image_size=64", "--batch-size", "2", "--set", "workers=0", "--quiet",
        "--device", "cpu", "--epochs", "1"]


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    from avsprep.importer import run_import
    from avsprep.demo.avss import write_avss_demo

    base = tmp_path_factory.mktemp("avsstrain")
    root = base / "release"
    write_avss_demo(root, clips=3, seed=2, quiet=True)
    run_import(root, base / "boxes.csv", quiet=True)
    return base, root


def _build(base, root, name, subsets=None):
    from avsprep.build import BuildOptions, build_shards

    out = base / name
    if not (out / "manifest.json").is_file():
        build_shards(base / "boxes.csv", root, out, BuildOptions(crop_size=32, subsets=subsets), quiet=True)
    return out


@pytest.mark.slow
def test_semantic_train_evaluate_predict(release, tmp_path):
    base, root = release
    shards = _build(base, root, "all")
    run = tmp_path / "run"
    runner = CliRunner()
    r = runner.invoke(cli, ["train", str(shards), "-o", str(run), "--preset", "avss-demo", *TINY])
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli, ["evaluate", str(run / "best.pt"), str(shards), "--split", "test", "--json",
                            "--per-class", "--device", "cpu", "--quiet"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc["setting"] == "avss" and doc["clips"] == 3 and doc["frames"] == 30  # 3 clips x 10 steps
    assert 0 <= doc["miou"] <= doc["classes_seen"] / 71 + 1e-6
    assert doc["per_class"]["background"]["frames"] == 30  # padded steps count
    out = tmp_path / "pred"
    r = runner.invoke(cli, ["predict", str(run / "best.pt"), str(shards), "-o", str(out), "--device", "cpu",
                            "--quiet"])
    assert r.exit_code == 0, r.output
    from PIL import Image

    from avsprep.datasets.avss_classes import decode_rgb_mask

    pngs = sorted((out / "test").rglob("*.png"))
    assert len(pngs) == 30 and pngs[0].name.endswith("_0.png")
    rgb = np.asarray(Image.open(pngs[0]))
    assert rgb.shape == (224, 224, 3) and not decode_rgb_mask(rgb)[1].any()  # only palette colours


def test_binary_s4_task_from_v1s_clips(release, tmp_path):
    base, root = release
    shards = _build(base, root, "v1s", subsets="v1s")
    run = tmp_path / "run"
    runner = CliRunner()
    r = runner.invoke(cli, ["train", str(shards), "-o", str(run), "--preset", "demo", "--set", "setting=s4", *TINY])
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli, ["evaluate", str(run / "best.pt"), str(shards), "--json", "--device", "cpu", "--quiet"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc["frames"] == 5 and 0 <= doc["miou"] <= 1 and "miou_dataset" in doc  # the S4 metric, 5 real frames


def test_binary_view_refuses_v2_clips(release):
    """A binary task on AVSS shards holding v2 clips is refused when the split opens (main process,
    one line); the per-item check stays behind it."""
    from avsprep.common.errors import DataError
    from avstrain.data import ShardDataset, binary_view

    base, root = release
    shards = _build(base, root, "all")
    with pytest.raises(DataError, match=r"these hold v2 clips; build the shards with --subset v1m"):
        ShardDataset(shards, "train", task="ms3")
    ds = ShardDataset(shards, "train")  # the semantic items, viewed by hand
    items = {ds._reader[i]["subset"]: ds._reader[i] for i in range(len(ds))}
    v1m = binary_view(items["v1m"], "ms3")
    assert v1m["frames"].shape[0] == 5 and set(np.unique(v1m["masks"]).tolist()) <= {0, 1}
    assert "gt_flag" not in v1m
    with pytest.raises(DataError, match="--subset v1m"):
        binary_view(items["v2"], "ms3")


def test_binary_preset_on_avss_shards_is_one_line_before_any_worker(release, tmp_path):
    base, root = release
    shards = _build(base, root, "all")
    run = tmp_path / "run"
    args = ["workers=2" if a == "workers=0" else a for a in TINY]  # DataLoader workers would start
    r = CliRunner().invoke(cli, ["train", str(shards), "-o", str(run), "--preset", "demo", *args])
    assert r.exit_code == 1, r.output
    assert "Traceback" not in r.output and "worker" not in r.output
    assert len(r.output.strip().splitlines()) == 1 and "these hold v2 clips" in r.output, r.output
    assert not (run / "last.pt").exists() and not (run / "best.pt").exists()


@pytest.mark.parametrize("flags", [["--overlay"], ["--labelimg", "LABELIMG"], ["--overlay", "--labelimg", "LABELIMG"]])
def test_predict_overlay_and_labelimg_refused_for_avss(release, tmp_path, flags):
    from avsprep.datasets.avss_classes import AVSS_CLASSES
    from tests.helpers.train import untrained_checkpoint

    base, root = release
    shards = _build(base, root, "all")
    ckpt = untrained_checkpoint(base / "avss-untrained" / "best.pt", "avss-demo", list(AVSS_CLASSES))
    out, labelimg = tmp_path / "masks", tmp_path / "proposals"
    flags = [str(labelimg) if f == "LABELIMG" else f for f in flags]
    r = CliRunner().invoke(cli, ["predict", str(ckpt), str(shards), "-o", str(out), *flags, "--device", "cpu",
                                 "--quiet"])
    assert r.exit_code == 1, r.output
    assert len(r.output.strip().splitlines()) == 1 and "AVSS semantic model" in r.output
    assert ("--overlay" in r.output) == ("--overlay" in flags) and ("--labelimg" in r.output) == (str(labelimg) in flags)
    assert not list(tmp_path.rglob("*.png")) and not list(tmp_path.rglob("*.xml"))


def test_semantic_items_carry_official_flags(release):
    from avstrain.data import ShardDataset

    base, root = release
    ds = ShardDataset(_build(base, root, "all"), "train")
    for i in range(len(ds)):
        item, sub = ds[i], ds._reader[i]["subset"]
        assert item["frames"].shape[0] == 10
        want_gt = {"v1s": 1, "v1m": 5, "v2": 10}[sub]
        assert item["gt_flag"].sum().item() == want_gt
        assert item["frame_valid"].sum().item() == (10 if sub == "v2" else 5)
        assert (item["audio_logmel"][item["frame_valid"].sum():] == 0).all()


def test_semantic_step_and_official_metric_fast(release):
    """One optimisation step of the semantic system and its evaluation, without the CLI."""
    from avstrain.config import resolve_config
    from avstrain.data import ShardDataset, collate, make_eval_loader, to_device
    from avstrain.evaluation import evaluate
    from avstrain.system import build_system, loss_weights

    base, root = release
    shards = _build(base, root, "all")
    cfg = resolve_config(preset="avss-demo", overrides={"channel": 16, "image_size": 64, "workers": 0})
    ds = ShardDataset(shards, "train", task="avss")
    torch.manual_seed(0)
    model = build_system(cfg, num_classes=len(ds.classes), has_vggish=False)
    assert model.avs.decoder.output_conv[-1].out_channels == 71
    batch = to_device(collate([ds[0], ds[1]]), torch.device("cpu"), False, cfg.image_size)
    out = model(batch, weights=loss_weights(cfg))
    assert set(k for k, v in out["terms"].items() if v) >= {"seg", "avm", "ce", "total"}
    out["loss"].backward()
    assert model.avs.decoder.output_conv[-1].weight.grad.abs().sum() > 0
    val = ShardDataset(shards, "val", task="avss")
    res = evaluate(model, make_eval_loader(val, 4), torch.device("cpu"), cfg, classes=val.classes)
    assert res["frames"] == 10 * len(val) and 0 <= res["miou"] <= res["miou_seen"] <= 1


# ---------------------------------------------------------------- losses and model, pure

def test_avss_ce_matches_direct_computation():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 71, 6, 6, generator=g)
    masks = torch.randint(0, 71, (4, 6, 6), generator=g)
    flag = torch.tensor([1, 0, 1, 0], dtype=torch.bool)
    per_frame = [torch.nn.functional.cross_entropy(logits[i:i + 1], masks[i:i + 1]) for i in range(4)]
    want = (per_frame[0] + per_frame[2]) / 2
    assert torch.allclose(avss_ce(logits, masks, flag), want, atol=1e-6)


def test_avss_avm_uses_background_zero_as_mask():
    logits = torch.zeros(2, 71, 8, 8)
    logits[:, 0] = 5.0  # everything predicted background -> empty foreground -> visual zeros
    z = [torch.rand(2, 4, 8, 8)]
    a = [torch.rand(1, 2, 4)]
    got = avss_avm_kl(logits, z, a, torch.ones(2, dtype=torch.bool), stages=(0,))
    p = torch.softmax(a[0].reshape(2, 4), -1)
    q = torch.full((2, 4), 0.25)
    want = (p * (p.log() - q.log())).sum(-1).mean()
    assert torch.allclose(got, want, atol=1e-6)


def test_model_padded_steps_zero_logits_and_tpavi_halves():
    from avstrain.models import build_avs_model

    torch.manual_seed(0)
    m = build_avs_model(backbone="tiny", channel=16, head_channels=(8, 8), num_classes=71, audio_bias=False).eval()
    frames = torch.randn(10, 3, 64, 64)
    audio = torch.randn(10, 128)
    fv = torch.tensor([1.0] * 5 + [0.0] * 5)
    with torch.no_grad():
        out = m(frames, audio * fv[:, None], frame_valid=fv)[0]
        assert out.shape == (10, 71, 64, 64) and (out[5:] == 0).all()
        full = torch.ones(10)
        a = m(frames, audio, frame_valid=full)[0]
        f2 = frames.clone()
        f2[7] += 1.0
        b = m(f2, audio, frame_valid=full)[0]
    assert (a[:5] == b[:5]).all() and not torch.equal(a[5:], b[5:])  # TPAVI attends within 5-step groups
