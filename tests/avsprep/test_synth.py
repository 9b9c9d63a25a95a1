"""The synthetic demo dataset: AVSBench S4 layout, labelImg-exact XMLs, determinism, audio carries the class."""

from __future__ import annotations

import pickle
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from click.testing import CliRunner
from lxml import etree
from PIL import Image

from avsprep.demo import avsbench as synth, render
from tests.conftest import FIXTURES, need
from tests.helpers.demo import demo_tree_bytes

SPLIT_MASKS = {"train": [1], "val": [1, 2, 3, 4, 5], "test": [1, 2, 3, 4, 5]}


def _meta(root: Path) -> pd.DataFrame:
    return pd.read_csv(root / "s4_meta_data.csv", dtype=str)


def _rel(root: Path, row, kind: str) -> Path:
    return root / "s4_data" / kind / row.split / row.category


def _xml_box(path: Path):
    doc = etree.fromstring(path.read_bytes())
    obj = doc.find("object")
    return doc, obj, tuple(int(obj.findtext(f"bndbox/{t}")) for t in ("xmin", "ymin", "xmax", "ymax"))


# --------------------------------------------------------------------------- layout

def test_metadata_csv(demo_root):
    text = (demo_root / "s4_meta_data.csv").read_bytes()
    assert text.startswith(b"name,start,category,split\n") and text.endswith(b"\n")
    assert b"\r" not in text
    df = _meta(demo_root)
    assert list(df.columns) == ["name", "start", "category", "split"]
    assert Counter(df.split) == {"train": 8, "val": 2, "test": 2}
    assert (df.start == "0").all()
    assert df.name.is_unique
    assert all(len(n) == 11 and set(n) <= set(render.ID_ALPHABET) for n in df.name)
    assert any(n.startswith("-") for n in df.name)
    assert set(df.category) == set(synth.demo_classes(4))


def test_files_are_exactly_the_avsbench_layout(demo_root):
    expected = {Path("s4_meta_data.csv")}
    for row in _meta(demo_root).itertuples():
        frames = Path("s4_data/visual_frames", row.split, row.category, row.name)
        masks = Path("s4_data/gt_masks", row.split, row.category, row.name)
        for k in range(1, 6):
            expected |= {frames / f"{row.name}_{k}.png", frames / f"{row.name}_{k}.xml"}
        expected |= {masks / f"{row.name}_{k}.png" for k in SPLIT_MASKS[row.split]}
        expected.add(Path("s4_data/audio_wav", row.split, row.category, f"{row.name}.wav"))
        expected.add(Path("s4_data/audio_log_mel", row.split, row.category, f"{row.name}.pkl"))
    found = {p.relative_to(demo_root) for p in demo_root.rglob("*") if p.is_file()}
    assert found == expected


def test_layout_module_finds_every_file(demo_root):
    layout_mod = pytest.importorskip("avsprep.datasets.avsbench")
    layout = layout_mod.AVSBenchLayout.from_root(demo_root)
    clips = layout.clips()
    assert len(clips) == 12
    for clip in clips:
        assert all(layout.frame_path(clip, k).is_file() for k in range(1, 6))
        assert all(layout.mask_path(clip, k).is_file() for k in layout.mask_frames(clip))
        assert layout.wav_path(clip).is_file() and layout.logmel_path(clip).is_file()


def test_frames_masks_audio_formats(demo_root):
    torch = pytest.importorskip("torch")
    for row in _meta(demo_root).itertuples():
        for k in range(1, 6):
            with Image.open(_rel(demo_root, row, "visual_frames") / row.name / f"{row.name}_{k}.png") as im:
                assert (im.mode, im.size) == ("RGB", (224, 224))
        for k in SPLIT_MASKS[row.split]:
            with Image.open(_rel(demo_root, row, "gt_masks") / row.name / f"{row.name}_{k}.png") as im:
                assert (im.mode, im.size) == ("L", (224, 224))
                values = set(np.unique(np.asarray(im)).tolist())
            assert values == {0, 255}
        info = sf.info(str(_rel(demo_root, row, "audio_wav") / f"{row.name}.wav"))
        assert (info.samplerate, info.frames, info.channels, info.subtype) == (16000, 80000, 1, "PCM_16")
        with open(_rel(demo_root, row, "audio_log_mel") / f"{row.name}.pkl", "rb") as fh:
            tensor = pickle.load(fh)
        assert isinstance(tensor, torch.Tensor)
        assert tuple(tensor.shape) == (5, 1, 96, 64) and tensor.dtype == torch.float32
        assert tensor.requires_grad and torch.isfinite(tensor).all()


def test_pickle_matches_wav_through_the_frontend(demo_root):
    audio = pytest.importorskip("avsprep.audio")
    row = next(_meta(demo_root).itertuples())
    wave, sr = audio.read_wav(_rel(demo_root, row, "audio_wav") / f"{row.name}.wav")
    stored = audio.load_logmel_pickle(_rel(demo_root, row, "audio_log_mel") / f"{row.name}.pkl")
    np.testing.assert_allclose(stored, audio.clip_examples(wave, sr, frames=5), atol=1e-5)


# --------------------------------------------------------------------------- labelImg XMLs

def test_xml_format_and_box_match_masks(demo_root):
    checked = 0
    for row in _meta(demo_root).itertuples():
        folder = _rel(demo_root, row, "visual_frames") / row.name
        for k in range(1, 6):
            xml = folder / f"{row.name}_{k}.xml"
            data = xml.read_bytes()
            assert data.startswith(b"<annotation>\n\t<folder>") and data.endswith(b"</annotation>\n")
            assert b"<?xml" not in data and b"\r" not in data and b"  " not in data
            doc, obj, box = _xml_box(xml)
            assert doc.findtext("folder") == row.name
            assert doc.findtext("filename") == f"{row.name}_{k}.png"
            assert Path(doc.findtext("path")).is_absolute()
            assert Path(doc.findtext("path")).samefile(folder / f"{row.name}_{k}.png")
            assert [doc.findtext(f"size/{t}") for t in ("width", "height", "depth")] == ["224", "224", "3"]
            assert len(doc.findall("object")) == 1 and obj.findtext("name") == row.category
            xmin, ymin, xmax, ymax = box
            assert 1 <= xmin < xmax <= 224 and 1 <= ymin < ymax <= 224
            edge = xmin == 1 or ymin == 1 or xmax == 224 or ymax == 224
            assert obj.findtext("truncated") == ("1" if edge else "0")
            if k in SPLIT_MASKS[row.split]:
                with Image.open(_rel(demo_root, row, "gt_masks") / row.name / f"{row.name}_{k}.png") as im:
                    ys, xs = np.nonzero(np.asarray(im))
                # mask pixels -> 0-based edges; labelImg raises 0 to 1
                mask_box = (max(xs.min(), 1), max(ys.min(), 1), xs.max() + 1, ys.max() + 1)
                assert np.abs(np.subtract(mask_box, box)).max() <= 1
                checked += 1
    assert checked == 8 * 1 + 4 * 5


GUI_FIXTURES = ["0a1B2c3D4e5_1.xml", "0a1B2c3D4e5_2.xml", "0a1B2c3D4e5_3.xml", "0a1B2c3D4e5_4.xml",
                "0a1B2c3D4e5_5.xml", "full_frame_box.xml", "unicode_korean.xml", "windows_path.xml"]


@pytest.mark.parametrize("name", GUI_FIXTURES)
def test_labelimg_xml_reproduces_labelimg_bytes(name):
    """Fields read from a labelImg-written file, written again, give the same bytes."""
    data = need(FIXTURES / "labelimg" / name).read_bytes()
    doc = etree.fromstring(data)
    objects = [(o.findtext("name"), *(o.findtext(f"bndbox/{t}") for t in ("xmin", "ymin", "xmax", "ymax")),
                int(o.findtext("difficult"))) for o in doc.findall("object")]
    out = render.labelimg_xml(doc.findtext("folder"), doc.findtext("filename"), doc.findtext("path"),
                             int(doc.findtext("size/width")), int(doc.findtext("size/height")),
                             int(doc.findtext("size/depth")), objects, verified=doc.get("verified") == "yes")
    assert out == data


def test_labelimg_xml_from_plain_values():
    data = need(FIXTURES / "labelimg" / "0a1B2c3D4e5_1.xml").read_bytes()
    out = render.labelimg_xml("frames", "0a1B2c3D4e5_1.png", "/home/annotator/avs/frames/0a1B2c3D4e5_1.png",
                             640, 360, 3, [("guitar", 212, 80, 401, 300, 0)])
    assert out == data


def test_labelimg_truncated_flag():
    def flag(box):
        xml = render.labelimg_xml("f", "a.png", None, 224, 224, 3, [("x", *box, 0)])
        return etree.fromstring(xml).findtext("object/truncated")

    assert flag((10, 10, 50, 50)) == "0"
    assert flag((1, 10, 50, 50)) == "1"
    assert flag((10, 1, 50, 50)) == "1"
    assert flag((10, 10, 224, 50)) == "1"
    assert flag((10, 10, 50, 224)) == "1"


def test_labelimg_box_conversion():
    mask = np.zeros((224, 224), bool)
    assert render.labelimg_box(mask) is None
    mask[30:41, 100:121] = True
    assert render.labelimg_box(mask) == (100, 30, 121, 41)
    mask[:] = False
    mask[0:5, 0:7] = True          # touches the top-left corner: 0 -> 1
    assert render.labelimg_box(mask) == (1, 1, 7, 5)
    mask[:] = False
    mask[200:, 210:] = True        # touches the bottom-right corner: max = size
    assert render.labelimg_box(mask) == (210, 200, 224, 224)


# --------------------------------------------------------------------------- content

def _nearest_class(rgb) -> int:
    dist = [np.linalg.norm(np.subtract(rgb, s.rgb)) for s in render.SIGNATURES[:4]]
    return int(np.argmin(dist))


def test_frames_show_two_objects_of_different_classes(demo_root):
    specs = synth.plan_demo(12, 0)
    names = synth.demo_classes(4)
    meta = _meta(demo_root)
    assert [s.name for s in specs] == list(meta.name)
    for spec in specs:
        assert spec.category != spec.distractor
        frames, masks = synth.render_frames(spec)
        with Image.open(demo_root / synth.clip_files(spec)["frames_dir"] / f"{spec.name}_1.png") as im:
            assert np.array_equal(np.asarray(im), frames[0])
        with Image.open(demo_root / synth.clip_files(spec)["masks_dir"] / f"{spec.name}_1.png") as im:
            assert np.array_equal(np.asarray(im) > 0, masks[0, 0])
        for k in range(5):
            a, b = masks[k]
            assert a.sum() > 300 and b.sum() > 300 and not (a & b).any()
            # The colour under each mask names its class: sounding = category, other = distractor.
            assert names[_nearest_class(frames[k][a].mean(0))] == spec.category
            assert names[_nearest_class(frames[k][b].mean(0))] == spec.distractor


def test_objects_move_slightly(demo_root):
    for spec in synth.plan_demo(12, 0):
        _, masks = synth.render_frames(spec)
        for j in range(2):
            cy = [np.nonzero(masks[k, j])[0].mean() for k in (0, 4)]
            cx = [np.nonzero(masks[k, j])[1].mean() for k in (0, 4)]
            assert np.hypot(cx[1] - cx[0], cy[1] - cy[0]) <= 20


def test_plan_is_balanced():
    specs = synth.plan_demo(144, 3)
    by_split = {sp: [s for s in specs if s.split == sp] for sp in synth.SPLITS}
    assert {sp: len(v) for sp, v in by_split.items()} == {"train": 96, "val": 24, "test": 24}
    for split, group in by_split.items():
        counts = Counter(s.category for s in group)
        assert len(counts) == 4 and max(counts.values()) - min(counts.values()) <= 1, split
        assert Counter(s.distractor for s in group).keys() == counts.keys()
    assert {s.split for s in specs if s.name.startswith("-")} == set(synth.SPLITS)
    # which object sounds is not tied to a side of the frame
    left = [s.objects[0].x0 < s.objects[1].x0 for s in by_split["train"]]
    assert 0.3 < np.mean(left) < 0.7


def test_plan_arguments():
    assert synth.split_counts(3) == {"train": 1, "val": 1, "test": 1}
    assert synth.split_counts(12) == {"train": 8, "val": 2, "test": 2}
    with pytest.raises(ValueError):
        synth.split_counts(2)
    with pytest.raises(ValueError):
        synth.demo_classes(1)
    with pytest.raises(ValueError):
        synth.demo_classes(synth.MAX_CLASSES + 1)
    layout_mod = pytest.importorskip("avsprep.datasets.avsbench")
    assert set(synth.demo_classes(synth.MAX_CLASSES)) <= set(layout_mod.S4_CLASSES)


def test_audio_carries_the_class(demo_root):
    """Each clip's nearest neighbour by mean log-mel spectrum has the same class; the distractor is silent."""
    meta = _meta(demo_root)
    profiles = []
    for row in meta.itertuples():
        with open(_rel(demo_root, row, "audio_log_mel") / f"{row.name}.pkl", "rb") as fh:
            profiles.append(pickle.load(fh).detach().numpy().mean(axis=(0, 1, 2)))
    profiles = np.stack(profiles)
    dist = np.linalg.norm(profiles[:, None] - profiles[None], axis=-1)
    np.fill_diagonal(dist, np.inf)
    cats = meta.category.to_numpy()
    same = cats[:, None] == cats[None]
    np.fill_diagonal(same, False)
    assert (cats[dist.argmin(1)] == cats).all()
    assert dist[same].max() < dist[~same & np.isfinite(dist)].min()


# --------------------------------------------------------------------------- determinism

def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    pytest.importorskip("torch")
    synth.write_avsbench_demo(tmp_path / "a", clips=3, seed=7, quiet=True)
    synth.write_avsbench_demo(tmp_path / "b", clips=3, seed=7, quiet=True)
    synth.write_avsbench_demo(tmp_path / "c", clips=3, seed=8, quiet=True)
    a, b, c = (demo_tree_bytes(tmp_path / x) for x in "abc")
    assert a.keys() == b.keys() and len(a) == 1 + 3 * 10 + 1 + 5 + 5 + 3 * 2
    for key in a:
        assert a[key] == b[key], key
    assert a["s4_meta_data.csv"] != c["s4_meta_data.csv"]
    frames_a = sorted(v for k, v in a.items() if k.endswith("_1.png") and "visual_frames" in k)
    frames_c = sorted(v for k, v in c.items() if k.endswith("_1.png") and "visual_frames" in k)
    assert not set(frames_a) & set(frames_c)


def test_write_demo_summary(tmp_path):
    pytest.importorskip("torch")
    summary = synth.write_avsbench_demo(tmp_path / "d", clips=3, seed=0, quiet=True, classes=2)
    assert summary["clips"] == {"train": 1, "val": 1, "test": 1}
    assert summary["classes"] == synth.demo_classes(2)
    assert summary["root"] == str(tmp_path / "d")
    assert str(tmp_path / "d") in summary["text"] and "train 1" in summary["text"]
    assert set(_meta(tmp_path / "d").category) <= set(summary["classes"])


# --------------------------------------------------------------------------- CLI

def test_cli_demo_and_refuses_non_empty_out(tmp_path):
    pytest.importorskip("torch")
    from avsprep.cli import cli

    out = tmp_path / "demo"
    runner = CliRunner()
    result = runner.invoke(cli, ["demo", str(out), "--clips", "3", "--seed", "1", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "3 clips" in result.stdout
    assert len(_meta(out)) == 3
    again = runner.invoke(cli, ["demo", str(out), "--clips", "3", "--quiet"])
    assert again.exit_code == 1
    assert "not empty" in again.stderr and "--overwrite" in again.stderr
    forced = runner.invoke(cli, ["demo", str(out), "--clips", "3", "--quiet", "--overwrite"])
    assert forced.exit_code == 0, forced.output


def test_import_stays_torch_free():
    import subprocess
    import sys

    code = "import sys, avsprep.demo.avsbench; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
