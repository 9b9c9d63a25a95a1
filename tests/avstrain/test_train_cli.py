"""Feature: the avstrain command line (train, evaluate, predict) through CliRunner."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from avstrain.cli import cli
from tests.helpers.train import TINY, tiny_shards

EVAL_KEYS = {"miou", "fscore", "miou_dataset", "fscore_dataset", "clips", "frames", "protocol", "ablations",
             "per_class"}


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return tiny_shards(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def run(shards, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    res = CliRunner().invoke(cli, ["train", str(shards), "-o", str(out), "--epochs", "1", *TINY])
    assert res.exit_code == 0, res.output
    return out


@pytest.mark.parametrize("name", sorted(cli.commands))
def test_every_command_has_help_with_example(name):
    res = CliRunner().invoke(cli, [name, "--help"])
    assert res.exit_code == 0 and "Example:" in res.output


def test_train_help_lists_presets():
    out = CliRunner().invoke(cli, ["train", "-h"]).output
    for name in ("demo", "s4-resnet50-avsbench", "s4-resnet50-croplosses", "ms3-resnet50-avsbench", "s4-pvt-avsbench"):
        assert name in out


def test_python_m_avstrain_version():
    proc = subprocess.run([sys.executable, "-m", "avstrain", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.startswith("avstrain")


def test_train_writes_run(run):
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["epochs"] == 1 and cfg["channel"] == 16 and cfg["backbone"] == "tiny"
    assert (run / "best.pt").is_file() and (run / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_non_empty_run_refused(shards, run):
    res = CliRunner().invoke(cli, ["train", str(shards), "-o", str(run), "--epochs", "1", *TINY])
    assert res.exit_code == 1
    assert f"RUN {run} is not empty; use --overwrite" in res.output


def test_unknown_set_key_is_named(shards, tmp_path):
    res = CliRunner().invoke(cli, ["train", str(shards), "-o", str(tmp_path / "r"), "--set", "chanel=8", *TINY])
    assert res.exit_code == 1 and "'chanel'" in res.output and "channel" in res.output
    assert not (tmp_path / "r").exists()


def test_evaluate_json_has_every_key(shards, run):
    res = CliRunner().invoke(cli, ["evaluate", str(run / "best.pt"), str(shards), "--split", "test",
                                   "--audio-ablation", "none,shuffle,zero", "--per-class", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert EVAL_KEYS <= set(doc)
    assert doc["clips"] == 2 and doc["frames"] == 10
    assert set(doc["ablations"]) == {"shuffle", "zero"}
    for r in doc["ablations"].values():
        assert {"miou", "fscore"} <= set(r) and 0 <= r["miou"] <= 1
    assert 0 <= doc["miou"] <= 1 and 0 <= doc["fscore"] <= 1 and doc["protocol"]["batch_videos"] == 4


def test_evaluate_text_table(shards, run):
    res = CliRunner().invoke(cli, ["evaluate", str(run / "best.pt"), str(shards), "--audio-ablation", "zero",
                                   "--quiet"])
    assert res.exit_code == 0
    assert "official (batches of 4)" in res.stdout and "audio zero" in res.stdout


def test_evaluate_bad_ablation_is_usage_error(shards, run):
    res = CliRunner().invoke(cli, ["evaluate", str(run / "best.pt"), str(shards), "--audio-ablation", "loud"])
    assert res.exit_code == 2 and "loud" in res.output


def test_evaluate_corrupt_checkpoint_names_file(shards, run, tmp_path):
    bad = tmp_path / "broken.pt"
    bad.write_bytes((run / "best.pt").read_bytes()[:1000])
    res = CliRunner().invoke(cli, ["evaluate", str(bad), str(shards)])
    assert res.exit_code == 1 and "broken.pt" in res.output and "corrupt" in res.output


def test_predict_writes_gt_named_pngs(shards, run, tmp_path):
    from PIL import Image

    from avsprep.shards import ShardSet

    out = tmp_path / "masks"
    res = CliRunner().invoke(cli, ["predict", str(run / "best.pt"), str(shards), "-o", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    ss = ShardSet(shards, split="test")
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    want = sorted(f"test/{ss.classes[ss[i]['label']]}/{ss.names[i]}/{ss.names[i]}_{k}.png"
                  for i in range(len(ss)) for k in range(1, 6))
    assert files == want
    img = Image.open(out / want[0])
    assert img.mode == "L" and img.size == (224, 224)
    assert set(np.unique(np.asarray(img)).tolist()) <= {0, 255}
    again = CliRunner().invoke(cli, ["predict", str(run / "best.pt"), str(shards), "-o", str(out)])
    assert again.exit_code == 1 and "--overwrite" in again.output


def test_predict_labelimg_proposals_for_frames_without_gt_mask(shards, run, tmp_path):
    from avsprep.shards import ShardSet
    from avsprep.annotations.voc import read_voc_file

    ss = ShardSet(shards, split="train")
    out = tmp_path / "proposals"
    first = f"{ss.names[0]}_2"
    human = out / "train" / ss.classes[ss[0]["label"]] / ss.names[0] / f"{first}.txt"
    human.parent.mkdir(parents=True)
    human.write_text("")  # a human YOLO file for one frame: never touched, no XML beside it
    res = CliRunner().invoke(cli, ["predict", str(run / "best.pt"), str(shards), "--split", "train",
                                   "--labelimg", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.xml"))
    no_mask = sorted(f"train/{ss.classes[ss[i]['label']]}/{ss.names[i]}/{ss.names[i]}_{k}.xml"
                     for i in range(len(ss)) for k in range(1, 6) if not ss[i]["mask_valid"][k - 1])
    assert files == [f for f in no_mask if not f.endswith(f"/{first}.xml")] and human.read_text() == ""
    doc = read_voc_file(out / files[0])
    assert doc.readable and doc.database == "avsprep-propose:model" and not doc.verified
    assert all(b.label == files[0].split("/")[1] for b in doc.boxes)
    again = CliRunner().invoke(cli, ["predict", str(run / "best.pt"), str(shards), "--split", "train",
                                     "--labelimg", str(out)])
    assert again.exit_code == 0 and "wrote 0 box proposal(s)" in again.output
    assert CliRunner().invoke(cli, ["predict", str(run / "best.pt"), str(shards)]).exit_code == 2


def test_predict_label_studio_tasks_for_frames_without_gt_mask(shards, run, tmp_path):
    """The same proposals as Label Studio predictions, with a score per box, read back by import's reader."""
    from avsprep.annotations import label_studio as ls
    from avsprep.shards import ShardSet

    ss = ShardSet(shards, split="train")
    out = tmp_path / "ls"
    res = CliRunner().invoke(cli, ["predict", str(run / "best.pt"), str(shards), "--split", "train",
                                   "--label-studio", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    tasks = json.loads((out / "tasks.json").read_text())
    no_mask = sorted((ss.names[i], k) for i in range(len(ss)) for k in range(1, 6) if not ss[i]["mask_valid"][k - 1])
    assert sorted((t["data"]["avs_video"], t["data"]["avs_frame"]) for t in tasks) == no_mask
    pred = tasks[0]["predictions"][0]
    assert pred["model_version"] == "avstrain predict best.pt" and "annotations" not in tasks[0]
    assert tasks[0]["data"]["image"].startswith("/data/local-files/?d=s4_data/visual_frames/train/")
    assert all(0 < r["score"] <= 1 for t in tasks for r in t["predictions"][0]["result"])
    back = ls.parse_label_studio(tasks, "tasks.json", ls.Choice(accept_predictions=True))
    assert len(back.images) == len(tasks) and not back.findings
    both = CliRunner().invoke(cli, ["predict", str(run / "best.pt"), str(shards), "--labelimg", str(tmp_path / "x"),
                                    "--label-studio", str(tmp_path / "y")])
    assert both.exit_code == 2 and "not both" in both.output


def test_resume_without_last_pt(shards, tmp_path):
    res = CliRunner().invoke(cli, ["train", str(shards), "-o", str(tmp_path / "new"), "--resume"])
    assert res.exit_code == 1 and "nothing to resume" in res.output


def test_resume_keeps_saved_config(shards, tmp_path):
    out = tmp_path / "r"
    assert CliRunner().invoke(cli, ["train", str(shards), "-o", str(out), "--epochs", "1", *TINY]).exit_code == 0
    bad = CliRunner().invoke(cli, ["train", str(shards), "-o", str(out), "--resume", "--lr", "0.1"])
    assert bad.exit_code == 2 and "saved config" in bad.output
    res = CliRunner().invoke(cli, ["train", str(shards), "-o", str(out), "--resume", "--epochs", "2", "--quiet"])
    assert res.exit_code == 0, res.output
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["epochs"] == 2 and cfg["channel"] == 16 and cfg["image_size"] == 64
    assert len((out / "metrics.csv").read_text().splitlines()) == 3


@pytest.mark.parametrize("args, named", [
    (["--set", "lr=0.5"], "lr: 0.001 -> 0.5"),
    (["--set", "seed=7", "--set", "workers=0"], "seed: 123 -> 7"),
    (["--set", "w_ce=0"], "w_ce: 1.0 -> 0.0"),
    (["--preset", "demo", "--set", "channel=16", "--set", "image_size=64", "--batch-size", "2",
      "--set", "augment=false"], "augment: true -> false"),
])
def test_resume_refuses_a_set_change_naming_key_old_and_new(shards, run, args, named):
    """Issue 21: ``--resume --set lr=0.5`` was neither applied nor refused; only --epochs, --device and
    workers may change (the help and README), so any other key is refused before anything is written."""
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    res = CliRunner().invoke(cli, ["train", str(shards), "-o", str(run), "--resume", *args])
    assert res.exit_code == 2, res.output
    assert named in res.output and "saved config" in res.output
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


def test_presets_are_discoverable_from_the_command_line():
    """`avstrain presets` lists every preset file; `presets NAME` and `train --preset NAME --help` show it."""
    from avstrain.cli import cli
    from avstrain.config import PRESETS_DIR, load_preset, preset_names

    runner = CliRunner()
    listing = runner.invoke(cli, ["presets"])
    assert listing.exit_code == 0
    names = preset_names()
    assert {"demo", "s4-resnet50-avsbench", "s4-resnet50-croplosses", "ms3-resnet50-avsbench",
            "s4-pvt-avsbench"} <= set(names)
    assert [line.split()[0] for line in listing.stdout.splitlines()] == names

    shown = runner.invoke(cli, ["presets", "s4-resnet50-croplosses"])
    assert shown.stdout == (PRESETS_DIR / "s4-resnet50-croplosses.yaml").read_text(encoding="utf-8")
    assert load_preset("s4-resnet50-croplosses").w_ce == 1.0

    helped = runner.invoke(cli, ["train", "--preset", "s4-resnet50-croplosses", "--help"])
    assert helped.exit_code == 0
    assert "Preset s4-resnet50-croplosses:" in helped.stdout and "w_pairwise: 1.0" in helped.stdout
    plain = runner.invoke(cli, ["train", "--help"])
    assert "Preset s4-resnet50-croplosses:" not in plain.stdout
