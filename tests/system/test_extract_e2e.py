"""One real clip through the whole pipeline: extract -> import -> validate -> build -> evaluate."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from tests.helpers.annotator import annotate_without_boxes

VIDEOS = Path(__file__).resolve().parents[1] / "data" / "videos"


def test_real_clips_extract_import_validate_build_evaluate(tmp_path):
    import h5py
    import torch
    from PIL import Image

    from avsprep.audio.frontend import clip_examples
    from avsprep.audio.sources import read_wav
    from avsprep.cli import cli as prep
    from avsprep.datasets.avsbench import AVSBenchLayout
    from avstrain.checkpoints import save_checkpoint
    from avstrain.cli import cli as train
    from avstrain.config import resolve_config
    from avstrain.data import ShardDataset
    from avstrain.system import build_system
    from tests.helpers.train import TINY_OVERRIDES

    run = CliRunner()
    src = tmp_path / "videos"
    src.mkdir()
    for name in ("bbb_25fps_48k_5.1.mp4", "bbb_7.288fps_22k_mono.mp4"):
        shutil.copy(VIDEOS / name, src / name)
    root = tmp_path / "root"
    r = run.invoke(prep, ["extract", str(src), "-o", str(root), "--split", "test", "--category", "race_car"])
    assert r.exit_code == 0, r.output

    # the annotator's part: a labelImg file per frame (no box: no boxes needed) and the GT masks
    layout = AVSBenchLayout.from_root(root)
    assert [c.name for c in layout.clips()] == ["bbb_25fps_48k_5.1", "bbb_7.288fps_22k_mono"]
    m = np.zeros((224, 224), np.uint8)
    m[60:160, 40:180] = 255
    annotate_without_boxes(layout, Image.fromarray(m).convert("1"))

    table = tmp_path / "boxes.csv"
    r = run.invoke(prep, ["import", "--root", str(root), "-o", str(table)])
    assert r.exit_code == 0, r.output
    r = run.invoke(prep, ["validate", str(table), "--root", str(root), "--json"])
    assert r.exit_code == 0, r.output
    shards = tmp_path / "shards"
    r = run.invoke(prep, ["build", str(table), "--root", str(root), "-o", str(shards)])
    assert r.exit_code == 0, r.output

    # the shard's log-mel is the extracted wav's, and its frames the extracted PNGs
    with h5py.File(next((shards / "test").glob("*.h5")), "r") as f:
        names = [v.decode() if isinstance(v, bytes) else v for v in f["video"][:]]
        for i, name in enumerate(names):
            clip = layout.clip_index()[name]
            wave, sr = read_wav(layout.wav_path(clip))
            assert sr == 16000 and wave.shape[1] == 2
            np.testing.assert_array_equal(f["audio_logmel"][i], clip_examples(wave, sr, 5))
            png = np.asarray(Image.open(layout.frame_path(clip, 3)).convert("RGB"))
            np.testing.assert_array_equal(f["frames"][i, 2], png)

    # the demo model (untrained, tiny) evaluates the shards
    cfg = resolve_config("demo", None, {**TINY_OVERRIDES, "device": "cpu"})
    ds = ShardDataset(shards, "test")
    torch.manual_seed(0)
    model = build_system(cfg, num_classes=len(ds.classes), has_vggish=ds.has_vggish)
    ckpt = tmp_path / "run" / "best.pt"
    ckpt.parent.mkdir()
    save_checkpoint(ckpt, model, None, cfg, epoch=1, step=1, best=0.0, history=[], classes=ds.classes)
    r = CliRunner().invoke(train, ["evaluate", str(ckpt), str(shards), "--split", "test", "--json",
                                   "--device", "cpu"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output[r.output.index("{"):])
    assert (doc["clips"], doc["frames"], doc["split"]) == (2, 10, "test")
    assert 0.0 <= doc["miou"] <= 1.0 and 0.0 <= doc["fscore"] <= 1.0
