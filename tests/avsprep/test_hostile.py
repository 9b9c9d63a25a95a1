"""Issue 21: hostile and careless inputs. Names that would become paths outside the output folder,
decompression-bomb images and deeply nested JSON: each gives one line naming the file (or a finding),
never a file written outside the output folder, an input file changed, or a traceback."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from avsprep.cli import cli
from avsprep.common.errors import DataError
from avsprep.datasets.avsbench import read_metadata
from avsprep.datasets.avss import read_avss_metadata
from avsprep.datasets.base import safe_name
from tests.helpers.hostile import DEEP_JSON, HOSTILE, bomb_jpeg, bomb_png, s4_csv, tree



# -- 1. one rule for names that become paths ----------------------------------------------------

@pytest.mark.parametrize("value", HOSTILE + ["/abs/zz"])
def test_safe_name_refuses_every_path_like_name(value):
    assert safe_name(value) is not None


@pytest.mark.parametrize("value", ["-_wznbUu3DY_0", "a b, c \"d\" 'e'", "élan", "x" * 255, "v1s", "dog_barking"])
def test_safe_name_accepts_plain_names(value):
    assert safe_name(value) is None


@pytest.mark.parametrize("value", HOSTILE)
def test_s4_metadata_row_with_a_path_name_is_refused_naming_the_line(tmp_path, value):
    meta = s4_csv(tmp_path / "s4_meta_data.csv", ["ok1", "ok2", value])
    with pytest.raises(DataError) as err:
        read_metadata(meta, "s4")
    msg = str(err.value)
    assert str(meta) in msg and "line 4" in msg and "\n" not in msg


def test_s4_metadata_category_with_a_path_is_refused(tmp_path):
    meta = tmp_path / "s4_meta_data.csv"
    meta.write_text("name,start,category,split\nv1,0,../../../x,train\n")
    with pytest.raises(DataError, match="line 2: category"):
        read_metadata(meta, "s4")


def test_ms3_metadata_absolute_video_id_is_refused(tmp_path):
    meta = tmp_path / "ms3_meta_data.csv"
    meta.write_text(f"video_id,split\nv1,train\n{tmp_path / 'esc'},test\n")
    with pytest.raises(DataError, match="line 3: video_id"):
        read_metadata(meta, "ms3")


@pytest.mark.parametrize("name", ["../../../../../esc_zz", "ABSOLUTE"])
def test_demo_like_with_a_path_name_writes_nothing_outside_out(tmp_path, name):
    work = tmp_path / "w" / "x" / "y"
    work.mkdir(parents=True)
    name = str(tmp_path / "abs_esc") if name == "ABSOLUTE" else name
    like = s4_csv(work / "s4_meta_data.csv", ["ok1", "ok2", name])
    before = like.read_bytes()
    out = work / "out"
    res = CliRunner().invoke(cli, ["demo", str(out), "--like", str(like), "--quiet"])
    assert res.exit_code == 1, res.output
    assert "line 4" in res.output and "Traceback" not in res.output
    assert like.read_bytes() == before
    outside = [p for p in tree(tmp_path) if not p.startswith("w/x/y/out/") and p != "w/x/y/s4_meta_data.csv"]
    assert outside == []


def test_demo_like_never_overwrites_its_input_csv(tmp_path):
    like = s4_csv(tmp_path / "s4_meta_data.csv", ["ok1", "ok2", "ok3"])
    before = like.read_bytes()
    res = CliRunner().invoke(cli, ["demo", str(tmp_path), "--like", str(like), "--overwrite", "--quiet"])
    assert res.exit_code == 1 and "never overwritten" in res.output, res.output
    assert like.read_bytes() == before and tree(tmp_path) == {"s4_meta_data.csv": hashlib.sha256(before).hexdigest()}


def test_demo_like_quotes_names_with_commas_and_quotes_and_reads_back(tmp_path):
    from avsprep.demo.avsbench import write_avsbench_demo

    names = ["a,b", 'say "hi"', "plain", "it's"]
    like = s4_csv(tmp_path / "s4_meta_data.csv", names)
    out = tmp_path / "out"
    write_avsbench_demo(out, like=like, quiet=True)
    df = read_metadata(out / "s4_meta_data.csv", "s4")
    assert list(df["name"]) == names
    assert (out / "s4_data/visual_frames/train/dog_barking/a,b/a,b_1.png").is_file()
    res = CliRunner().invoke(cli, ["import", "--root", str(out), "-o", str(tmp_path / "boxes.csv"), "--quiet"])
    assert res.exit_code == 0, res.output


@pytest.fixture
def small_s4(tmp_path):
    from avsprep.demo import write_demo

    root = tmp_path / "root"
    write_demo(root, clips=12, seed=0, quiet=True)
    return root


def _add_row(meta: Path, row: str) -> None:
    meta.write_text(meta.read_text() + row + "\n")


@pytest.mark.parametrize("name", ["../../../../../esc", "ABSOLUTE"])
def test_propose_with_a_path_name_in_the_metadata_writes_nothing(small_s4, tmp_path, name):
    from avsprep.annotations.propose import run_propose

    name = str(tmp_path / "abs_esc") if name == "ABSOLUTE" else name
    meta = small_s4 / "s4_meta_data.csv"
    cat = read_metadata(meta, "s4")["category"].iloc[0]
    _add_row(meta, f"{name},0,{cat},test")
    before = tree(tmp_path)
    with pytest.raises(DataError, match="line 14"):
        run_propose(small_s4, quiet=True)
    assert tree(tmp_path) == before
    res = CliRunner().invoke(cli, ["propose", "--root", str(small_s4)])
    assert res.exit_code == 1 and "line 14" in res.output and "Traceback" not in res.output
    assert tree(tmp_path) == before


def test_proposal_writer_refuses_a_target_outside_its_folder(tmp_path):
    from avsprep.annotations.propose import ProposalWriter

    ann = tmp_path / "ann"
    ann.mkdir()
    with pytest.raises(DataError, match="outside the output folder"):
        ProposalWriter(ann, "masks").propose(Path("../../esc"), "v_1", [(0, 0, 2, 2)], "dog", 4, 4)
    assert tree(tmp_path) == {}


def test_predicted_proposal_with_a_path_name_is_refused(tmp_path):
    from avsprep.annotations.propose import ProposalWriter, propose_predicted

    ann = tmp_path / "ann"
    ann.mkdir()
    writer = ProposalWriter(ann, "model")
    with pytest.raises(DataError, match="not|separator"):
        propose_predicted(writer, "s4", "train", "dog", "../../../../esc", 2, np.ones((4, 4), np.uint8))
    assert tree(tmp_path) == {}


def _avss_root(tmp_path: Path) -> Path:
    from avsprep.demo.avss import write_avss_demo

    root = tmp_path / "avss"
    write_avss_demo(root, clips=3, quiet=True)
    return root


def test_avss_uid_with_a_path_is_refused_by_import_validate_build(tmp_path):
    root = _avss_root(tmp_path)
    meta = root / "metadata.csv"
    lines = meta.read_text().splitlines()
    head = lines[0].split(",")
    row = lines[1].split(",")
    uid, subset = row[head.index("uid")], row[head.index("label")]
    # the clip, copied outside the root, where a uid "../../esc_avss/u1" would find it
    shutil.copytree(root / subset / uid, tmp_path / "esc_avss" / "u1")
    row[head.index("uid")] = "../../esc_avss/u1"
    meta.write_text("\n".join([lines[0], ",".join(row), *lines[2:]]) + "\n")
    with pytest.raises(DataError, match=r"metadata.csv line 2: uid"):
        read_avss_metadata(meta)
    before = tree(tmp_path)
    runner = CliRunner()
    for args in (["import", "--root", str(root), "-o", str(tmp_path / "b.csv")],
                 ["validate", str(tmp_path / "b.csv"), "--root", str(root)],
                 ["build", str(tmp_path / "b.csv"), "--root", str(root), "-o", str(tmp_path / "shards")]):
        res = runner.invoke(cli, args)
        assert res.exit_code in (1, 2), (args, res.output)
        assert "Traceback" not in res.output
        if args[0] == "import":
            assert "line 2: uid" in res.output
    assert tree(tmp_path) == before


class _Sink:
    pass


def _batch(video: str):
    import torch

    return {"video": [video], "label": torch.tensor([0]), "mask_valid": torch.ones(1, 2, dtype=torch.bool),
            "frames": torch.zeros(1, 2, 4, 4, 3, dtype=torch.uint8), "masks": torch.zeros(1, 2, 4, 4)}


@pytest.mark.parametrize("video", ["../../../esc", "ABSOLUTE", "a\nb"])
@pytest.mark.parametrize("kind", ["binary", "binary-category", "semantic"])
def test_predict_writers_never_write_outside_out(tmp_path, video, kind):
    import torch

    from avstrain.mask_files import MaskSink, write_binary_masks, write_semantic_masks

    video = str(tmp_path / "abs_esc") if video == "ABSOLUTE" else video
    gt = tmp_path / "gt.png"
    gt.write_bytes(b"a GT mask")  # an input file that a hostile name could point at
    out = tmp_path / "w" / "out"
    if kind == "semantic":
        sink = MaskSink(out, "test", "avss", ["background", "dog"])
        call = lambda: write_semantic_masks(torch.zeros(2, 2, 4, 4), _batch(video), sink)  # noqa: E731
    else:
        sink = MaskSink(out, "test", "s4", ["dog"], overlay=True)
        call = lambda: write_binary_masks(torch.ones(2, 1, 4, 4), _batch(video), sink,  # noqa: E731
                                          by_category=kind == "binary-category")
    with pytest.raises(DataError, match="predict names files after it"):
        call()
    assert tree(tmp_path) == {"gt.png": hashlib.sha256(b"a GT mask").hexdigest()}


def test_predict_checks_every_shard_name_before_writing():
    from avstrain.mask_files import check_shard_names

    check_shard_names(["-abc", "x,y"], ["dog", "cat"], "shards")
    with pytest.raises(DataError, match="shards: clip name '../x'"):
        check_shard_names(["ok", "../x"], ["dog"], "shards")
    with pytest.raises(DataError, match="class name"):
        check_shard_names(["ok"], ["a/b"], "shards")


# -- 2. images: one guarded opener with a pixel-count limit ----------------------------------------

@pytest.mark.parametrize("make", [bomb_png, bomb_jpeg])
def test_open_image_refuses_a_decompression_bomb_naming_the_file(tmp_path, make):
    from avsprep.common.images import image_size, open_image

    p = make(tmp_path / ("m.png" if make is bomb_png else "f.jpg"))
    with pytest.raises(DataError) as err:
        open_image(p, "clipA", "mask 1", "L")
    assert str(p) in str(err.value) and "clipA" in str(err.value) and "AVS_MAX_PIXELS" in str(err.value)
    with pytest.raises(DataError, match="400,000,000 pixels"):
        image_size(p)


def test_pixel_limit_is_configurable(tmp_path, monkeypatch):
    from PIL import Image

    from avsprep.common.images import DEFAULT_MAX_PIXELS, image_size, max_pixels, open_image

    assert max_pixels() == DEFAULT_MAX_PIXELS == 100_000_000
    small = tmp_path / "s.png"
    Image.new("L", (40, 30)).save(small)
    monkeypatch.setenv("AVS_MAX_PIXELS", "1000")
    with pytest.raises(DataError, match="over the limit of 1,000"):
        open_image(small, "c", "frame 1", "RGB")
    monkeypatch.setenv("AVS_MAX_PIXELS", "1200")
    assert open_image(small, "c", "frame 1", "RGB").size == (40, 30)
    monkeypatch.setenv("AVS_MAX_PIXELS", "500_000_000")  # above PIL's own 179 MP error: ours applies
    assert image_size(bomb_png(tmp_path / "b.png")) == (20000, 20000)
    monkeypatch.setenv("AVS_MAX_PIXELS", "lots")
    with pytest.raises(DataError, match="AVS_MAX_PIXELS='lots'"):
        max_pixels()


def _first_clip(root: Path):
    from avsprep.datasets.avsbench import AVSBenchLayout

    layout = AVSBenchLayout.from_root(root)
    return layout, layout.clips(["test"])[0]


def test_validate_reports_a_bomb_frame_as_a_finding(small_s4, tmp_path):
    layout, clip = _first_clip(small_s4)
    table = tmp_path / "boxes.csv"
    assert CliRunner().invoke(cli, ["import", "--root", str(small_s4), "-o", str(table), "--quiet"]).exit_code == 0
    frame = layout.frame_path(clip, 1)
    bomb_png(frame)
    res = CliRunner().invoke(cli, ["validate", str(table), "--root", str(small_s4), "--json"])
    assert res.exit_code == 1 and "Traceback" not in res.output, res.output
    assert "frame-image-unreadable" in res.output and "over the limit" in res.output


@pytest.mark.parametrize("what", ["frame", "mask"])
def test_build_skip_skips_a_clip_with_a_bomb_image(small_s4, tmp_path, what):
    layout, clip = _first_clip(small_s4)
    table = tmp_path / "boxes.csv"
    assert CliRunner().invoke(cli, ["import", "--root", str(small_s4), "-o", str(table), "--quiet"]).exit_code == 0
    target = layout.frame_path(clip, 2) if what == "frame" else layout.mask_path(clip, 2)
    bomb_png(target)
    out = tmp_path / "shards"
    stop = CliRunner().invoke(cli, ["build", str(table), "--root", str(small_s4), "-o", str(out), "--quiet",
                                    "--split", "test"])
    assert stop.exit_code == 1 and "over the limit" in stop.output and "Traceback" not in stop.output, stop.output
    res = CliRunner().invoke(cli, ["build", str(table), "--root", str(small_s4), "-o", str(out), "--quiet",
                                   "--split", "test", "--on-bad-input", "skip", "--overwrite", "--json"])
    assert res.exit_code == 0, res.output
    assert clip.name in res.output


def test_propose_reports_a_bomb_mask_in_one_line(small_s4, tmp_path):
    layout, clip = _first_clip(small_s4)
    bomb_png(layout.mask_path(clip, 1))
    for p in layout.frames_dir().rglob("*.xml"):
        p.unlink()
    res = CliRunner().invoke(cli, ["propose", "--root", str(small_s4)])
    assert res.exit_code == 1 and "Traceback" not in res.output, res.output
    assert str(layout.mask_path(clip, 1)) in res.output and "over the limit" in res.output


def test_avss_validate_reports_a_bomb_mask_and_frame(tmp_path):
    from avsprep.datasets.avss import AVSSLayout

    root = _avss_root(tmp_path)
    layout = AVSSLayout.from_root(root)
    clip = layout.clips(["test"])[0]
    bomb_png(layout.mask_path(clip, 0))
    bomb_jpeg(layout.frame_path(clip, 1))
    table = tmp_path / "b.csv"
    assert CliRunner().invoke(cli, ["import", "--root", str(root), "-o", str(table), "--quiet"]).exit_code == 0
    res = CliRunner().invoke(cli, ["validate", str(table), "--root", str(root), "--json"])
    assert res.exit_code == 1 and "Traceback" not in res.output, res.output
    assert "mask-unreadable" in res.output and "frame-unreadable" in res.output and "over the limit" in res.output


# -- 3. JSON: depth and size capped before parsing -------------------------------------------------

DEEP = DEEP_JSON


def test_loads_limited_caps_depth_and_size():
    from avsprep.common.jsonread import JsonLimitError, loads_limited, nesting_depth

    assert nesting_depth('[{"a": "[[[[", "b": [1, {"c": "\\"]"}]}]') == 4  # brackets in strings skipped
    assert loads_limited("[" * 100 + "]" * 100) is not None
    with pytest.raises(JsonLimitError, match="100 levels"):
        loads_limited("[" * 101 + "]" * 101)
    with pytest.raises(JsonLimitError, match="100 levels"):
        loads_limited(DEEP)
    with pytest.raises(JsonLimitError, match="over the limit of 10"):
        loads_limited("[" + "1," * 20 + "1]", max_chars=10)


def test_createml_nested_100000_deep_is_a_finding_not_recursion_error():
    from avsprep.annotations.createml import parse_createml

    res = parse_createml(DEEP, "clip_1.json")
    assert not res.readable and [f.code for f in res.findings] == ["json-too-deep"]
    assert res.findings[0].file == "clip_1.json"


def test_import_of_a_deep_createml_file_names_it(small_s4, tmp_path):
    layout, clip = _first_clip(small_s4)
    frame = layout.frame_path(clip, 1)
    frame.with_suffix(".xml").unlink()
    frame.with_suffix(".json").write_text(DEEP)
    res = CliRunner().invoke(cli, ["import", "--root", str(small_s4), "-o", str(tmp_path / "b.csv"), "--json"])
    assert res.exit_code == 1 and "Traceback" not in res.output, res.output
    assert "json-too-deep" in res.output and f"{frame.stem}.json" in res.output


def test_propose_skips_over_a_deep_createml_file(small_s4):
    from avsprep.annotations.propose import existing_annotation_stems

    layout, clip = _first_clip(small_s4)
    p = layout.frame_path(clip, 1).with_suffix(".json")
    p.write_text(DEEP)
    assert p.name.rsplit(".", 1)[0] in existing_annotation_stems(layout.frames_dir())


def test_deep_label2idx_and_sidecar_are_one_line_errors(tmp_path):
    from avsprep.datasets.avss_classes import read_label2idx
    from avsprep.validate import load_sidecar

    p = tmp_path / "label2idx.json"
    p.write_text(DEEP)
    with pytest.raises(DataError, match="label2idx.json.*100 levels"):
        read_label2idx(p)
    table = tmp_path / "boxes.csv"
    table.write_text("x\n")
    from avsprep.annotations.table import sidecar_path

    sidecar_path(table).write_text(DEEP)
    assert [f.code for f in load_sidecar(table)] == ["findings-sidecar-unreadable"]


DEEP_YAML = ["names: " + "[" * 100_000 + "]" * 100_000,  # flow style: counted before parsing
             "names:\n" + "".join(" " * i + "- \n" for i in range(1200))]  # block style (720 KB): the parser's recursion


@pytest.mark.parametrize("text", DEEP_YAML, ids=["flow", "block"])
def test_a_deep_yolo_data_yaml_is_a_finding_naming_the_file(small_s4, tmp_path, text):
    layout, clip = _first_clip(small_s4)
    p = layout.frame_path(clip, 1).parent / "data.yaml"
    p.write_text(text)
    res = CliRunner().invoke(cli, ["import", "--root", str(small_s4), "-o", str(tmp_path / "b.csv"), "--json"])
    assert "Traceback" not in res.output and "RecursionError" not in res.output, res.output
    import json

    found = [f for f in json.loads(res.stdout)["findings"] if "data.yaml" in (f.get("file") or "")]
    assert [f["code"] for f in found] == ["yolo-class-file-bad"] and "nested" in found[0]["message"], found


def test_yaml_aliases_in_place_of_names_are_refused_not_expanded():
    from avsprep.annotations.yolo import parse_class_text

    bomb = ("a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
            "names: [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n")
    assert parse_class_text(bomb, "data.yaml") is None
    assert parse_class_text("names: {0: cat, 1: dog}", "data.yaml") == ["cat", "dog"]


@pytest.mark.parametrize("suffix, text", [(".yaml", DEEP_YAML[0]), (".yaml", DEEP_YAML[1]), (".json", DEEP)])
def test_a_deep_train_config_file_is_one_line(tmp_path, suffix, text):
    from avstrain.config import ConfigError, load_file

    p = tmp_path / f"cfg{suffix}"
    p.write_text(text)
    with pytest.raises(ConfigError, match="nested") as exc:
        load_file(p)
    assert str(p) in str(exc.value) and "\n" not in str(exc.value)


def test_raw_videos_of_the_demo_open_frames_through_the_guarded_opener(tmp_path):
    pytest.importorskip("av")
    from avsprep.datasets.avsbench import AVSBenchLayout
    from avsprep.demo import write_demo
    from avsprep.demo.raw_videos import write_raw_videos

    root = tmp_path / "root"
    write_demo(root, clips=3, seed=0, quiet=True)
    layout = AVSBenchLayout.from_root(root)
    frame = layout.frame_path(layout.clips()[0], 2)  # the first clip written
    bomb_png(frame)
    with pytest.raises(DataError) as exc:
        write_raw_videos(root, quiet=True)
    assert str(frame) in str(exc.value) and "over the limit" in str(exc.value) and "\n" not in str(exc.value)
