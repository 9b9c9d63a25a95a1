"""avstrain convert: official AVSBench state dicts <-> avstrain checkpoints; no partial loads.

Key layouts come from ``../shared/fixtures/avsbench_official/`` (every key and shape of both
official models); mapping tests run on meta tensors, so they cost no memory."""

from __future__ import annotations

import json

import pytest
import torch

from avstrain.convert import (compare_shapes, detect_backbone, official_to_ours, ours_to_official,
                              tpavi_stages_of, unwrap_state_dict)
from tests.conftest import FIXTURES, need


def official_layout(backbone: str) -> list:
    path = need(FIXTURES / "avsbench_official" / f"state_dict_{backbone}.json")
    return json.loads(path.read_text())["keys"]


def meta_official(backbone: str) -> dict:
    dt = {"float32": torch.float32, "int64": torch.int64}
    return {k: torch.empty(shape, dtype=dt[d], device="meta") for k, shape, d in official_layout(backbone)}


def our_shapes(backbone: str) -> dict:
    from avstrain.models import build_avs_model

    with torch.device("meta"):
        model = build_avs_model(backbone)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


@pytest.mark.parametrize("backbone", ["resnet50", "pvt_v2_b5"])
def test_official_keys_map_onto_every_tensor_of_our_model(backbone):
    sd = meta_official(backbone)
    assert detect_backbone(sd) == backbone
    assert tpavi_stages_of(sd) == [0, 1, 2, 3]
    m = official_to_ours(sd, backbone)
    missing, unexpected, wrong = compare_shapes(our_shapes(backbone), {k: tuple(v.shape) for k, v in m.state_dict.items()})
    assert (missing, unexpected, wrong) == ([], [], [])
    assert m.unexpected == []
    if backbone == "resnet50":
        # the unused layer3_2/layer4_2 branch: 114 + 60 tensors, 22,063,104 parameters
        assert len(m.dropped) == 174
        params = [k for k in m.dropped if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
        assert sum(sd[k].numel() for k in params) == 22_063_104
        assert len(m.state_dict) == 456
    else:
        assert m.dropped == [] and len(m.state_dict) == 1190


@pytest.mark.parametrize("backbone", ["resnet50", "pvt_v2_b5"])
def test_export_gives_exactly_the_official_keys_and_shapes(backbone):
    official = {k: tuple(s) for k, s, _ in official_layout(backbone)}
    ours = official_to_ours(meta_official(backbone), backbone).state_dict
    back = ours_to_official(ours, backbone)
    assert compare_shapes(official, {k: tuple(v.shape) for k, v in back.items()}) == ([], [], [])


def test_round_trip_keeps_every_used_tensor_and_copies_the_unused_branch():
    sd = {k: torch.full(tuple(s) if s else (), float(i)) if d == "float32" else torch.tensor(i)
          for i, (k, s, d) in enumerate(official_layout("resnet50")) if "layer" not in k or "layer1" in k
          or "layer3_" in k or "layer4_" in k}
    ours = official_to_ours(sd, "resnet50").state_dict
    back = ours_to_official(ours, "resnet50")
    for k, v in sd.items():
        if "layer3_2" in k or "layer4_2" in k:
            assert torch.equal(back[k], sd[k.replace("_2.", "_1.")]), k  # written from the used branch
        else:
            assert torch.equal(back[k], v), k


@pytest.mark.parametrize("wrap", ["plain", "module", "model", "state_dict"])
def test_unwrap_accepts_the_ways_official_files_are_passed_around(wrap):
    sd = {"resnet.conv1.weight": torch.zeros(1), "conv1.conv2d_list.0.bias": torch.zeros(1)}
    obj = {"plain": sd, "module": {f"module.{k}": v for k, v in sd.items()},
           "model": {"model": sd, "epoch": 3}, "state_dict": {"state_dict": sd}}[wrap]
    assert list(unwrap_state_dict(obj)) == list(sd)


def test_unknown_keys_are_reported_not_dropped():
    sd = meta_official("resnet50")
    sd["extra_head.weight"] = torch.empty(3, device="meta")
    assert official_to_ours(sd, "resnet50").unexpected == ["extra_head.weight"]
