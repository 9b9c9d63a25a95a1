"""Feature: shard dataset of uint8 tensors, device-side normalisation, (seed, epoch)-pure order."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avstrain.data import (IMAGENET_MEAN, IMAGENET_STD, ShardDataset, apply_augmentation, collate, eval_batches,
                           make_eval_loader, make_loader, set_loader_epoch, to_device)
from tests.helpers.train import tiny_shards


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return tiny_shards(tmp_path_factory.getbasetemp())


def test_items_are_uint8_tensors(shards):
    from avsprep.shards import ShardSet

    ds = ShardDataset(shards, "train")
    ref = ShardSet(shards, split="train")
    assert len(ds) == len(ref) == 8
    it = ds[3]
    assert it["frames"].dtype == torch.uint8 and it["frames"].shape == (5, 224, 224, 3)
    assert it["masks"].dtype == torch.uint8 and it["crops"].dtype == torch.uint8
    assert it["crops"].shape == (5, 32, 32, 3)
    assert it["mask_valid"].tolist() == [True, False, False, False, False]  # S4 train: frame 1 only
    np.testing.assert_array_equal(it["frames"].numpy(), ref[3]["frames"])
    assert it["video"] == ref.names[3] and it["index"] == 3


def test_to_device_normalises_and_keeps_row_order(shards):
    ds = ShardDataset(shards, "val")
    cpu = collate([ds[0], ds[1]])
    b = to_device(cpu, torch.device("cpu"))
    assert b["frames"].shape == (10, 3, 224, 224) and b["frames"].dtype == torch.float32
    # row b*5 + t is clip b frame t, normalised with the ImageNet mean/std
    raw = ds[1]["frames"][2].numpy().astype(np.float64) / 255.0  # [S,S,3]
    want = (raw - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    np.testing.assert_allclose(b["frames"][1 * 5 + 2].permute(1, 2, 0).numpy(), want, atol=1e-5)
    assert b["masks"].shape == (10, 224, 224) and set(b["masks"].unique().tolist()) <= {0.0, 1.0}
    np.testing.assert_array_equal(b["masks"][7].numpy(), ds[1]["masks"][2].numpy())
    assert b["audio_logmel"].shape == (10, 1, 96, 64)
    small = to_device(cpu, torch.device("cpu"), image_size=64)
    assert small["frames"].shape == (10, 3, 64, 64) and small["masks"].shape == (10, 224, 224)


def _order(loader, seed, epoch, skip=0):
    set_loader_epoch(loader, seed, epoch, skip)
    return [i for batch in loader for i in batch["index"]]


def test_order_is_a_function_of_seed_and_epoch(shards):
    ds = ShardDataset(shards, "train")
    a = make_loader(ds, 2, shuffle=True, seed=5)
    b = make_loader(ds, 2, shuffle=True, seed=5)
    e0, e1 = _order(a, 5, 0), _order(a, 5, 1)
    assert sorted(e0) == list(range(8)) and e0 != e1
    assert _order(b, 5, 1) == e1 and _order(b, 5, 0) == e0  # any call order, any loader
    assert _order(b, 5, 1, skip=2) == e1[4:]  # mid-epoch resume skips the trained batches


def test_distributed_sampler_partitions(shards, monkeypatch):
    ds = ShardDataset(shards, "train")
    import torch.distributed as dist

    monkeypatch.setattr(dist, "is_available", lambda: True)
    parts = []
    for rank in range(2):
        monkeypatch.setattr(dist, "get_world_size", lambda: 2)
        monkeypatch.setattr(dist, "get_rank", lambda rank=rank: rank)
        loader = make_loader(ds, 2, shuffle=True, seed=1, distributed=True)
        parts.append(set(_order(loader, 1, 3)))
    assert parts[0].isdisjoint(parts[1]) and parts[0] | parts[1] == set(range(8))


def test_eval_batches_do_not_depend_on_world_size():
    single = eval_batches(10, 4)
    assert single == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    split = eval_batches(10, 4, 0, 2) + eval_batches(10, 4, 1, 2)
    assert sorted(split) == single


def test_eval_loader_in_order(shards):
    ds = ShardDataset(shards, "val")
    assert [b["index"] for b in make_eval_loader(ds, 1)] == [[0], [1]]


def test_shuffled_audio(shards):
    ds = ShardDataset(shards, "test")
    sh = ShardDataset(shards, "test", audio_from=[1, 0])
    assert torch.equal(sh[0]["audio_logmel"], ds[1]["audio_logmel"])
    assert torch.equal(sh[0]["frames"], ds[0]["frames"])
    derived = ds.with_audio_from([1, 0])  # shares the reader: no second hash of the shards
    assert derived._reader is ds._reader and ds.audio_from is None
    for i in range(2):
        assert torch.equal(derived[i]["audio_logmel"], sh[i]["audio_logmel"])
        assert torch.equal(derived[i]["frames"], sh[i]["frames"])
    with pytest.raises(ValueError, match="audio_from"):
        ds.with_audio_from([0])


def test_augmentation_same_on_all_frames_and_masks():
    import albumentations as A

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (5, 32, 32, 3), dtype=np.uint8)
    masks = (rng.random((5, 32, 32)) > 0.5).astype(np.uint8)
    targets = {f"image{t}": "image" for t in range(1, 5)} | {f"mask{t}": "mask" for t in range(1, 5)}
    flip = A.Compose([A.HorizontalFlip(p=1.0)], additional_targets=targets)
    f, m = apply_augmentation(flip, frames, masks)
    np.testing.assert_array_equal(f, frames[:, :, ::-1])
    np.testing.assert_array_equal(m, masks[:, :, ::-1])
    from avstrain.data import augmentation_pipeline

    pipe = augmentation_pipeline()
    for _ in range(6):  # random draw: either every mask is flipped or none is
        _, m = apply_augmentation(pipe, frames, masks)
        flipped = [np.array_equal(m[t], masks[t, :, ::-1]) for t in range(5)]
        assert all(flipped) or not any(flipped)


def test_derangement_has_no_fixed_point():
    from avstrain.evaluation import derangement

    for n in (2, 3, 7, 50):
        d = derangement(n, seed=3)
        assert sorted(d) == list(range(n)) and all(d[i] != i for i in range(n))
    assert derangement(9, seed=3) == derangement(9, seed=3)


def test_augmentation_draws_are_a_function_of_seed_epoch_and_index(shards):
    """The training sampler hands each item its own augmentation seed, so a resumed run
    (and any worker count) draws the same flips; another epoch draws anew."""
    from avstrain.data import item_seed

    ds = ShardDataset(shards, "train", augment=True)
    plain = ShardDataset(shards, "train")
    seeds = [item_seed(123, e, 2) for e in range(8)]
    assert item_seed(123, 0, 2) == seeds[0] and len(set(seeds)) == 8
    a, b = ds[(2, seeds[0])], ds[(2, seeds[0])]
    assert torch.equal(a["frames"], b["frames"]) and torch.equal(a["masks"], b["masks"])
    outs = {ds[(2, s)]["frames"].numpy().tobytes() for s in seeds}
    assert len(outs) > 1  # different epochs, different draws
    assert torch.equal(plain[2]["frames"], ShardDataset(shards, "train")[(2, seeds[0])]["frames"])  # no aug: seed unused

    loader = make_loader(ds, batch_size=2, shuffle=True, seed=123, workers=0)
    set_loader_epoch(loader, 123, 3)
    first = [x["frames"] for x in loader]
    set_loader_epoch(loader, 123, 3)
    again = [x["frames"] for x in loader]
    assert all(torch.equal(x, y) for x, y in zip(first, again))
