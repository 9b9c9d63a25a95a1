"""Feature: reading an AVSS release - metadata, classes, release checks, frames/{i}.xml import, validate."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from avsprep.validate.avss_release import (
    check_audio_length, check_frame_listing, check_mask, check_metadata,
)
from avsprep.datasets.avss_classes import PALETTE, clip_classes, encode_rgb_mask, label2idx_json, read_label2idx
from avsprep.datasets.avss import AVSSClip, AVSSLayout, match_path, parse_a_obj, parse_subsets, read_avss_metadata
from avsprep.cli import cli
from avsprep.common.errors import DataError


def codes(findings):
    return sorted(f.code for f in findings)


def test_metadata_columns_by_name(tmp_path):
    p = tmp_path / "metadata.csv"
    p.write_text("split,label,uid,a_obj,extra\ntrain,v2,-x_1_0_10000,woman_piano,1\n")
    df = read_avss_metadata(p)
    assert df["uid"].tolist() == ["-x_1_0_10000"]
    p.write_text("uid,label,split\nx,v2,train\n")
    with pytest.raises(DataError, match="missing column.*a_obj"):
        read_avss_metadata(p)
    p.write_text("uid,label,split,a_obj\nx,v3,train,dog\n")
    with pytest.raises(DataError, match="line 2: label 'v3'"):
        read_avss_metadata(p)


def test_a_obj_and_subsets():
    assert parse_a_obj("woman_piano") == ("woman", "piano")
    assert parse_a_obj("emergency-car") == ("emergency-car",)
    assert parse_subsets("v2,v1s") == ("v1s", "v2") and parse_subsets(None) == ("v1s", "v1m", "v2")
    with pytest.raises(DataError, match="unknown subset 'v3'"):
        parse_subsets("v3")


def test_label2idx_order_checked(tmp_path):
    p = tmp_path / "label2idx.json"
    p.write_text(label2idx_json())
    names = read_label2idx(p)
    assert names[0] == "background" and names[70] == "woman" and json.loads(p.read_text())["woman"] == 71
    d = json.loads(label2idx_json())
    d = {("Dog" if k == "dog" else k): v for k, v in d.items()}
    p.write_text(json.dumps(d))
    with pytest.raises(DataError, match="key 17 is 'Dog', expected 'dog'"):
        read_label2idx(p)


def test_metadata_anomalies_of_the_reference():
    clips = [AVSSClip("zVfLHhs9uv8_3000_8000", "train", "v1s", ("h orse",)),
             AVSSClip("IrYMIVbDsh8_0", "train", "v1m", ("background",)),
             AVSSClip("a_0_10000", "val", "v2", ("off-the-screen",)),
             AVSSClip("b_0_10000", "val", "v2", ("woman", "pianoo")),
             AVSSClip("c_0_10000", "val", "v2", ("woman", "piano"))]
    got = check_metadata(clips)
    assert [(f.code, f.clip) for f in got] == [
        ("a-obj-typo", "zVfLHhs9uv8_3000_8000"), ("a-obj-background", "IrYMIVbDsh8_0"),
        ("a-obj-off-screen", "a_0_10000"), ("a-obj-unknown", "b_0_10000")]
    assert clip_classes(("h orse",)) == [37] and clip_classes(("off-the-screen",)) == []


def test_frame_listing_extra_and_missing():
    names = ["0.jpg", "1.jpg", "3.jpg", "4.jpg", "5.jpg", ".DS_Store", "0.xml", "1.xml"]
    got = check_frame_listing(names, 5, "v1s/x/frames", "x")
    assert codes(got) == ["frame-extra", "frame-file-missing", "frames-annotation-file", "frames-extra-file"]
    missing = next(f for f in got if f.code == "frame-file-missing")
    assert missing.frame == 2 and missing.severity == "error"
    assert "'.DS_Store'" in next(f for f in got if f.code == "frames-extra-file").message


def test_off_palette_pixels_counted_and_located():
    idx = np.zeros((20, 30), np.uint8)
    idx[5:10, 5:10] = 17
    rgb = encode_rgb_mask(idx)
    rgb[2:4, 20:25] = (1, 2, 3)
    got = check_mask(rgb, (30, 20), [17], "v2/x/labels_rgb/0.png", "x", 0)
    assert codes(got) == ["mask-off-palette"]
    assert "10 pixel(s) in x 20..24, y 2..3" in got[0].message and "(1, 2, 3)" in got[0].message
    idx[0, 0] = 41
    got = check_mask(PALETTE[idx], (31, 20), [17], "m", "x", 0)
    assert codes(got) == ["mask-class-not-in-a-obj", "mask-size-mismatch"]


def test_audio_length_rules():
    assert codes(check_audio_length(10.0, 10, "a", "x")) == []
    assert codes(check_audio_length(10.6, 10, "a", "x")) == ["audio-too-long"]
    assert codes(check_audio_length(9.5, 10, "a", "x")) == ["audio-short"]
    assert codes(check_audio_length(5.0, 5, "a", "x")) == []


def test_match_path():
    assert match_path(("v2", "uid_1_2", "frames", "3.xml")) == ("uid_1_2", 3)
    assert match_path(("uid_1_2", "0.xml")) == ("uid_1_2", 0)
    assert match_path(("v2", "uid", "frames", "x.xml")) is None
    assert match_path(("3.xml",)) is None


# ------------------------------------------------------------------ on the demo release

@pytest.fixture(scope="module")
def release(tmp_path_factory):
    from avsprep.demo.avss import write_avss_demo

    root = tmp_path_factory.mktemp("avssdemo") / "rel"
    write_avss_demo(root, clips=3, seed=1, quiet=True)
    return root


def test_demo_layout_exact(release):
    from PIL import Image

    layout = AVSSLayout.from_root(release)
    clips = layout.clips()
    assert {c.subset for c in clips} == {"v1s", "v1m", "v2"}
    assert {c.split for c in clips} == {"train", "val", "test"}
    for c in clips:
        n = 10 if c.subset == "v2" else 5
        assert sorted(p.name for p in layout.frame_path(c, 0).parent.glob("*.jpg")) == sorted(
            f"{i}.jpg" for i in range(n))
        masks = sorted(p.name for p in layout.mask_path(c, 0).parent.iterdir())
        assert masks == sorted(f"{i}.png" for i in layout.mask_frames(c))
        with Image.open(layout.frame_path(c, 0)) as im:
            assert im.format == "JPEG" and im.size != (224, 224)
        with Image.open(layout.mask_path(c, 0)) as im:
            assert im.mode == "RGB"
        import soundfile as sf

        info = sf.info(str(layout.wav_path(c)))
        assert (info.samplerate, info.channels) == (48000, 2) and abs(info.duration - n) < 1e-6
    v2 = [c for c in clips if c.subset == "v2"]
    assert all(len(c.a_obj) >= 2 for c in v2)


def test_demo_import_validate_cli(release, tmp_path):
    runner = CliRunner()
    table = tmp_path / "boxes.csv"
    r = runner.invoke(cli, ["import", "--root", str(release), "-o", str(table), "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc["setting"] == "avss" and doc["frames"] == 3 * 5 + 3 * 5 + 3 * 10
    from avsprep.annotations.table import read_table

    df = read_table(table)
    assert set(df["category"]) == {"v1s", "v1m", "v2"} and df["frame"].min() == 0 and df["frame"].max() == 9
    r = runner.invoke(cli, ["validate", str(table), "--root", str(release), "--json", "--subset", "v2"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.output)
    assert rep["summary"]["coverage"] == {"clips": 3, "full": 3, "partial": 0, "none": 0}
    assert set(rep["summary"]["findings_by_code"]) == {"frames-annotation-file"}


def test_validate_reports_broken_release(release, tmp_path):
    import shutil

    from PIL import Image

    root = tmp_path / "rel"
    shutil.copytree(release, root)
    layout = AVSSLayout.from_root(root)
    v2 = next(c for c in layout.clips() if c.subset == "v2")
    (layout.frame_path(v2, 0).parent / ".DS_Store").write_bytes(b"\0")
    layout.frame_path(v2, 9).unlink()
    rgb = np.asarray(Image.open(layout.mask_path(v2, 1))).copy()
    rgb[0:2, 0:3] = (255, 255, 255)
    Image.fromarray(rgb).save(layout.mask_path(v2, 1))
    # a box labelled with a class that is not in a_obj
    xml = layout.frame_path(v2, 2).with_suffix(".xml")
    other = next(n for n in ("dog", "horse", "piano", "helicopter", "cat", "car") if n not in v2.a_obj)
    text = xml.read_text()
    first = text.split("<name>")[1].split("</name>")[0]
    xml.write_text(text.replace(f"<name>{first}</name>", f"<name>{other}</name>", 1))
    table = tmp_path / "boxes.csv"
    runner = CliRunner()
    assert runner.invoke(cli, ["import", "--root", str(root), "-o", str(table)]).exit_code == 0
    r = runner.invoke(cli, ["validate", str(table), "--root", str(root), "--json"])
    assert r.exit_code == 1
    found = {(f["code"], f["clip"], f["frame"]) for f in json.loads(r.output)["findings"]}
    assert ("frames-extra-file", v2.name, None) in found
    assert ("frame-file-missing", v2.name, 9) in found
    assert ("mask-off-palette", v2.name, 1) in found
    assert ("label-not-in-a-obj", v2.name, 2) in found


def test_demo_cli_setting_avss(tmp_path):
    out = tmp_path / "rel"
    r = CliRunner().invoke(cli, ["demo", str(out), "--setting", "avss", "--clips", "3", "--quiet"])
    assert r.exit_code == 0, r.output
    assert (out / "metadata.csv").is_file() and (out / "label2idx.json").is_file()
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["v1m", "v1s", "v2"]
    r = CliRunner().invoke(cli, ["demo", str(out), "--setting", "avss", "--clips", "3", "--quiet"])
    assert r.exit_code != 0 and "--overwrite" in r.output  # a non-empty OUT is refused
    for cmd in (["demo", "--help"], ["import", "--help"], ["validate", "--help"], ["build", "--help"]):
        text = CliRunner().invoke(cli, cmd).output
        assert "avss" in text.lower(), cmd
