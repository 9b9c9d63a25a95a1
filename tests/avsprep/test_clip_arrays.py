"""Feature: one ``clip_arrays`` for every setting gives the arrays the two old per-setting copies gave.

The digests below were computed by the code before the merge (``build.clip_arrays`` for S4,
``build.avss_clip.avss_clip_arrays`` for AVSS, commit 5358f90) on the same inputs: an S4 clip
whose frames and masks are not 224x224 (so the resize and the box scaling matter), and two AVSS
clips (v2 train: short edge + centre crop; v1s train: padded, one mask). The boxes include a
rescaled one, a non-finite one, an unknown label and (AVSS) the ``h orse`` typo.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

S4_BOXES = [  # (frame, label, xml_width, xml_height, xmin, ymin, xmax, ymax)
    (1, "dog_barking", 224, 224, 20.0, 30.0, 120.0, 150.0),
    (1, "Dog Barking", 300, 200, 50.0, 40.0, 90.0, 80.0),
    (2, "not_a_class", 224, 224, 10.0, 10.0, 60.0, 70.0),
    (3, "horse_clip-clop", 0, 0, 100.0, 20.0, 310.0, 190.0),
    (4, "dog_barking", 224, 224, float("nan"), 5.0, 40.0, 50.0),
]


def _digest(arrays: dict) -> dict:
    out = {}
    for k in sorted(arrays):
        v = arrays[k]
        if isinstance(v, str):
            out[k] = v
            continue
        a = np.ascontiguousarray(v)
        out[k] = hashlib.sha256(f"{a.dtype}{a.shape}".encode() + a.tobytes()).hexdigest()[:16]
    return out


def s4_case(base: Path):
    """(layout, clip, boxes): the test clip of a 3-clip demo, frames and masks resized to 300x200."""
    from PIL import Image

    from avsprep.datasets.avsbench import AVSBenchLayout
    from avsprep.demo import write_demo

    root = base / "s4"
    write_demo(root, clips=3, seed=5, quiet=True)
    layout = AVSBenchLayout.from_root(root)
    clip = layout.clips(["test"])[0]
    for k in range(1, 6):
        for p, resample in ((layout.frame_path(clip, k), Image.BILINEAR), (layout.mask_path(clip, k), Image.NEAREST)):
            with Image.open(p) as im:
                im.resize((300, 200), resample).save(p)
    return layout, clip, S4_BOXES


def avss_case(base: Path):
    """(layout, [(clip, boxes)]): a v2 train clip and a v1s train clip of a small AVSS demo."""
    from avsprep.datasets.avss import AVSSLayout
    from avsprep.demo.avss import write_avss_demo

    root = base / "avss"
    write_avss_demo(root, clips=3, seed=4, quiet=True)
    layout = AVSSLayout.from_root(root)
    out = []
    for subset in ("v2", "v1s"):
        clip = next(c for c in layout.clips(["train"]) if c.subset == subset)
        first = clip.a_obj[0]
        boxes = [
            (0, first, 400, 224, 30.0, 20.0, 150.0, 120.0),
            (0, "h orse", 400, 224, 200.0, 50.0, 390.0, 220.0),
            (1, first, 200, 112, 10.0, 10.0, 60.0, 70.0),
            (2, "nothing", 0, 0, 5.0, 5.0, 300.0, 200.0),
            (3, first, 400, 224, 1.0, float("inf"), 40.0, 50.0),
            (7, first, 400, 224, 100.0, 100.0, 140.0, 160.0),
        ]
        out.append((clip, boxes))
    return layout, out


# Digests from the code before the merge (see the module docstring). S4: the three crop policies
# pick the same box on every frame of this clip, so one table serves all three.
S4_WANT = {
    "audio_logmel": "808bade57fe9f000",
    "audio_source": "pickle",
    "boxes": "c2982bdc41383879",
    "crop_valid": "1dccd5a7578850b5",
    "crops": "7da182524c2b3ffe",
    "frames": "a3bee4c9a2a4bbe9",
    "label": "ab0ae0475c308135",
    "mask_valid": "c6e2f20ab6cd8764",
    "masks": "283ebd9b1329a1a0",
    "video": "-PSbQ_L5z2H"
}

# AVSS: what every policy gives, then what each policy changes (the crops and their labels).
AVSS_COMMON = {
    "v1s": {
        "audio_logmel": "bd11f7cac93383df",
        "audio_source": "wav",
        "boxes": "5e152434574ccc77",
        "crop_valid": "03c6922f5509b1f5",
        "frame_valid": "dc08fc8993bcc62c",
        "frames": "e4d34016fc171561",
        "gt_flag": "0e6a4cfca8bd1add",
        "label": "7a0a5b3ae7253597",
        "mask_valid": "0e6a4cfca8bd1add",
        "masks": "80eb0ab9041759c2",
        "subset": "v1s",
        "video": "2_xWVNJG4AR_39000_44000"
    },
    "v2": {
        "audio_logmel": "f776ca853cfc5a4a",
        "audio_source": "wav",
        "boxes": "003cb0285cfe2b3f",
        "crop_valid": "19c9b59fa629c109",
        "frame_valid": "2accedf19bddd330",
        "frames": "bef439ecf6a431d9",
        "gt_flag": "2accedf19bddd330",
        "label": "7a0a5b3ae7253597",
        "mask_valid": "2accedf19bddd330",
        "masks": "34425f7f24b0fc2f",
        "subset": "v2",
        "video": "7lhFmKwMCMo_21000_31000"
    }
}
AVSS_BY_POLICY = {
    "first": {
        "v1s": {
            "crop_label": "8a449f54d08bf301",
            "crops": "0d68b55d4357b943"
        },
        "v2": {
            "crop_label": "833015bea2502fb3",
            "crops": "04c553f081880270"
        }
    },
    "largest": {
        "v1s": {
            "crop_label": "5a4276efae252400",
            "crops": "6b44fd3971241234"
        },
        "v2": {
            "crop_label": "03f9693c2c0e75be",
            "crops": "fa148f2918e157ab"
        }
    },
    "union": {
        "v1s": {
            "crop_label": "5a4276efae252400",
            "crops": "0f0788ebe95eb5fa"
        },
        "v2": {
            "crop_label": "03f9693c2c0e75be",
            "crops": "14180576cdefce31"
        }
    }
}


@pytest.mark.parametrize("policy", ["largest", "first", "union"])
def test_s4_clip_arrays_unchanged(tmp_path, policy):
    from avsprep.build.clip import clip_arrays

    layout, clip, boxes = s4_case(tmp_path)
    got = _digest(clip_arrays(layout, clip, boxes, 32, policy, 0))
    assert got == S4_WANT


@pytest.mark.parametrize("policy", ["largest", "first", "union"])
def test_avss_clip_arrays_unchanged(tmp_path, policy):
    from avsprep.build.clip import clip_arrays

    layout, cases = avss_case(tmp_path)
    got = {clip.subset: _digest(clip_arrays(layout, clip, boxes, 32, policy, 3)) for clip, boxes in cases}
    assert got == {s: {**AVSS_COMMON[s], **AVSS_BY_POLICY[policy][s]} for s in AVSS_COMMON}


def test_steps_per_clip_have_one_home(tmp_path):
    """Layouts, the shard schema and the demos agree with datasets.steps (5 for S4/MS3, 10 for AVSS)."""
    from avsprep.datasets.avsbench import FRAMES, AVSBenchLayout
    from avsprep.datasets.avss import AVSSLayout
    from avsprep.datasets.steps import STEPS_PER_CLIP
    from avsprep.shards.schema import dataset_schema

    assert STEPS_PER_CLIP == {"s4": 5, "ms3": 5, "avss": 10} and FRAMES == 5
    layouts = {"s4": AVSBenchLayout(tmp_path, "s4"), "ms3": AVSBenchLayout(tmp_path, "ms3"), "avss": AVSSLayout(tmp_path)}
    for setting, layout in layouts.items():
        assert layout.steps == STEPS_PER_CLIP[setting]
        assert dataset_schema(1, 8, False, setting=setting)["frames"][0][1] == STEPS_PER_CLIP[setting]


def test_on_bad_input_policy_is_one_table():
    """The error policy is the handler table ``build.workers.ON_BAD_INPUT``; the CLI offers its keys."""
    from avsprep.build.workers import ON_BAD_INPUT
    from avsprep.cli import build

    option = next(p for p in build.params if p.name == "on_bad_input")
    assert list(option.type.choices) == list(ON_BAD_INPUT) == ["stop", "skip"]
