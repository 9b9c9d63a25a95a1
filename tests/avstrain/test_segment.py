"""``avstrain segment`` on real clips (tests/data/videos, Big Buck Bunny) with a tiny checkpoint:
the output video keeps the input's frames, rate, duration and sound; a mask for every frame;
the JSON; the side-by-side; silent videos; the page in headless Chromium; the window plan."""

from __future__ import annotations

import json
import os
import shutil
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from avstrain.cli import cli
from avstrain.segment import plan as P
from tests.helpers.report import random_checkpoint

VIDEOS = Path(__file__).resolve().parents[1] / "data" / "videos"
CLIPS = ["bbb_25fps_48k_5.1.mp4", "bbb_7.288fps_22k_mono.mp4"]
SILENT = VIDEOS / "bbb_12.5fps_noaudio.mp4"


def facts(path: Path) -> dict:
    """Frame count (decoded), rate, duration and audio duration of a video."""
    with av.open(str(path)) as c:
        frames = sum(1 for _ in c.decode(video=0))
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        a = c.streams.audio[0] if c.streams.audio else None
        audio = float(a.duration * a.time_base) if a is not None else None
        return {"frames": frames, "rate": float(v.average_rate), "duration": c.duration / 1e6,
                "audio": audio, "size": (v.width, v.height)}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return random_checkpoint(tmp_path_factory.getbasetemp())[0]


@pytest.fixture(scope="module")
def seg(checkpoint, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("segment") / "out"
    res = CliRunner().invoke(cli, ["segment", str(checkpoint), *[str(VIDEOS / c) for c in CLIPS], "-o", str(out),
                                   "--audio-ablation", "zero", "--device", "cpu", "--quiet"])
    assert res.exit_code == 0, res.output
    assert res.output.strip().splitlines()[-1] == str(out / "index.html")
    return out


@pytest.mark.parametrize("clip", CLIPS)
def test_video_keeps_frames_rate_duration_and_sound(seg, clip):
    src, got = facts(VIDEOS / clip), facts(seg / clip)
    assert got["frames"] == src["frames"]
    assert got["rate"] == pytest.approx(src["rate"], rel=1e-6)
    assert abs(got["duration"] - src["duration"]) <= 1 / src["rate"]
    assert abs(got["audio"] - src["audio"]) <= 0.05, (got["audio"], src["audio"])
    assert got["size"] == src["size"]


@pytest.mark.parametrize("clip", CLIPS)
def test_a_mask_for_every_frame_and_the_json(seg, clip):
    name = Path(clip).stem
    src = facts(VIDEOS / clip)
    masks = sorted((seg / name / "masks").iterdir())
    assert [m.name for m in masks] == [f"{i:06d}.png" for i in range(src["frames"])]
    m = np.asarray(Image.open(masks[0]))
    assert m.shape == (src["size"][1], src["size"][0]) and set(np.unique(m)) <= {0, 255}
    doc = json.loads((seg / f"{name}.json").read_text())
    assert doc["frames"] == src["frames"] and doc["windows"] == 2 and doc["audio"] == "real"
    assert doc["model_fps"] == min(25, round(src["rate"]))
    assert [s["second"] for s in doc["seconds"]] == list(range(6))
    for row in doc["seconds"]:
        assert set(row) == {"second", "frame", "area", "confidence", "area_ablated", "iou_ablated"}
        assert 0 <= row["area"] <= 1 and 0 <= row["iou_ablated"] <= 1
    # the random head paints about half the frame, and zeroing the audio changes it
    assert 0.05 < np.mean([r["area"] for r in doc["seconds"]]) < 0.95
    assert doc["mean_iou_ablated"] < 1.0


def test_official_frames_are_the_official_indices(seg):
    doc = json.loads((seg / "bbb_25fps_48k_5.1.json").read_text())
    assert [r["frame"] for r in doc["seconds"]] == [23, 48, 73, 98, 123, 131]  # window 2 clamped to the last


def test_zero_ablation_writes_the_side_by_side(seg):
    for clip in CLIPS:
        name = Path(clip).stem
        src, got = facts(VIDEOS / clip), facts(seg / f"{name}_sound_vs_zero.mp4")
        assert got["frames"] == src["frames"] and got["size"] == (2 * src["size"][0], src["size"][1])
        assert len(list((seg / name / "masks_zero").iterdir())) == src["frames"]


def test_window_audio_is_what_extract_and_build_make(checkpoint, tmp_path):
    """Window 0's log-mel equals the wav of ``extract --windows``' first window (the video cut at
    5 s) read back as build reads it."""
    from avsprep.audio import read_wav
    from avsprep.extract import Job, render_clip, wav_rate
    from avsprep.extract.frames import VideoStream
    from avstrain.segment import Runner, SegmentOptions

    clip = VIDEOS / CLIPS[0]
    _, wav, findings = render_clip(Job(str(clip), "c_0_5000", "test", window=0), setting="s4")
    assert not findings
    (tmp_path / "c.wav").write_bytes(wav)
    wave_, sr = read_wav(tmp_path / "c.wav")
    runner = Runner(checkpoint, SegmentOptions(device="cpu"))
    expected = runner.layout.wav_examples(wave_, sr, "c.wav")
    with VideoStream(clip, wav_rate(runner.layout)) as stream:
        audio = np.concatenate([x for k, x in stream if k == "audio"])
        rate = stream.audio_rate
    got = runner.examples(audio, rate, 5.0, "window 0")
    np.testing.assert_array_equal(got, expected)


def test_silent_video_refused_in_one_line(checkpoint, tmp_path):
    res = CliRunner().invoke(cli, ["segment", str(checkpoint), str(SILENT), "-o", str(tmp_path / "o")])
    assert res.exit_code == 1
    line = res.output.strip()
    assert "\n" not in line and "no audio track" in line and "--allow-silent" in line and SILENT.name in line


def test_allow_silent_runs_with_zero_audio_and_says_so(checkpoint, tmp_path):
    out = tmp_path / "o"
    res = CliRunner().invoke(cli, ["segment", str(checkpoint), str(SILENT), "-o", str(out), "--allow-silent",
                                   "--fps", "2", "--device", "cpu", "--quiet"])
    assert res.exit_code == 0, res.output
    assert "no audio track" in res.output and "zeroed audio" in res.output
    doc = json.loads((out / "bbb_12.5fps_noaudio.json").read_text())
    assert doc["silent"] is True and doc["audio"].startswith("none")
    got, src = facts(out / "bbb_12.5fps_noaudio.mp4"), facts(SILENT)
    assert got["frames"] == src["frames"] and got["audio"] is None
    assert len(list((out / "bbb_12.5fps_noaudio" / "masks").iterdir())) == src["frames"]


def test_shuffle_ablation_compares_with_another_windows_sound(checkpoint, tmp_path):
    out = tmp_path / "o"
    res = CliRunner().invoke(cli, ["segment", str(checkpoint), str(VIDEOS / CLIPS[1]), "-o", str(out),
                                   "--audio-ablation", "shuffle", "--fps", "1", "--device", "cpu", "--quiet", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)["videos"][0]
    assert doc["audio_ablation"] == "shuffle" and all("iou_ablated" in r for r in doc["seconds"])
    assert not (out / "bbb_7.288fps_22k_mono_sound_vs_zero.mp4").exists()


def test_existing_output_needs_overwrite(checkpoint, seg):
    res = CliRunner().invoke(cli, ["segment", str(checkpoint), str(VIDEOS / CLIPS[0]), "-o", str(seg)])
    assert res.exit_code == 1 and "use --overwrite" in res.output


def test_page_plays_every_video_in_a_real_browser(seg, tmp_path):
    """Headless Chromium: every video reaches a playable state with the input's duration, and no
    request leaves the folder (data: URIs are the player's own control icons)."""
    pytest.importorskip("websocket", reason="websocket-client (test extra) is needed to drive Chromium")
    from tests.helpers.browser import VIDEO_FACTS, find_browser, open_page

    if find_browser() is None:
        pytest.skip("no headless Chromium (apt-get install chromium-headless-shell)")
    shot = tmp_path / "segment.png"
    res = open_page(seg / "index.html", shot, width=900, facts_js=VIDEO_FACTS)
    f = res["facts"]
    assert res["loaded"] and f["scripts"] == 0
    assert len(f["videos"]) == 4  # two overlays, two side-by-sides
    for v in f["videos"]:
        name = Path(v["src"]).name.replace("_sound_vs_zero", "")
        src = facts(VIDEOS / name)
        assert v["readyState"] >= 3 and v["error"] is None, v
        assert abs(v["duration"] - src["duration"]) <= 1 / src["rate"] + 0.05, (v, src)
    folder = seg.resolve().as_uri() + "/"
    assert all(u.startswith(folder) or u.startswith("data:") for u in res["requests"]), res["requests"]
    assert shot.stat().st_size > 10_000
    if os.environ.get("AVS_SEGMENT_SCREENSHOT"):  # keep it to look at
        shutil.copy(shot, os.environ["AVS_SEGMENT_SCREENSHOT"])


# ------------------------------------------------------------------------------------ the plan (pure)

@pytest.mark.parametrize("rate", [Fraction(25), Fraction(30000, 1001), Fraction(7288, 1000), Fraction(25, 2)])
def test_windows_partition_the_frames(rate):
    frames = int(rate * 23) + 3
    seen = [i for w in range(P.window_count(frames, rate)) for i in P.window_frames(w, rate) if i < frames]
    assert seen == list(range(frames))
    assert all(P.window_of(i, rate) == w for w in range(3) for i in P.window_frames(w, rate))


def test_dense_passes_cover_every_frame_once_at_the_video_rate():
    rate = Fraction(25)
    for w in range(3):
        passes = P.dense_passes(w, rate, 25)
        covered = sorted(i for p in passes for i in p)
        assert covered == list(P.window_frames(w, rate))
        for i in P.window_frames(w, rate):  # each frame shows its own mask
            ww, k, l = P.mask_source(i, rate, 25)
            assert ww == w and passes[k][l] == i


def test_official_pass_is_extracts_rule():
    from avsprep.extract.frames import official_indices

    assert P.official_pass(0, Fraction(30000, 1001), 29.97) == tuple(official_indices(29.97, 5))
    assert P.official_pass(1, Fraction(25), 25.0) == (148, 173, 198, 223, 248)  # extract --windows: 5 * r + ...
    assert P.default_fps(Fraction(30000, 1001)) == 25 and P.default_fps(Fraction(7288, 1000)) == 7


def test_avss_checkpoint_gives_palette_masks_and_a_legend(tmp_path):
    """An (untrained) AVSS model: 10-step passes (5 real + 5 padded), palette PNGs, the legend."""
    import torch

    from avsprep.datasets.avss_classes import AVSS_CLASSES as names
    from avsprep.datasets.avss_classes import NUM_CLASSES
    from avstrain.checkpoints import save_checkpoint
    from avstrain.config import resolve_config
    from avstrain.system import build_system

    cfg = resolve_config("avss-demo", None, {"device": "cpu", "channel": 16, "image_size": 64})
    torch.manual_seed(0)
    model = build_system(cfg, num_classes=NUM_CLASSES, has_vggish=False)
    ckpt = tmp_path / "avss.pt"
    save_checkpoint(ckpt, model, None, cfg, epoch=0, step=0, classes=names)
    out = tmp_path / "o"
    res = CliRunner().invoke(cli, ["segment", str(ckpt), str(VIDEOS / CLIPS[1]), "-o", str(out), "--fps", "1",
                                   "--device", "cpu", "--quiet"])
    assert res.exit_code == 0, res.output
    name = Path(CLIPS[1]).stem
    masks = sorted((out / name / "masks").iterdir())
    assert len(masks) == facts(VIDEOS / CLIPS[1])["frames"]
    im = Image.open(masks[0])
    assert im.mode == "P" and np.asarray(im).max() < NUM_CLASSES
    doc = json.loads((out / f"{name}.json").read_text())
    assert doc["setting"] == "avss"
    for item in doc["legend"]:
        assert 1 <= item["class"] < NUM_CLASSES and item["name"] == names[item["class"]] and len(item["rgb"]) == 3


def test_long_video_streams_in_bounded_memory(checkpoint, tmp_path):
    """A 32-s video: 7 windows, a mask for every frame, and never more than about two windows of
    frames or 15 s of audio held while it streams (measured: 2 windows of frames, about 10 s of audio)."""
    from avsprep.common.clikit import NullBar
    from avsprep.extract import wav_rate
    from avsprep.extract.frames import VideoStream
    from avstrain.segment import Runner, SegmentOptions, _Infer
    from avstrain.segment.video import VideoWriter

    clip = tmp_path / "long.mp4"
    w = VideoWriter(clip, 64, 48, Fraction(10), 16000)
    t = np.arange(32 * 16000) / 16000
    tone = (8000 * np.sin(2 * np.pi * (300 + 20 * t) * t)).astype(np.int16)
    for i in range(320):  # interleaved as real files are (sound and picture within 0.1 s)
        w.frame(np.full((48, 64, 3), (7 * i) % 256, np.uint8))
        w.audio(np.stack([tone, tone], axis=1)[1600 * i:1600 * (i + 1)])
    w.close()

    held = {"frames": 0, "audio": 0}

    class Watched(_Infer):
        def window(self, w, last):
            held["frames"] = max(held["frames"], len(self.frames))
            held["audio"] = max(held["audio"], sum(len(c) for _, c in self.audio.chunks))
            super().window(w, last)

    opts = SegmentOptions(fps=1, device="cpu")
    runner = Runner(checkpoint, opts)
    with VideoStream(clip, wav_rate(runner.layout)) as stream:
        inf = Watched(runner, stream, "long", tmp_path / "tmp", opts)
        inf.run(NullBar())
        arate = stream.audio_rate
    assert inf.count == 320 and P.window_count(320, Fraction(10)) == 7
    assert len(list((tmp_path / "tmp" / "masks").iterdir())) == 320
    assert [r["second"] for r in inf.seconds] == list(range(32))
    assert held["frames"] <= 2 * 5 * 10 + 2, held
    assert held["audio"] <= 15 * arate, held
