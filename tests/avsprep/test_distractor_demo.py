"""Feature: the demo with a silent distractor (issue 18, Build 3): each frame also shows a big,
bright, central object of a never-sounding class; nothing else in the clip changes."""

from __future__ import annotations

import hashlib

import numpy as np
from PIL import Image

from avsprep.demo import write_demo
from avsprep.demo.avsbench import (DISTRACTOR_DIR, SIZE, distractor_mask, plan_demo, render_audio, render_frames,
                                   silent_mask, with_distractor)
from avsprep.demo.render import SIGNATURES, SILENT_SIGNATURES


def test_silent_classes_never_sound_and_are_not_demo_classes():
    assert {s.category for s in SILENT_SIGNATURES}.isdisjoint(s.category for s in SIGNATURES)
    assert all(s.f0 == 0 for s in SILENT_SIGNATURES)


def test_distractor_changes_only_its_own_pixels():
    plain, dis = plan_demo(12, 3), with_distractor(plan_demo(12, 3))
    assert all(s.silent is None for s in plain) and all(s.silent is not None for s in dis)
    for a, b in zip(plain[:4], dis[:4]):
        fa, ma = render_frames(a)
        fb, mb = render_frames(b)
        assert np.array_equal(ma, mb)  # GT (sounding) and other-object masks unchanged
        assert np.array_equal(render_audio(a), render_audio(b))
        for k in range(5):
            d = distractor_mask(b, k)
            assert np.array_equal(fa[k][~d], fb[k][~d])  # every other pixel byte-identical
            assert not (d & mb[k, 0]).any()  # never part of the sounding object's mask


def test_distractor_is_bigger_brighter_and_central():
    for spec in with_distractor(plan_demo(24, 0)):
        frames, masks = render_frames(spec)
        cx, cy = spec.silent.centre(0)
        assert abs(cx - SIZE / 2) <= 16 and abs(cy - SIZE / 2) <= 16
        for k in range(5):
            whole, visible = silent_mask(spec, k), distractor_mask(spec, k)
            assert whole.sum() > masks[k, 0].sum() and whole.sum() > masks[k, 1].sum()
            luma = frames[k].astype(float).mean(axis=-1)
            assert luma[visible].mean() > luma[masks[k, 0]].mean() + 40


def test_written_demo_has_distractor_masks_and_plain_one_has_none(tmp_path):
    plain = write_demo(tmp_path / "plain", clips=6, seed=0, quiet=True)
    dis = write_demo(tmp_path / "dis", clips=6, seed=0, quiet=True, distractor=True)
    assert not (tmp_path / "plain" / DISTRACTOR_DIR).exists() and "distractor" not in plain["text"]
    assert "silent distractor" in dis["text"]
    pngs = sorted((tmp_path / "dis" / DISTRACTOR_DIR).rglob("*.png"))
    assert len(pngs) == 6 * 5
    assert all(np.asarray(Image.open(p)).max() == 255 for p in pngs)

    def digest(root, pattern):
        return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(root.rglob(pattern))}

    # same masks, audio and metadata; frames differ
    for pattern in ("*.wav", "*.pkl", "*.csv"):
        assert digest(tmp_path / "plain", pattern) == digest(tmp_path / "dis", pattern), pattern
    masks = [p for p in digest(tmp_path / "plain", "*.png") if "gt_masks" in p]
    assert masks and all(digest(tmp_path / "plain", "*.png")[p] == digest(tmp_path / "dis", "*.png")[p] for p in masks)


def test_demo_cli_distractor_flag_and_avss_refusal(tmp_path):
    """`avsprep demo --distractor` writes the distractor masks; with --setting avss it is a usage
    error (exit 2) before anything is written."""
    from click.testing import CliRunner

    from avsprep.cli import cli

    res = CliRunner().invoke(cli, ["demo", str(tmp_path / "d"), "--clips", "6", "--distractor", "--quiet"])
    assert res.exit_code == 0, res.output
    assert any((tmp_path / "d").rglob("distractor_masks/*/*.png"))
    res = CliRunner().invoke(cli, ["demo", str(tmp_path / "a"), "--setting", "avss", "--distractor"])
    assert res.exit_code == 2 and "--distractor is drawn in the S4/MS3 demo" in res.output
    assert not (tmp_path / "a").exists()
