"""Official AVSBench fidelity around the core: CSV-order test batches, fp32 evaluation, the
official loaders' GT targets, the paper presets' pretrained-file check, --resume equality."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from avstrain.cli import cli
from tests.helpers.train import TINY, tiny_shards


def _build(root: Path, out: Path) -> Path:
    from avsprep.importer import run_import
    from avsprep.build import BuildOptions, build_shards

    run_import(root, out.parent / f"{out.name}-boxes.csv", quiet=True)
    build_shards(out.parent / f"{out.name}-boxes.csv", root, out, BuildOptions(crop_size=32), quiet=True)
    return out


@pytest.fixture(scope="module")
def shuffled(tmp_path_factory):
    """A demo root whose metadata CSV is not in name order (like the real S4 CSV), its shards,
    and the CSV order of the train split."""
    from avsprep.demo import write_demo

    base = tmp_path_factory.mktemp("csvorder")
    root = base / "root"
    write_demo(root, clips=16, seed=2, quiet=True)
    meta = root / "s4_meta_data.csv"
    df = pd.read_csv(meta, dtype=str, keep_default_na=False)
    df = df.iloc[np.random.default_rng(0).permutation(len(df))]
    df.to_csv(meta, index=False)
    order = list(df[df["split"] == "train"]["name"])
    assert order != sorted(order) and len(order) > 4  # several official batches
    return root, _build(root, base / "shards"), order


def _random_checkpoint(path: Path, classes: int = 4) -> None:
    from avstrain.checkpoints import save_checkpoint
    from avstrain.config import apply, load_preset
    from avstrain.system import build_system

    cfg = apply(load_preset("demo"), {"channel": 16, "image_size": 64, "workers": 0}, "test")
    torch.manual_seed(0)
    system = build_system(cfg, num_classes=classes, has_vggish=False)
    save_checkpoint(path, system, None, cfg, epoch=0, step=0, classes=[])


def test_official_batches_follow_the_metadata_csv_order(shuffled, tmp_path):
    """miou/fscore equal the official test loop: batches of 4 videos taken in CSV order."""
    from avstrain.checkpoints import load_checkpoint, system_from_checkpoint
    from avstrain.data import ShardDataset, collate, to_device
    from avstrain.evaluation import run_evaluate
    from avstrain.metrics import f_measure, mask_iou

    _, shards, order = shuffled
    ck = tmp_path / "rand.pt"
    _random_checkpoint(ck)
    doc = run_evaluate(ck, shards, split="train", device="cpu")
    assert doc["protocol"]["order"] == "metadata CSV" and doc["protocol"]["precision"] == "fp32"

    model, cfg = system_from_checkpoint(load_checkpoint(ck), ck)
    model.eval()
    ds = ShardDataset(shards, "train")
    assert ds.names == sorted(ds.names)  # the shards are in name order...
    ious, fs = [], []
    with torch.no_grad():
        for s in range(0, len(order), 4):  # ...the official loop walks the CSV
            batch = to_device(collate([ds[ds.names.index(n)] for n in order[s:s + 4]]), torch.device("cpu"),
                              False, cfg.image_size)
            logits = model(batch, crops=False)["logits"].squeeze(1)
            keep = batch["mask_valid"]
            ious.append(mask_iou(logits[keep], batch["masks"][keep]))
            fs.append(f_measure(logits[keep], batch["masks"][keep]))
    assert doc["miou"] == pytest.approx(float(np.mean(ious)), abs=1e-5)
    assert doc["fscore"] == pytest.approx(float(np.mean(fs)), abs=1e-5)
    assert doc["clips"] == len(order)


def test_csv_order_is_recorded_in_the_manifest(shuffled):
    _, shards, order = shuffled
    man = json.loads((shards / "manifest.json").read_text())
    assert man["csv_order"]["train"] == order
    assert man["mask_decoding"] == {"pil_mode": "1", "scale": 1}


def test_old_shards_are_refused_with_rebuild(tmp_path, shuffled):
    import shutil

    from avsprep.common.errors import IntegrityError
    from avstrain.data import ShardDataset

    _, shards, _ = shuffled
    old = tmp_path / "old"
    shutil.copytree(shards, old)
    man = json.loads((old / "manifest.json").read_text())
    man["schema_version"] = 1
    (old / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(IntegrityError, match="rebuild"):
        ShardDataset(old, "train")


# --------------------------------------------------------------------------- GT decoding


def _blur_masks(root: Path) -> list[Path]:
    from PIL import Image, ImageFilter

    paths = sorted(root.glob("s4_data/gt_masks/**/*.png"))
    for p in paths:
        with Image.open(p) as im:
            im.convert("L").filter(ImageFilter.GaussianBlur(3)).save(p)
    return paths


def test_blurred_s4_masks_become_the_official_loader_targets(tmp_path):
    """S4: Image.open(p).convert('1') then ToTensor, anti-aliased edges included."""
    from PIL import Image
    from torchvision.transforms.functional import to_tensor

    from avsprep.datasets.avsbench import AVSBenchLayout
    from avsprep.demo import write_demo
    from avstrain.data import ShardDataset, collate, to_device

    root = tmp_path / "root"
    write_demo(root, clips=6, seed=1, quiet=True)
    _blur_masks(root)
    shards = _build(root, tmp_path / "shards")
    layout = AVSBenchLayout.from_root(root, "s4")
    ds = ShardDataset(shards, "test")
    checked = soft = 0
    for i, name in enumerate(ds.names):
        batch = to_device(collate([ds[i]]), torch.device("cpu"))
        clip = layout.clip_index()[name]
        for k in layout.mask_frames(clip):
            with Image.open(layout.mask_path(clip, k)) as im:
                want = to_tensor(im.convert("1"))[0]
                grey = np.asarray(im.convert("L"))
            soft += int(((grey > 0) & (grey < 255)).sum() > 0)
            assert torch.equal(batch["masks"][k - 1], want), (name, k)
            checked += 1
    assert checked and soft  # the masks really were anti-aliased


def test_ms3_masks_decode_as_P_divided_by_255(tmp_path):
    """MS3: Image.open(p).convert('P') then ToTensor (value / 255): soft targets on blurred masks."""
    from PIL import Image, ImageFilter
    from torchvision.transforms.functional import to_tensor

    from avsprep.datasets.avsbench import AVSBenchLayout
    from avsprep.shards import MASK_DECODING

    mask = np.zeros((224, 224), np.uint8)
    mask[60:160, 50:170] = 255
    p = tmp_path / "m.png"
    Image.fromarray(mask).filter(ImageFilter.GaussianBlur(4)).save(p)
    dec = MASK_DECODING["ms3"]
    with Image.open(p) as im:
        want = to_tensor(im.convert("P"))[0]
        stored = AVSBenchLayout(tmp_path, "ms3").decode_mask(im.convert(dec["pil_mode"]))
    got = torch.from_numpy(stored.copy()).float() / dec["scale"]
    assert torch.equal(got, want)
    assert ((got > 0) & (got < 1)).any()  # soft targets, as the official MS3 loader gives


# --------------------------------------------------------------------------- presets


def test_paper_preset_refuses_to_start_without_its_pretrained_files(tmp_path_factory, tmp_path):
    shards = tiny_shards(tmp_path_factory.getbasetemp())
    r = CliRunner().invoke(cli, ["train", str(shards), "-o", str(tmp_path / "run"),
                                 "--preset", "s4-resnet50-avsbench", "--quiet"])
    assert r.exit_code == 1, r.output
    assert "backbone_weights" in r.output and "vggish_weights" in r.output
    assert "allow_random_init" in r.output
    assert not (tmp_path / "run" / "last.pt").exists()


def test_allow_random_init_runs_and_is_recorded(tmp_path_factory, tmp_path):
    shards = tiny_shards(tmp_path_factory.getbasetemp())
    run = tmp_path / "run"
    small = ["--set", "backbone=tiny", "--set", "channel=16", "--set", "head_channels=16,8",
             "--set", "image_size=64", "--set", "workers=0", "--set", "max_steps_per_epoch=1",
             "--batch-size", "2", "--epochs", "1", "--quiet"]
    r = CliRunner().invoke(cli, ["train", str(shards), "-o", str(run), "--preset", "s4-resnet50-avsbench",
                                 "--set", "allow_random_init=true", *small])
    assert r.exit_code == 0, r.output
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["allow_random_init"] is True
    assert any("VGGish" in w for w in cfg["warnings"])
    r = CliRunner().invoke(cli, ["evaluate", str(run / "last.pt"), str(shards), "--json", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["warnings"] == cfg["warnings"]


def test_every_paper_preset_requires_pretrained_and_evaluates_in_fp32():
    from avstrain.config import load_preset, preset_names

    paper = [n for n in preset_names() if not n.endswith("demo")]  # demo, avss-demo: CPU demos
    assert {"s4-resnet50-avsbench", "s4-pvt-avsbench", "ms3-resnet50-avsbench", "ms3-pvt-avsbench"} <= set(paper)
    for n in paper:
        c = load_preset(n)
        assert c.require_pretrained and not c.allow_random_init and not c.eval_amp, n
    c = load_preset("ms3-pvt-avsbench")
    assert (c.setting, c.backbone, c.epochs, c.avm_weight()) == ("ms3", "pvt_v2_b5", 30, 0.5)


# --------------------------------------------------------------------------- resume


def test_resume_accepts_the_same_options_and_names_a_real_change(tmp_path_factory, tmp_path):
    shards = tiny_shards(tmp_path_factory.getbasetemp())
    run = tmp_path / "run"
    base = ["train", str(shards), "-o", str(run), *TINY, "--seed", "3", "--set", "max_steps_per_epoch=1"]
    r = CliRunner().invoke(cli, [*base, "--epochs", "1"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli, [*base, "--resume", "--epochs", "2"])
    assert r.exit_code == 0, r.output
    assert len(pd.read_csv(run / "metrics.csv")) == 2
    bad = [a if a != "3" else "4" for a in base]
    r = CliRunner().invoke(cli, [*bad, "--resume", "--epochs", "3"])
    assert r.exit_code == 2
    assert "seed: 3 -> 4" in r.output


def test_train_init_from_starts_from_the_checkpoint_with_a_fresh_optimiser(tmp_path_factory, tmp_path):
    from avstrain.checkpoints import load_checkpoint

    shards = tiny_shards(tmp_path_factory.getbasetemp())
    steps = ["--set", "max_steps_per_epoch=1", "--epochs", "1"]
    r = CliRunner().invoke(cli, ["train", str(shards), "-o", str(tmp_path / "a"), *TINY, *steps])
    assert r.exit_code == 0, r.output
    src = load_checkpoint(tmp_path / "a" / "last.pt")
    # lr 0: the weights after one step are the initial ones, so they must be the source's
    r = CliRunner().invoke(cli, ["train", str(shards), "-o", str(tmp_path / "b"), *TINY, *steps,
                                 "--lr", "0", "--init-from", str(tmp_path / "a" / "last.pt")])
    assert r.exit_code == 0, r.output
    got = load_checkpoint(tmp_path / "b" / "last.pt")
    assert got["step"] == 1 and got["epoch"] == 1  # epoch 0 + this run's one epoch
    assert json.loads((tmp_path / "b" / "config.json").read_text())["init_from"] == str(tmp_path / "a" / "last.pt")
    for k, v in src["model"].items():
        if not k.endswith(("running_mean", "running_var", "num_batches_tracked")):  # BN stats move in train mode
            assert torch.equal(got["model"][k], v), k
