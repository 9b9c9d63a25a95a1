"""Feature: the distractor demo (issue 18, Build 3): every frame also shows a big, bright, central
object of a third demo class. It is the sounding object in a share of the train/val clips (the
saliency bias of real videos) and silent in every test clip, where a model that segments the
salient object instead of listening lands on it."""

from __future__ import annotations

import hashlib

import numpy as np
from PIL import Image

from avsprep.demo import write_demo
from avsprep.demo.avsbench import (DISTRACTOR_DIR, SAMPLE_RATE, SIZE, big_mask, distractor_mask, plan_demo,
                                   render_audio, render_frames, with_distractor)
from avsprep.demo.render import SIGNATURES


def _peak_hz(pcm: np.ndarray) -> float:
    spec = np.abs(np.fft.rfft(pcm.astype(np.float64)))
    return float(np.fft.rfftfreq(len(pcm), 1 / SAMPLE_RATE)[int(spec.argmax())])


def test_big_object_is_a_third_class_and_sounds_only_in_train_val_share():
    specs = with_distractor(plan_demo(120, 1), classes=4, sounds=0.75)
    for s in specs:
        assert s.big.cls not in (s.objects[0].cls, s.objects[1].cls)
    test = [s for s in specs if s.split == "test"]
    trainval = [s for s in specs if s.split != "test"]
    assert test and not any(s.big_sounds for s in test)
    share = np.mean([s.big_sounds for s in trainval])
    assert 0.6 <= share <= 0.9, share
    assert not any(s.big_sounds for s in with_distractor(plan_demo(30, 1), sounds=0.0))
    assert all(s.big_sounds for s in with_distractor(plan_demo(30, 1), sounds=1.0) if s.split != "test")


def test_silent_big_object_changes_only_its_own_pixels():
    plain = plan_demo(24, 3)
    dis = with_distractor(plain, sounds=0.0)
    assert all(s.big is None for s in plain) and all(s.big is not None for s in dis)
    for a, b in zip(plain[:4], dis[:4]):
        fa, ma = render_frames(a)
        fb, mb = render_frames(b)
        assert np.array_equal(ma, mb)  # GT (sounding) and other-object masks unchanged
        assert np.array_equal(render_audio(a), render_audio(b))
        assert a.category == b.category
        for k in range(5):
            d = distractor_mask(b, k)
            assert d.any() and np.array_equal(fa[k][~d], fb[k][~d])  # every other pixel byte-identical
            assert not (d & mb[k, 0]).any()  # never part of the sounding object's mask


def test_sounding_big_object_owns_category_mask_and_tone():
    specs = [s for s in with_distractor(plan_demo(24, 2), sounds=1.0) if s.big_sounds]
    assert specs
    for s in specs[:3]:
        big = SIGNATURES[s.big.cls]
        assert s.category == big.category
        _frames, masks = render_frames(s)
        for k in range(5):
            assert np.array_equal(masks[k, 0], distractor_mask(s, k)) and masks[k, 0].any()
        tone = _peak_hz(render_audio(s))
        assert abs(tone - big.f0) < 0.05 * big.f0, (tone, big.f0)
        small = s.signature(0)
        assert abs(tone - small.f0) > 0.05 * small.f0  # the small object of the old category is silent now


def test_big_object_is_bigger_brighter_and_central():
    for spec in with_distractor(plan_demo(24, 0), sounds=0.0):
        frames, masks = render_frames(spec)
        cx, cy = spec.big.centre(0)
        assert abs(cx - SIZE / 2) <= 16 and abs(cy - SIZE / 2) <= 16
        sig = SIGNATURES[spec.big.cls]
        for k in range(5):
            whole, visible = big_mask(spec, k), distractor_mask(spec, k)
            assert whole.sum() > masks[k, 0].sum() and whole.sum() > masks[k, 1].sum()
            expected = np.minimum(np.asarray(sig.rgb, float) * spec.big.shade, 255)
            assert np.abs(frames[k][visible].mean(axis=0) - expected).max() <= 4  # brighter than the class colour


def test_written_demo_has_distractor_masks_for_silent_big_objects_only(tmp_path):
    plain = write_demo(tmp_path / "plain", clips=12, seed=0, quiet=True)
    dis = write_demo(tmp_path / "dis", clips=12, seed=0, quiet=True, distractor=True, distractor_sounds=0.5)
    assert not (tmp_path / "plain" / DISTRACTOR_DIR).exists() and "distractor" not in plain["text"]
    assert "silent distractor" in dis["text"]
    specs = with_distractor(plan_demo(12, 0), sounds=0.5)
    silent = [s for s in specs if not s.big_sounds]
    pngs = sorted((tmp_path / "dis" / DISTRACTOR_DIR).rglob("*.png"))
    assert len(pngs) == 5 * len(silent) and len(silent) < len(specs)
    assert {p.parent.name for p in pngs} >= {"test"}
    assert all(np.asarray(Image.open(p)).max() == 255 for p in pngs)

    def digest(root, pattern):
        return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(root.rglob(pattern)) if p.is_file()}

    # test clips: same masks and audio as the plain demo; the frames differ
    plain_d, dis_d = digest(tmp_path / "plain", "*"), digest(tmp_path / "dis", "*")
    test_masks = [p for p in plain_d if "gt_masks/test" in p or p.endswith(".wav") and "/test/" in p]
    assert test_masks and all(plain_d[p] == dis_d[p] for p in test_masks)
    assert any(plain_d[p] != dis_d[p] for p in plain_d if "visual_frames/test" in p and p.endswith(".png"))


def test_demo_cli_distractor_flag_and_refusals(tmp_path):
    """`avsprep demo --distractor` writes the distractor masks; with --setting avss or --like it
    is a usage error (exit 2) before anything is written."""
    from click.testing import CliRunner

    from avsprep.cli import cli

    res = CliRunner().invoke(cli, ["demo", str(tmp_path / "d"), "--clips", "6", "--distractor",
                                   "--distractor-sounds", "0", "--quiet"])
    assert res.exit_code == 0, res.output
    assert len(list((tmp_path / "d").rglob("distractor_masks/*/*.png"))) == 30
    res = CliRunner().invoke(cli, ["demo", str(tmp_path / "a"), "--setting", "avss", "--distractor"])
    assert res.exit_code == 2 and "--distractor is drawn in the S4/MS3 demo" in res.output
    assert not (tmp_path / "a").exists()
    like = tmp_path / "like.csv"
    like.write_text("name,start,category,split\nx1,0,dog_barking,train\nx2,0,dog_barking,val\nx3,0,dog_barking,test\n")
    res = CliRunner().invoke(cli, ["demo", str(tmp_path / "l"), "--like", str(like), "--distractor"])
    assert res.exit_code == 2 and "--like" in res.output and not (tmp_path / "l").exists()
