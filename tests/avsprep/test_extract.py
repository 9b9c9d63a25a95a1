"""``avsprep extract``: frames and wav equal to the official preprocessing on real clips, the
release layout, findings that leave nothing behind, workers, reruns."""

from __future__ import annotations

import json
import shutil
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from avsprep.cli import cli
from avsprep.extract import audio as A
from avsprep.extract.frames import decode, official_indices, printed_fps, resize
from tests.helpers.annotator import annotate_without_boxes

VIDEOS = Path(__file__).resolve().parents[1] / "data" / "videos"
REAL = {  # file -> (frame rate as ffmpeg prints it, audio source)
    "bbb_25fps_48k_5.1.mp4": (25.0, "48 kHz 5.1"),
    "bbb_29.97fps_44k_stereo.mp4": (29.97, "44.1 kHz stereo"),
    "bbb_7.288fps_22k_mono.mp4": (7.29, "22.05 kHz mono"),
    "bbb_12.5fps_noaudio.mp4": (12.5, None),  # round(12.5) == 12
}
WITH_AUDIO = [k for k, v in REAL.items() if v[1]]


def run(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    return result


def tree(root: Path) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# ----------------------------------------------------------------------------- the index rule

def test_official_index_rule_examples():
    assert official_indices(25, 5) == [23, 48, 73, 98, 123]
    assert official_indices(printed_fps(Fraction(7288, 1000)), 5) == [6, 13, 20, 27, 34]
    assert official_indices(printed_fps(Fraction(30000, 1001)), 5) == [28, 58, 88, 118, 148]
    assert printed_fps(Fraction(30000, 1001)) == 29.97 and printed_fps(Fraction(25)) == 25.0
    assert official_indices(12.5, 2) == [11, 23]  # round(12.5) == 12 (half to even)


# ----------------------------------------------------------------------------- fidelity

@pytest.mark.parametrize("name", sorted(REAL))
def test_frames_equal_official_recipe(name):
    """Same decoded index and pixels within a mean of 1 grey level as imageio + cv2.resize."""
    pytest.importorskip("imageio_ffmpeg")
    from tests.helpers.official_extract import official_frames

    path = VIDEOS / name
    ours = decode(path, 5)
    assert ours.fps == REAL[name][0]
    picks, theirs = official_frames(path, 5)
    assert ours.indices == picks
    for a, b in zip(ours.frames, theirs):
        a = resize(a)
        assert a.shape == b.shape == (224, 224, 3)
        assert np.abs(a.astype(int) - b.astype(int)).mean() <= 1.0


def test_frame_rates_covered():
    rates = {v[0] for v in REAL.values()}
    assert len(rates) >= 3 and any(r != int(r) for r in rates)


@pytest.mark.parametrize("name", WITH_AUDIO)
def test_wav_equals_moviepy_1x(name):
    """Every sample within 1 LSB of moviepy 1.x's write_audiofile(fps=16000), whole clip."""
    pytest.importorskip("imageio_ffmpeg")
    from tests.helpers.official_extract import moviepy_wav_samples

    path = VIDEOS / name
    d = decode(path, 5)
    ours = A.moviepy_wav(d.audio, A.moviepy_duration(d.duration_us))
    ref = moviepy_wav_samples(path)
    assert ours.shape == ref.shape and ours.shape[1] == 2 and len(ours) >= int(16000 * 4.8)
    assert np.abs(ours.astype(int) - ref.astype(int)).max() <= 1


def test_moviepy_refill_offset_is_what_the_reference_sees():
    """The reference is sensitive to the buffer-refill off-by-one: plain nearest-sample picking
    (no refill slip) agrees before ~4.45 s and differs after it."""
    pytest.importorskip("imageio_ffmpeg")
    from tests.helpers.official_extract import moviepy_wav_samples

    path = VIDEOS / "bbb_29.97fps_44k_stereo.mp4"
    d = decode(path, 5)
    ref = moviepy_wav_samples(path).astype(int)
    k = np.arange(len(ref))
    naive = d.audio[np.round(44100 * ((1.0 / 16000) * k)).astype(int)].astype(float) / 32768
    naive = (32768 * np.clip(naive, -0.99, 0.99)).astype(np.int16).astype(int)
    # the refill happens for the 2,000-sample write chunk that first needs sample 200,000 (4.535 s)
    before, after = int(16000 * 4.4), int(16000 * 4.6)
    assert np.abs(naive[:before] - ref[:before]).max() <= 1
    assert np.abs(naive[after:] - ref[after:]).max() > 1


def test_moviepy_wav_short_clip_has_no_refill():
    """Under 200,000 source samples the reader never refills: pure nearest-sample picking."""
    rng = np.random.default_rng(0)
    stream = rng.integers(-20000, 20000, size=(44100 * 2, 2)).astype(np.int16)
    out = A.moviepy_wav(stream, 2.0)
    k = np.arange(32000)
    assert np.array_equal(out, stream[np.round(44100 * ((1.0 / 16000) * k)).astype(int)])


# ----------------------------------------------------------------------------- test videos

def make_video(path: Path, seconds: float, fps=Fraction(25), audio="tone", rate=44100, vfr=False):
    """A small H.264/AAC mp4 (synthetic content) for finding tests; ``vfr``: frame durations
    alternate between 20 and 60 ms."""
    import av

    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=fps)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        a = out.add_stream("aac", rate=rate, layout="stereo") if audio else None
        if vfr:
            v.codec_context.time_base = Fraction(1, 1000)
        for i in range(int(seconds * fps)):
            img = np.full((48, 64, 3), (i * 7) % 255, np.uint8)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            if vfr:
                frame.pts, frame.time_base = (i // 2) * 80 + (i % 2) * 20, Fraction(1, 1000)
            for p in v.encode(frame):
                out.mux(p)
        for p in v.encode(None):
            out.mux(p)
        if a is not None:
            n = int(seconds * rate)
            t = np.arange(n) / rate
            x = np.zeros((2, n), np.float32) if audio == "silent" else \
                np.stack([0.3 * np.sin(2 * np.pi * 440 * t)] * 2).astype(np.float32)
            frame = av.AudioFrame.from_ndarray(x, format="fltp", layout="stereo")
            frame.sample_rate, frame.pts = rate, 0
            for p in a.encode(frame):
                out.mux(p)
            for p in a.encode(None):
                out.mux(p)


# ----------------------------------------------------------------------------- the command

def test_extract_s4_layout_and_metadata(tmp_path):
    out = tmp_path / "root"
    res = run("extract", VIDEOS / "bbb_25fps_48k_5.1.mp4", VIDEOS / "bbb_7.288fps_22k_mono.mp4",
              "-o", out, "--split", "val", "--category", "race_car", "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["written"] == 2 and doc["findings"] == []
    base = out / "s4_data"
    for name in ("bbb_25fps_48k_5.1", "bbb_7.288fps_22k_mono"):
        frames = sorted((base / "visual_frames/val/race_car" / name).iterdir())
        assert [p.name for p in frames] == [f"{name}_{k}.png" for k in range(1, 6)]
        import soundfile
        info = soundfile.info(str(base / "audio_wav/val/race_car" / f"{name}.wav"))
        assert (info.samplerate, info.channels, info.subtype) == (16000, 2, "PCM_16")
    meta = (out / "s4_meta_data.csv").read_text().splitlines()
    assert meta == ["name,start,category,split", "bbb_25fps_48k_5.1,0,race_car,val",
                    "bbb_7.288fps_22k_mono,0,race_car,val"]
    # extending: a second run adds a row, keeps the others
    res = run("extract", VIDEOS / "bbb_29.97fps_44k_stereo.mp4", "-o", out, "--split", "train",
              "--category", "helicopter")
    assert res.exit_code == 0, res.output
    assert (out / "s4_meta_data.csv").read_text().splitlines()[-1] == \
        "bbb_29.97fps_44k_stereo,0,helicopter,train"
    assert len((out / "s4_meta_data.csv").read_text().splitlines()) == 4


def test_extract_pngs_are_the_official_frames(tmp_path):
    pytest.importorskip("imageio_ffmpeg")
    from PIL import Image

    from tests.helpers.official_extract import official_frames

    out = tmp_path / "root"
    assert run("extract", VIDEOS / "bbb_29.97fps_44k_stereo.mp4", "-o", out, "--split", "train",
               "--category", "race_car").exit_code == 0
    _, theirs = official_frames(VIDEOS / "bbb_29.97fps_44k_stereo.mp4", 5)
    folder = out / "s4_data/visual_frames/train/race_car/bbb_29.97fps_44k_stereo"
    for k, ref in enumerate(theirs, 1):
        png = np.asarray(Image.open(folder / f"bbb_29.97fps_44k_stereo_{k}.png").convert("RGB"))
        assert np.abs(png.astype(int) - ref.astype(int)).mean() <= 1.0


def test_extract_official_tree_with_csv_ms3(tmp_path):
    raw = tmp_path / "ms3_data" / "raw_videos"
    raw.mkdir(parents=True)
    shutil.copy(VIDEOS / "bbb_25fps_48k_5.1.mp4", raw / "clipA.mp4")
    (tmp_path / "ms3_meta_data.csv").write_text("video_id,split\nclipA,test\nclipB,train\n")
    out = tmp_path / "out"
    res = run("extract", raw, "-o", out, "--setting", "ms3", "--json")
    doc = json.loads(res.output)
    assert res.exit_code == 1  # clipB's video is missing
    assert [f["code"] for f in doc["findings"]] == ["video-missing"]
    assert doc["findings"][0]["clip"] == "clipB"
    assert sorted(p.name for p in (out / "ms3_data/visual_frames/clipA").iterdir()) == \
        [f"clipA.mp4_{k}.png" for k in range(1, 6)]
    assert (out / "ms3_data/audio_wav/test/clipA.wav").is_file()
    assert (out / "ms3_meta_data.csv").read_text().splitlines() == ["video_id,split", "clipA,test"]


def test_s4_start_column_sets_clip_length(tmp_path):
    raw = tmp_path / "s4_data" / "raw_videos" / "train" / "race_car"
    raw.mkdir(parents=True)
    shutil.copy(VIDEOS / "bbb_25fps_48k_5.1.mp4", raw / "late.mp4")
    (tmp_path / "s4_meta_data.csv").write_text("name,start,category,split\nlate,7,race_car,train\n")
    out = tmp_path / "out"
    assert run("extract", tmp_path / "s4_data" / "raw_videos", "-o", out).exit_code == 0
    folder = out / "s4_data/visual_frames/train/race_car/late"
    assert sorted(p.name for p in folder.iterdir()) == ["late_1.png", "late_2.png", "late_3.png"]


@pytest.mark.parametrize("kind,code", [
    ("broken", "video-undecodable"), ("noaudio", "video-no-audio"),
    ("short", "video-too-short"), ("silent", "audio-silent"),
])
def test_bad_videos_are_findings_and_leave_nothing(tmp_path, kind, code):
    src = tmp_path / "src"
    src.mkdir()
    bad = src / f"{kind}.mp4"
    if kind == "broken":
        bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 20)
    elif kind == "noaudio":
        shutil.copy(VIDEOS / "bbb_12.5fps_noaudio.mp4", bad)
    elif kind == "short":
        make_video(bad, 2.0)
    else:
        make_video(bad, 5.2, audio="silent")
    shutil.copy(VIDEOS / "bbb_25fps_48k_5.1.mp4", src / "good.mp4")
    out = tmp_path / "out"
    res = run("extract", src, "-o", out, "--split", "train", "--category", "race_car", "--json")
    assert res.exit_code == 1
    doc = json.loads(res.output)
    assert [(f["code"], f["clip"]) for f in doc["findings"]] == [(code, kind)]
    assert str(bad) in doc["findings"][0]["file"]
    assert doc["written"] == 1
    names = [str(p.relative_to(out)) for p in out.rglob("*")]
    assert not [n for n in names if kind in n], names
    assert kind not in (out / "s4_meta_data.csv").read_text()


def test_workers_byte_identical_and_rerun_skips(tmp_path):
    args = [VIDEOS / n for n in WITH_AUDIO]
    one, two = tmp_path / "one", tmp_path / "two"
    assert run("extract", *args, "-o", one, "--split", "train", "--category", "race_car").exit_code == 0
    assert run("extract", *args, "-o", two, "--split", "train", "--category", "race_car",
               "--workers", "2").exit_code == 0
    assert tree(one) == tree(two)
    wav = one / "s4_data/audio_wav/train/race_car/bbb_25fps_48k_5.1.wav"
    mtime = wav.stat().st_mtime_ns
    res = run("extract", *args, "-o", one, "--split", "train", "--category", "race_car", "--json")
    doc = json.loads(res.output)
    assert (doc["written"], doc["skipped"]) == (0, 3)
    assert wav.stat().st_mtime_ns == mtime
    # an unfinished clip (wav missing) is redone; --overwrite redoes all
    wav.unlink()
    doc = json.loads(run("extract", *args, "-o", one, "--split", "train", "--category", "race_car",
                         "--json").output)
    assert (doc["written"], doc["skipped"]) == (1, 2)
    doc = json.loads(run("extract", *args, "-o", one, "--split", "train", "--category", "race_car",
                         "--json", "--overwrite").output)
    assert (doc["written"], doc["skipped"]) == (3, 0)
    assert tree(one) == tree(two)


def test_audio_resample_option(tmp_path):
    from avsprep.audio.sources import read_wav

    a, b = tmp_path / "a", tmp_path / "b"
    src = VIDEOS / "bbb_29.97fps_44k_stereo.mp4"
    assert run("extract", src, "-o", a, "--split", "train", "--category", "race_car").exit_code == 0
    assert run("extract", src, "-o", b, "--split", "train", "--category", "race_car",
               "--audio-resample").exit_code == 0
    rel = "s4_data/audio_wav/train/race_car/bbb_29.97fps_44k_stereo.wav"
    wa, ra = read_wav(a / rel)
    wb, rb = read_wav(b / rel)
    assert ra == rb == 16000 and wa.shape == wb.shape
    assert not np.array_equal(wa, wb)
    assert np.corrcoef(wa[:, 0], wb[:, 0])[0, 1] > 0.9


def test_usage_errors_name_the_fix(tmp_path):
    res = run("extract", VIDEOS / "bbb_25fps_48k_5.1.mp4", "-o", tmp_path / "o", "--split", "train")
    assert res.exit_code == 1 and "--category" in res.output
    res = run("extract", VIDEOS / "bbb_25fps_48k_5.1.mp4", "-o", tmp_path / "o", "--category", "x")
    assert res.exit_code == 1 and "--split" in res.output


@pytest.mark.parametrize("angle", [90, -90, 180])
def test_rotation_metadata_applied_like_ffmpeg(tmp_path, angle):
    """A phone video with display rotation: same frames as ffmpeg's autorotate (imageio)."""
    pytest.importorskip("imageio_ffmpeg")
    import subprocess

    from tests.helpers.official_extract import ffmpeg_exe, official_frames

    rotated = tmp_path / "rot.mp4"
    subprocess.run([ffmpeg_exe(), "-y", "-loglevel", "error", "-display_rotation", str(angle), "-i",
                    str(VIDEOS / "bbb_25fps_48k_5.1.mp4"), "-c", "copy", str(rotated)], check=True)
    ours = decode(rotated, 5)
    picks, theirs = official_frames(rotated, 5)
    assert ours.indices == picks
    if angle != 180:
        assert ours.frames[0].shape[:2] == (320, 180)
    for a, b in zip(ours.frames, theirs):
        assert np.abs(resize(a).astype(int) - b.astype(int)).mean() <= 1.0


def test_windows_cut_consecutive_clips(tmp_path):
    """A 12-s video gives two 5-s clips {stem}_{start_ms}_{end_ms}; window k keeps decoded indices
    5*k*r + the official ones and the wav of the stream from 5*k s."""
    from avsprep.extract import Job, render_video

    video = tmp_path / "long.mp4"
    make_video(video, 12.0, fps=Fraction(25))
    out = tmp_path / "out"
    res = run("extract", video, "-o", out, "--windows", "--split", "train", "--category", "race_car", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["written"] == 2
    base = out / "s4_data/visual_frames/train/race_car"
    assert sorted(p.name for p in base.iterdir()) == ["long_0_5000", "long_5000_10000"]
    meta = (out / "s4_meta_data.csv").read_text().splitlines()[1:]
    assert meta == ["long_0_5000,0,race_car,train", "long_5000_10000,0,race_car,train"]
    whole = decode(video, 5, starts=(0, 5))
    assert whole.indices == [23, 48, 73, 98, 123, 148, 173, 198, 223, 248]
    from PIL import Image
    for k in range(5):
        png = np.asarray(Image.open(base / "long_5000_10000" / f"long_5000_10000_{k + 1}.png").convert("RGB"))
        assert np.array_equal(png, resize(whole.frames[5 + k]))
    from avsprep.audio.sources import read_wav
    wave, sr = read_wav(out / "s4_data/audio_wav/train/race_car/long_5000_10000.wav")
    ref = A.moviepy_wav(whole.audio[5 * 44100:], 5.0)
    assert np.array_equal(np.round(wave * 32768).astype(np.int16), ref)
    # a window rendered alone (rerun of one unfinished window) is the same clip
    (_, pngs, wav1, fs), = render_video([Job(str(video), "w", "train", "race_car", 0, 5)])
    assert not fs and wav1 == (out / "s4_data/audio_wav/train/race_car/long_5000_10000.wav").read_bytes()
    assert pngs[2] == (base / "long_5000_10000" / "long_5000_10000_3.png").read_bytes()


def test_windows_short_video_is_too_short(tmp_path):
    video = tmp_path / "short.mp4"
    make_video(video, 3.0)
    res = run("extract", video, "-o", tmp_path / "o", "--windows", "--split", "train", "--category", "x",
              "--json")
    assert res.exit_code == 1
    assert [f["code"] for f in json.loads(res.output)["findings"]] == ["video-too-short"]


def test_avss_release_extract_validate_build(tmp_path):
    """AVSS: v1s from a real clip (5 JPEGs at 320x180, 5 s of 48 kHz stereo) and a v2 window
    (10 frames, 10 s); with the annotator's masks and empty box files the tree imports, passes
    the release checks and builds."""
    import soundfile
    from PIL import Image

    from avsprep.datasets.avss import AVSSLayout

    out = tmp_path / "avss"
    res = run("extract", VIDEOS / "bbb_25fps_48k_5.1.mp4", "-o", out, "--setting", "avss", "--label", "v1s",
              "--category", "dog", "--split", "test")
    assert res.exit_code == 0, res.output
    long = tmp_path / "long.mp4"
    make_video(long, 10.5, fps=Fraction(30000, 1001))
    res = run("extract", long, "-o", out, "--setting", "avss", "--label", "v2", "--category", "woman_piano",
              "--split", "test", "--windows")
    assert res.exit_code == 0, res.output
    layout = AVSSLayout.from_root(out)
    clips = {c.name: c for c in layout.clips()}
    assert sorted(clips) == ["bbb_25fps_48k_5.1", "long_0_10000"]
    assert (out / "metadata.csv").read_text().splitlines() == [
        "vid,uid,s_min,s_sec,a_obj,split,label", "bbb_25fps_48k_5.1,bbb_25fps_48k_5.1,0,0,dog,test,v1s",
        "long,long_0_10000,0,0,woman_piano,test,v2"]
    for name, n, size in (("bbb_25fps_48k_5.1", 5, (320, 180)), ("long_0_10000", 10, (64, 48))):
        clip = clips[name]
        frames = sorted(p.name for p in layout.frame_path(clip, 0).parent.iterdir())
        assert frames == sorted(f"{i}.jpg" for i in range(n))
        assert Image.open(layout.frame_path(clip, n - 1)).size == size
        info = soundfile.info(str(layout.wav_path(clip)))
        assert (info.samplerate, info.channels, info.frames) == (48000, 2, 48000 * n)
        for i in layout.mask_frames(clip):  # the annotator's part
            mask = layout.mask_path(clip, i)
            mask.parent.mkdir(exist_ok=True)
            Image.new("RGB", size).save(mask)
    table = tmp_path / "boxes.csv"
    annotations = tmp_path / "ann"
    for name, n, _ in (("bbb_25fps_48k_5.1", 5, 0), ("long_0_10000", 10, 0)):
        clip = clips[name]
        folder = annotations / clip.subset / name / "frames"
        folder.mkdir(parents=True)
        for i in range(n):
            w, h = Image.open(layout.frame_path(clip, i)).size
            (folder / f"{i}.xml").write_text(
                f"<annotation><filename>{i}.jpg</filename><size><width>{w}</width><height>{h}</height>"
                "<depth>3</depth></size></annotation>")
    assert run("import", "--root", out, "-a", annotations, "-o", table).exit_code == 0
    res = run("validate", table, "--root", out, "--json")
    assert res.exit_code == 0, res.output
    res = run("build", table, "--root", out, "-o", tmp_path / "shards")
    assert res.exit_code == 0, res.output
    # the release checks do look at the extracted tree: a missing wav is an error
    layout.wav_path(clips["long_0_10000"]).unlink()
    res = run("validate", table, "--root", out, "--json")
    assert res.exit_code == 1 and "audio-missing" in res.output


def test_ms3_output_imports_validates_builds(tmp_path):
    from PIL import Image

    from avsprep.datasets.avsbench import AVSBenchLayout

    out = tmp_path / "ms3"
    res = run("extract", VIDEOS / "bbb_29.97fps_44k_stereo.mp4", "-o", out, "--setting", "ms3",
              "--split", "val")
    assert res.exit_code == 0, res.output
    layout = AVSBenchLayout.from_root(out)  # setting inferred from ms3_meta_data.csv
    assert layout.setting == "ms3"
    for clip in layout.clips():
        assert [layout.frame_path(clip, k).name for k in range(1, 6)] == [f"{clip.name}.mp4_{k}.png" for k in range(1, 6)]
    annotate_without_boxes(layout, Image.new("1", (224, 224)))
    table = tmp_path / "boxes.csv"
    assert run("import", "--root", out, "-o", table).exit_code == 0
    assert run("validate", table, "--root", out).exit_code == 0
    res = run("build", table, "--root", out, "-o", tmp_path / "shards")
    assert res.exit_code == 0, res.output


def test_variable_frame_rate_is_a_warning_and_the_clip_is_written(tmp_path):
    video = tmp_path / "vfr.mp4"
    make_video(video, 5.5, vfr=True)
    res = run("extract", video, "-o", tmp_path / "o", "--split", "train", "--category", "race_car", "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert [(f["code"], f["severity"]) for f in doc["findings"]] == [("video-variable-rate", "warning")]
    assert doc["written"] == 1
    assert "vfr" in (tmp_path / "o" / "s4_meta_data.csv").read_text()
    assert not decode(VIDEOS / "bbb_25fps_48k_5.1.mp4", 5).variable_rate


def reencode(src: Path, dst: Path, rate: int, layout: str, codec: str, vcodec: str = "libx264"):
    """The real clip with its audio re-encoded (``codec`` at ``rate``/``layout``) into ``dst``."""
    import av

    with av.open(str(src)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        fps = c.streams.video[0].average_rate
    with av.open(str(src)) as c:
        rs = av.AudioResampler(format="s16" if codec.startswith("pcm") else "fltp", layout=layout, rate=rate)
        audio = [g for f in c.decode(audio=0) for g in rs.resample(f)] + list(rs.resample(None))
    with av.open(str(dst), "w") as o:
        v = o.add_stream(vcodec, rate=fps)
        v.width, v.height, v.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        a = o.add_stream(codec, rate=rate, layout=layout)
        for f in frames:
            for p in v.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                o.mux(p)
        for p in v.encode(None):
            o.mux(p)
        for g in audio:
            g.pts = None
            for p in a.encode(g):
                o.mux(p)
        for p in a.encode(None):
            o.mux(p)


@pytest.mark.parametrize("rate,layout,codec,ext,vcodec", [(8000, "mono", "pcm_s16le", "mkv", "libx264"),
                                                           (48000, "stereo", "libopus", "webm", "libvpx"),
                                                           (32000, "5.1", "aac", "mov", "libx264"),
                                                           (22050, "stereo", "libmp3lame", "avi", "mpeg4")])
def test_wav_equals_moviepy_1x_other_rates_and_containers(tmp_path, rate, layout, codec, ext, vcodec):
    """Other containers and codecs (mkv/PCM 8 kHz mono, webm/VP8+Opus, mov/AAC 5.1 32 kHz,
    avi/MPEG-4+MP3): frames and wav as the official recipe makes them."""
    pytest.importorskip("imageio_ffmpeg")
    import av

    from tests.helpers.official_extract import moviepy_wav_samples

    if codec not in av.codecs_available or vcodec not in av.codecs_available:
        pytest.skip(f"{codec}/{vcodec} encoder not in this PyAV build")
    from tests.helpers.official_extract import official_frames

    path = tmp_path / f"clip.{ext}"
    reencode(VIDEOS / "bbb_29.97fps_44k_stereo.mp4", path, rate, layout, codec, vcodec)
    d = decode(path, 5)
    picks, theirs = official_frames(path, 5)
    assert d.indices == picks
    for a, b in zip(d.frames, theirs):
        assert np.abs(resize(a).astype(int) - b.astype(int)).mean() <= 1.0
    ours = A.moviepy_wav(d.audio, A.moviepy_duration(d.duration_us))
    ref = moviepy_wav_samples(path)
    assert ours.shape == ref.shape
    assert np.abs(ours.astype(int) - ref.astype(int)).max() <= 1


def test_demo_raw_videos_extract_back_to_the_demo(tmp_path):
    """`avsprep demo --raw-videos` writes raw_videos/ (29.97 fps H.264 + AAC); extracting them gives
    the demo's frames back within H.264/4:2:0 loss and a wav whose log-mel follows the demo's."""
    from PIL import Image

    from avsprep.audio.frontend import clip_examples
    from avsprep.audio.sources import load_logmel_pickle, read_wav
    from avsprep.datasets.avsbench import AVSBenchLayout

    demo = tmp_path / "demo"
    res = run("demo", demo, "--clips", "3", "--raw-videos")
    assert res.exit_code == 0, res.output
    out = tmp_path / "extracted"
    res = run("extract", demo / "s4_data" / "raw_videos", "-o", out, "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["written"] == 3
    a, b = AVSBenchLayout.from_root(demo), AVSBenchLayout.from_root(out)
    assert [c.name for c in a.clips()] == [c.name for c in b.clips()]
    assert (demo / "s4_meta_data.csv").read_text() == (out / "s4_meta_data.csv").read_text()
    for clip in a.clips():
        assert decode(demo / "s4_data/raw_videos" / clip.split / clip.category / f"{clip.name}.mp4", 5).fps == 29.97
        for k in range(1, 6):
            x = np.asarray(Image.open(a.frame_path(clip, k)).convert("RGB")).astype(int)
            y = np.asarray(Image.open(b.frame_path(clip, k)).convert("RGB")).astype(int)
            assert np.abs(x - y).mean() < 6  # measured ~4.2: the frames' pixel noise, 4:2:0
        wave, sr = read_wav(b.wav_path(clip))
        ours = clip_examples(wave, sr, 5)
        ref = load_logmel_pickle(a.logmel_path(clip))
        assert np.corrcoef(ours.ravel(), np.asarray(ref).ravel())[0, 1] > 0.7


def test_odd_frame_size_equals_official(tmp_path):
    """317x177 (H.264 4:4:4, as x264 refuses odd 4:2:0): same frames as the official recipe."""
    pytest.importorskip("imageio_ffmpeg")
    import av

    from tests.helpers.official_extract import official_frames

    with av.open(str(VIDEOS / "bbb_25fps_48k_5.1.mp4")) as c:
        frames = [f.to_ndarray(format="rgb24")[:177, :317] for f in c.decode(video=0)]
    path = tmp_path / "odd.mp4"
    with av.open(str(path), "w") as o:
        v = o.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = 317, 177, "yuv444p"
        for f in frames:
            for p in v.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                o.mux(p)
        for p in v.encode(None):
            o.mux(p)
    d = decode(path, 5)
    picks, theirs = official_frames(path, 5)
    assert d.indices == picks and d.frames[0].shape == (177, 317, 3)
    for a, b in zip(d.frames, theirs):
        assert np.abs(resize(a).astype(int) - b.astype(int)).mean() <= 1.0


def test_extracting_into_the_source_root_keeps_the_official_csv(tmp_path):
    """`extract ROOT/s4_data/raw_videos -o ROOT`: the official CSV keeps its rows, order and
    extra columns; only the clips extracted are listed from the start when ROOT is new."""
    raw = tmp_path / "s4_data" / "raw_videos" / "train" / "race_car"
    raw.mkdir(parents=True)
    for name in ("b", "a"):
        shutil.copy(VIDEOS / "bbb_25fps_48k_5.1.mp4", raw / f"{name}.mp4")
    csv = "name,start,category,split,note\nb,0,race_car,train,x\nzz,0,race_car,train,y\na,0,race_car,train,z\n"
    (tmp_path / "s4_meta_data.csv").write_text(csv)
    res = run("extract", tmp_path / "s4_data" / "raw_videos", "-o", tmp_path, "--json")
    assert res.exit_code == 1  # zz has no video
    assert (tmp_path / "s4_meta_data.csv").read_text() == csv
    assert (tmp_path / "s4_data/visual_frames/train/race_car/a/a_5.png").is_file()


def test_extract_asks_the_layout_never_the_setting():
    """The rule of issue 19: extract and the demo's raw videos never compare the setting; what differs
    between releases is a member of the layouts (avsprep.datasets)."""
    import re

    repo = Path(__file__).resolve().parents[2] / "avsprep"
    files = sorted((repo / "extract").rglob("*.py")) + [repo / "demo" / "raw_videos.py"]
    pattern = re.compile(r'setting\b.*==|[!=]= "(avss|s4|ms3)"|setting in \(|\bsubset is (not )?None')
    hits = [f"{p.relative_to(repo)}:{i}: {line.strip()}" for p in files
            for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if pattern.search(line)]
    assert hits == []


def test_avss_extract_writes_label2idx_as_released(tmp_path):
    """The label2idx.json an AVSS extraction seeds is the released one: 71 classes, values 1..71
    in class order (docs/reference/avss.md 4.2), the same text the AVSS demo writes."""
    import json

    from avsprep.datasets.avss import AVSSLayout
    from avsprep.datasets.avss_classes import AVSS_CLASSES, label2idx_json

    text = AVSSLayout(tmp_path).seed_files()["label2idx.json"]
    assert text == label2idx_json()
    assert json.loads(text) == {c: i + 1 for i, c in enumerate(AVSS_CLASSES)}
