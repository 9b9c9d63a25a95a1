"""Feature: AVSS shards equal what the official AVSS loader produces for the same clips.

The tree is laid out here from docs/reference/avss.md 1.3-1.4 (non-224 JPEG frames,
palette masks with out-of-palette colours, a v1s, a v1m and a v2 clip); the
"official" side is re-stated in this file from the reference's step-by-step
description with torchvision transforms (Resize(224) + CenterCrop(224) for
train, Resize((224, 224)) for val/test; PIL bilinear for frames, nearest for
masks; ToTensor + ImageNet Normalize; 71 colour-equality maps + argmax; zero
padding to 10 steps; the flag table), independent of avsprep.datasets.avss_loader.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from avsprep.datasets.avss_classes import PALETTE, label2idx_json
from avsprep.datasets.avss_loader import geometry
from avsprep.build import BuildOptions, build_shards
from avsprep.shards import ShardSet

H_FLAG = {"v1s": ([1] * 5 + [0] * 5, [1] + [0] * 9), "v1m": ([1] * 5 + [0] * 5, [1] * 5 + [0] * 5),
          "v2": ([1] * 10, [1] * 10)}
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
# (uid, subset, split, frame size W x H, real frames, a_obj, wav rate: 48 kHz stereo as released,
# 16 kHz elsewhere only to keep the test fast)
CLIPS = [
    ("-aB_cD3eF4g_1000_11000", "v2", "train", (640, 360), 10, "dog_piano", 48000),
    ("xY1_23456789_0", "v1m", "train", (300, 420), 5, "man", 16000),
    ("QwErTyUiOp1_5000_10000", "v1s", "train", (500, 281), 5, "horse", 16000),
    ("ZxCvBnMaSdF_0_5000", "v1s", "test", (333, 250), 5, "dog", 16000),
    ("PoIuYtReWqA_20000_30000", "v2", "val", (400, 224), 10, "car_cat", 16000),
]


def _write_png(path, arr, mode):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr, mode).save(path)


def _layout_tree(root):
    """The release tree of CLIPS, 48 kHz stereo wavs, masks with a few off-palette pixels."""
    import soundfile as sf
    from PIL import Image

    rng = np.random.default_rng(3)
    rows = ["vid,uid,s_min,s_sec,a_obj,split,label"]
    for uid, subset, split, (w, h), n, a_obj, rate in CLIPS:
        base = root / subset / uid
        (base / "frames").mkdir(parents=True)
        for i in range(n):
            img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            Image.fromarray(img).save(base / "frames" / f"{i}.jpg", quality=90)
        n_masks = 1 if (subset == "v1s" and split == "train") else n
        for i in range(n_masks):
            idx = np.zeros((h, w), np.uint8)
            idx[h // 4: h // 2, w // 5: w // 2] = 17  # dog
            idx[h // 2:, w // 2:] = 47 if "piano" in a_obj else 41
            rgb = PALETTE[idx].copy()
            rgb[0:3, 0:7] = (1, 2, 3)  # not a palette colour: the official loader gives 0
            rgb[h - 2:, w - 5:] = (255, 255, 255)
            _write_png(base / "labels_rgb" / f"{i}.png", rgb, "RGB")
        seconds = 10 if subset == "v2" else 5
        t = np.arange(rate * seconds) / rate
        stereo = np.stack([0.3 * np.sin(2 * np.pi * 440 * t), 0.2 * np.sin(2 * np.pi * 660 * t)], 1)
        sf.write(base / "audio.wav", (stereo * 32767).astype(np.int16), rate, subtype="PCM_16")
        vid = uid if subset == "v1m" else uid.rsplit("_", 2)[0]
        rows.append(f"{vid},{uid},0,0,{a_obj},{split},{subset}")
    (root / "metadata.csv").write_text("\n".join(rows) + "\n")
    (root / "label2idx.json").write_text(label2idx_json())


def official_item(root, uid, subset, split):
    """docs/reference/avss.md 1.4 steps 2-7 and 2 (audio), re-stated with torchvision."""
    from PIL import Image
    from torchvision import transforms as T

    from avsprep.audio import read_wav, waveform_to_examples

    base = root / subset / uid
    n = len([p for p in (base / "frames").iterdir()])  # listdir count
    if split == "train":
        img_tf = T.Compose([T.Resize(224, interpolation=T.InterpolationMode.BILINEAR), T.CenterCrop(224)])
        mask_tf = T.Compose([T.Resize(224, interpolation=T.InterpolationMode.NEAREST), T.CenterCrop(224)])
    else:
        img_tf = T.Resize((224, 224), interpolation=T.InterpolationMode.BILINEAR)
        mask_tf = T.Resize((224, 224), interpolation=T.InterpolationMode.NEAREST)
    norm = T.Compose([T.ToTensor(), T.Normalize(MEAN, STD)])
    imgs = [norm(img_tf(Image.open(base / "frames" / f"{i}.jpg").convert("RGB"))) for i in range(n)]
    masks = []
    for i in range(len(list((base / "labels_rgb").iterdir()))):
        rgb = np.asarray(mask_tf(Image.open(base / "labels_rgb" / f"{i}.png").convert("RGB")))
        maps = np.stack([(rgb == PALETTE[c]).all(axis=-1) for c in range(71)])  # [71, H, W]
        masks.append(torch.from_numpy(maps.argmax(axis=0)).long())
    while len(imgs) < 10:
        imgs.append(torch.zeros(3, 224, 224))
    while len(masks) < 10:
        masks.append(torch.zeros(224, 224, dtype=torch.long))
    vid, gt = H_FLAG[subset]
    wave, sr = read_wav(base / "audio.wav")
    ex = waveform_to_examples(wave, sr)
    audio = torch.zeros(10, 1, 96, 64)
    audio[: len(ex)] = torch.from_numpy(ex)[:, None]
    return torch.stack(imgs), torch.stack(masks), torch.tensor(vid, dtype=torch.float32), \
        torch.tensor(gt, dtype=torch.float32), audio


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("avss") / "release"
    _layout_tree(root)
    table = root.parent / "boxes.csv"
    from avsprep.annotations.table import from_records, write_table

    uid = CLIPS[0][0]  # v2 train 640x360: a box on frame 3, labelled dog (index 17)
    write_table(from_records([{"split": "train", "category": "v2", "video": uid, "frame": 3, "xml": "x.xml",
                               "xml_width": 640.0, "xml_height": 360.0, "label": "dog", "xmin": 20.0,
                               "ymin": 90.0, "xmax": 200.0, "ymax": 180.0, "difficult": 0,
                               "source_convention": "zero-based", "verified": False}]), table)
    out = root.parent / "shards"
    build_shards(table, root, out, BuildOptions(clips_per_shard=2), quiet=True)
    return root, out


@pytest.mark.parametrize("uid,subset,split", [(c[0], c[1], c[2]) for c in CLIPS], ids=lambda v: str(v))
def test_shard_equals_official_item(built, uid, subset, split):
    root, out = built
    imgs, masks, vid, gt, audio = official_item(root, uid, subset, split)
    with ShardSet(out, split=split) as s:
        item = s[s.index(uid)]
    assert item["subset"] == subset
    # frames: our uint8 frame through ToTensor + Normalize; padded steps are zero after normalisation
    ours = (torch.from_numpy(item["frames"]).permute(0, 3, 1, 2).float() / 255 - torch.tensor(MEAN)[:, None, None]) \
        / torch.tensor(STD)[:, None, None]
    ours[~torch.from_numpy(item["frame_valid"])] = 0
    assert torch.allclose(ours, imgs, atol=1e-6, rtol=0)
    assert np.array_equal(item["masks"].astype(np.int64), masks.numpy())
    assert np.array_equal(item["frame_valid"].astype(np.float32), vid.numpy())
    assert np.array_equal(item["gt_flag"].astype(np.float32), gt.numpy())
    assert np.array_equal(item["audio_logmel"], audio[:, 0].numpy())
    # the off-palette corner is background; the classes survive
    assert item["masks"][0, 0, 0] == 0 and {17} <= set(np.unique(item["masks"][0]).tolist())


def test_shard_attributes_record_subset_decoding_padding(built):
    import h5py

    _, out = built
    f = h5py.File(next((out / "train").glob("shard-*.h5")), "r")
    with f:
        assert f.attrs["setting"] == "avss" and int(f.attrs["frames"]) == 10
        assert json.loads(f.attrs["mask_decoding"])["palette"] == "avss-71" and "padded" in f.attrs["padding"]
        assert "off-palette colours -> 0" in f.attrs["avss_mask_decoding"]
        assert set(json.loads(f.attrs["subsets"])) <= {"v1s", "v1m", "v2"}
        assert f["masks"].shape[1:] == (10, 224, 224)


def test_geometry_examples_from_reference():
    g = geometry(640, 360, "train")  # docs/reference/avss.md 1.4.3: 640x360 -> 398x224, crop at x = 87
    assert (g.rw, g.rh, g.x0, g.y0) == (398, 224, 87, 0)
    assert geometry(640, 360, "val") == geometry(640, 360, "test")
    assert (geometry(640, 360, "val").rw, geometry(640, 360, "val").rh) == (224, 224)
    # a box on the full frame follows the same map (and is clipped to the crop)
    assert g.box(0, 0, 640, 360) == (0.0, 0.0, 224.0, 224.0)
    x0, y0, x1, y1 = g.box(320, 90, 400, 180)
    assert x0 == pytest.approx(320 * 398 / 640 - 87) and y1 == pytest.approx(180 * 224 / 360)


def test_box_follows_the_geometry_and_crop_is_cut_full_res(built):
    from PIL import Image

    from avsprep.build.crops import crop_and_resize

    root, out = built
    uid = CLIPS[0][0]
    with ShardSet(out, split="train") as s:
        item = s[s.index(uid)]
    assert item["boxes"].shape == (1, 7)
    _, frame, cls, *xyxy = item["boxes"][0].tolist()
    assert (frame, cls) == (4, 17)  # stored as step 1..T like S4 shards; file index 3
    g = geometry(640, 360, "train")
    want = g.box(20, 90, 200, 180)  # x0 clipped: 20 * 398/640 - 87 < 0
    assert want[0] == 0.0
    np.testing.assert_allclose(xyxy, want, atol=1e-4)
    full = np.asarray(Image.open(root / "v2" / uid / "frames" / "3.jpg").convert("RGB"))
    assert item["crop_valid"].tolist() == [False] * 3 + [True] + [False] * 6
    assert np.array_equal(item["crops"][3], crop_and_resize(full, (20, 90, 200, 180), 224))
    assert item["crop_label"][3] == 17 and (item["crop_label"][item["crop_valid"] == 0] == -1).all()
