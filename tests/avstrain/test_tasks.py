"""Feature: one table of tasks (avstrain.tasks): S4, MS3 and AVSS each supply their loss, metric,
evaluate document, text table and mask files, and nothing else in avstrain branches on the task."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from avsprep.common.errors import DataError
from avstrain.config import CHOICES, resolve_config
from avstrain.losses import LossWeights, total_loss
from avstrain.losses.avss import total_loss_avss
from avstrain.mask_files import MaskSink
from avstrain.metrics import MetricAccumulator
from avstrain.metrics.avss import AVSSMetric
from avstrain.system import build_system, compute_losses
from avstrain.tasks import TASKS, Task, check_shards, format_table

B, S, K = 2, 8, 71


def test_every_setting_has_a_complete_row():
    assert sorted(TASKS) == sorted(CHOICES["setting"])
    for name, task in TASKS.items():
        assert isinstance(task, Task) and task.name == name
        for f in dataclasses.fields(Task):
            value = getattr(task, f.name)
            assert value is not None, (name, f.name)
            if f.type == "Callable":
                assert callable(value), (name, f.name)
    assert (TASKS["s4"].steps, TASKS["ms3"].steps, TASKS["avss"].steps) == (5, 5, 10)
    assert [TASKS[n].head_classes(23) for n in ("s4", "ms3", "avss")] == [1, 1, 23]
    assert TASKS["s4"].write_masks != TASKS["ms3"].write_masks  # S4 masks sit in category folders


def _binary_batch(seed=0, t=5):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B * t, 1, S, S, generator=g)
    batch = {"masks": (torch.rand(B * t, S, S, generator=g) < 0.4).float(),
             "mask_valid": torch.tensor([True, False, False, False, False] * B),
             "label": torch.tensor([3, 7]), "index": [0, 1], "batch_size": B}
    return logits, batch


def _semantic_batch(seed=0, t=10):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B * t, K, S, S, generator=g)
    batch = {"masks": torch.randint(0, K, (B * t, S, S), generator=g).float(),
             "gt_flag": torch.tensor([1, 0] * t, dtype=torch.bool), "index": [0, 1], "batch_size": B}
    return logits, batch


SEG_ONLY = LossWeights(avm=0.0, ce=0.0, pairwise=0.0, audio=0.0)


@pytest.mark.parametrize("name", ["s4", "ms3"])
def test_binary_batches_go_to_the_binary_loss_and_metric(name):
    task = TASKS[name]
    logits, batch = _binary_batch()
    loss, report = task.loss({"logits": logits}, batch, SEG_ONLY, None)
    want, want_report = total_loss({"logits": logits}, {k: batch[k] for k in ("masks", "mask_valid", "label")},
                                   SEG_ONLY)
    assert torch.equal(loss, want) and report == want_report
    acc = task.new_metric(4, ["c%d" % i for i in range(10)])
    assert isinstance(acc, MetricAccumulator)
    task.add_to_metric(acc, logits, batch)
    res = task.metric_result(acc, ["c%d" % i for i in range(10)], True)
    direct = MetricAccumulator(batch_videos=4)
    direct.update(logits.squeeze(1), batch["masks"], [0, 1], class_ids=[3, 7],
                  frame_valid=batch["mask_valid"].reshape(B, -1))
    ref = direct.compute()
    assert (res["miou"], res["fscore"], res["frames"]) == (ref["miou"], ref["fscore"], 2)
    assert sorted(res["per_class"]) == ["c3", "c7"] and sorted(res["per_clip"]) == [0, 1]


def test_semantic_batches_go_to_the_avss_loss_and_metric():
    task = TASKS["avss"]
    logits, batch = _semantic_batch()
    loss, report = task.loss({"logits": logits}, batch, SEG_ONLY, None)
    want, want_report = total_loss_avss({"logits": logits}, batch, SEG_ONLY)
    assert torch.equal(loss, want) and report == want_report and report["seg"] > 0
    acc = task.new_metric(4, None)
    assert isinstance(acc, AVSSMetric)
    task.add_to_metric(acc, logits, batch)
    direct = AVSSMetric()
    direct.update(logits, batch["masks"].long())
    assert task.metric_result(acc, None, False) == direct.compute()


def test_the_system_dispatches_on_its_task():
    """compute_losses follows the system's task: a semantic batch through an AVSS system gives the
    AVSS loss; the model's head has the task's channels."""
    for name, channels in (("s4", 1), ("avss", 5)):
        cfg = resolve_config("demo", None, {"setting": name, "channel": 16, "crop_head": False, "w_ce": 0, "w_pairwise": 0,
                                             "w_audio": 0, "device": "cpu"})
        system = build_system(cfg, num_classes=5, has_vggish=False)
        assert system.task is TASKS[name]
        assert system.avs.decoder.output_conv[-1].out_channels == channels
    logits, batch = _semantic_batch()
    out = {"logits": logits[:, :5], "feature_maps": [], "audio_feats": []}
    batch["masks"] = batch["masks"] % 5
    loss, report = compute_losses(system, out, batch, SEG_ONLY)
    want, _ = total_loss_avss(out, batch, SEG_ONLY)
    assert torch.equal(loss, want)


def test_evaluate_documents_and_tables_per_task():
    class DS:
        split, order_source = "test", "metadata CSV"

        def __len__(self):
            return 3

    binary = TASKS["s4"].document({"miou": 0.5, "fscore": 0.6, "miou_dataset": 0.4, "fscore_dataset": 0.3,
                                   "clips": 3, "frames": 15}, DS(), 4, "fp32")
    assert list(binary) == ["miou", "fscore", "miou_dataset", "fscore_dataset", "clips", "n_clips", "frames",
                            "split", "protocol"]
    assert binary["protocol"]["batch_videos"] == 4 and "setting" not in binary
    semantic = TASKS["avss"].document({"miou": 0.1, "fscore": 0.2, "miou_seen": 0.3, "fscore_seen": 0.4,
                                       "classes_seen": 5, "frames": 30, "per_class": {}}, DS(), 4, "fp32")
    assert list(semantic)[:9] == ["miou", "fscore", "miou_seen", "fscore_seen", "classes_seen", "frames", "clips",
                                  "n_clips", "split"]
    assert list(semantic)[9:] == ["checkpoint", "setting", "protocol"] and semantic["setting"] == "avss"
    assert format_table(binary).splitlines()[0] == "test: 3 clips, 15 frames with a GT mask"
    assert "official (batches of 4)" in format_table(binary)
    text = format_table(dict(semantic, ablations={"zero": {"miou": 0.05, "fscore": 0.1}}))
    assert text.splitlines()[0] == "test: 3 clips, 30 time steps (padded v1 steps included)"
    assert "mean over the 5 classes seen" in text and "audio zero (official)" in text


def test_which_shards_serve_which_task():
    assert check_shards("avss", "avss", "S") is None
    assert check_shards("s4", "avss", "S") is None and check_shards("ms3", "avss", "S") is None
    assert check_shards("s4", "ms3", "S") == "the shards are MS3 but the config says setting=s4"
    with pytest.raises(DataError, match=r"S: setting=avss needs shards built from an AVSS release \(these are s4\)"):
        check_shards("avss", "s4", "S")


def test_no_task_branches_outside_the_table():
    """The rule of the redesign: outside tasks.py no code tests the task's name or probes a
    batch for AVSS keys to learn the task."""
    root = Path(__file__).resolve().parents[2] / "avstrain"
    pattern = re.compile(r'"gt_flag" in|[!=]= "avss"|setting in')
    hits = [f"{p.relative_to(root)}:{i}: {line.strip()}"
            for p in sorted(root.rglob("*.py")) if p.name != "tasks.py"
            for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if pattern.search(line)]
    assert hits == []


def test_binary_masks_and_palette_masks_are_written_per_task(tmp_path):
    logits, _ = _binary_batch()
    cpu_batch = {"video": ["a", "b"], "label": torch.tensor([0, 1]),
                 "mask_valid": torch.ones(B, 5, dtype=torch.bool)}
    for name, folder in (("s4", "test/cat/a"), ("ms3", "test/a")):
        sink = MaskSink(tmp_path / name, "test", name, ["cat", "dog"])
        assert TASKS[name].write_masks(logits, cpu_batch, sink) == (10, 0)
        assert sorted(p.name for p in (tmp_path / name / folder).iterdir()) == [f"a_{k}.png" for k in range(1, 6)]
    sem, _ = _semantic_batch()
    sink = MaskSink(tmp_path / "avss", "test", "avss", None)
    assert TASKS["avss"].write_masks(sem, {"video": ["u", "v"]}, sink) == (20, 0)
    assert sorted(p.name for p in (tmp_path / "avss" / "test" / "u").iterdir())[:2] == ["u_0.png", "u_1.png"]
    assert np.asarray(Image.open(tmp_path / "avss/test/u/u_0.png")).shape == (S, S, 3)
