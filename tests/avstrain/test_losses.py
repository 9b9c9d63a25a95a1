"""Feature: AVSBench BCE / AVM-KL losses and the crop losses, with validity masks."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from avstrain.config import TrainConfig
from avstrain.losses import (
    LossWeights,
    avm_kl,
    crop_audio_cosine,
    crop_ce,
    crop_pairwise,
    ms3_bce,
    s4_bce,
    total_loss,
)
from avstrain.system import loss_weights

B, T, S = 2, 5, 8


def _seg(seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(B * T, 1, S, S, generator=g) * 2).requires_grad_(True)
    masks = (torch.rand(B, T, S, S, generator=g) < 0.4).to(torch.uint8)
    valid = torch.zeros(B, T, dtype=torch.bool)
    valid[:, 0] = True  # S4 train: frame 1 only
    return logits, masks, valid


def test_s4_bce_equals_sigmoid_bceloss_on_frame_one():
    logits, masks, valid = _seg()
    got = s4_bce(logits, masks, valid)
    rows = [0, 5]
    ref = nn.BCELoss()(torch.sigmoid(logits[rows]), masks.reshape(B * T, 1, S, S)[rows].float())
    assert torch.allclose(got, ref, atol=1e-6)


def test_s4_bce_ignores_frames_without_mask():
    logits, masks, valid = _seg()
    before = s4_bce(logits, masks, valid)
    changed = logits.detach().clone()
    changed[[1, 2, 3, 4, 6, 9]] = torch.randn(6, 1, S, S) * 10
    changed[7] = float("inf")
    assert torch.equal(s4_bce(changed, masks, valid), before)
    before.backward()
    assert logits.grad[[1, 2, 3, 4]].abs().sum() == 0 and logits.grad[0].abs().sum() > 0


def test_ms3_bce_all_frames_and_zero_valid():
    logits, masks, _ = _seg(1)
    ref = nn.BCELoss()(torch.sigmoid(logits), masks.reshape(B * T, 1, S, S).float())
    assert torch.allclose(ms3_bce(logits, masks), ref, atol=1e-6)
    none = s4_bce(logits, masks, torch.zeros(B, T, dtype=torch.bool))
    assert none.item() == 0.0 and none.requires_grad
    none.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def _avm_inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B * T, 1, 32, 32, generator=g)
    maps = [torch.relu(torch.randn(B * T, 6, s, s, generator=g)) for s in (8, 4, 2, 1)]
    audio = [torch.randn(B, T, 6, generator=g) for _ in range(4)]
    return logits, maps, audio


def test_avm_kl_matches_reference_formula():
    logits, maps, audio = _avm_inputs()
    got = avm_kl(logits, maps, audio, stages=(0, 1, 2, 3))
    total = 0.0
    for i in range(4):
        h = maps[i].shape[-1]
        m = torch.sigmoid(nn.AdaptiveAvgPool2d((h, h))(logits))
        v = torch.mean(maps[i] * m, dim=(-2, -1))
        a = audio[i].reshape(-1, 6)
        total = total + F.kl_div(torch.softmax(v, -1).log(), torch.softmax(a, -1), reduction="sum")
    assert torch.allclose(got, total / 4, rtol=1e-5)
    # explicit KL(softmax(a) || softmax(v)) on one stage
    pa, pv = torch.softmax(audio[3].reshape(-1, 6), -1), torch.softmax(
        (maps[3] * torch.sigmoid(logits.mean(dim=(2, 3), keepdim=True))).mean(dim=(2, 3)), -1
    )
    assert torch.allclose(avm_kl(logits, maps, audio, stages=(3,)), (pa * (pa / pv).log()).sum(), rtol=1e-5)


def test_avm_kl_stage_without_audio():
    logits, maps, audio = _avm_inputs()
    audio[1] = None
    with pytest.raises(ValueError, match="stage 1"):
        avm_kl(logits, maps, audio)
    assert avm_kl(logits, maps, audio, stages=(0, 2)).item() > 0


def _crops(seed=0, d=7, k=4):
    g = torch.Generator().manual_seed(seed)
    feat = torch.randn(B, T, d, generator=g).requires_grad_(True)
    logits = torch.randn(B, T, k, generator=g).requires_grad_(True)
    valid = torch.tensor([[1, 1, 0, 1, 0], [0, 1, 0, 0, 0]], dtype=torch.bool)
    labels = torch.tensor([1, 3])
    return feat, logits, valid, labels


def test_crop_ce_on_valid_crops_only():
    _, logits, valid, labels = _crops()
    lab = labels[:, None].expand(B, T)
    got = crop_ce(logits.reshape(-1, 4), lab.reshape(-1), valid.reshape(-1))
    ref = F.cross_entropy(logits[valid], lab[valid])
    assert torch.allclose(got, ref)
    changed = logits.detach().clone()
    changed[~valid] = 100.0
    assert torch.equal(crop_ce(changed.reshape(-1, 4), lab.reshape(-1), valid.reshape(-1)), got)


def test_crop_pairwise_manual_and_skips_invalid():
    feat, _, valid, _ = _crops()
    got = crop_pairwise(feat, valid)
    pd = nn.PairwiseDistance()
    pairs = [pd(feat[0, i : i + 1], feat[0, j : j + 1]) for i, j in itertools.combinations([0, 1, 3], 2)]
    expected = torch.cat(pairs).mean()  # clip 1 has a single valid crop: skipped
    assert torch.allclose(got, expected)
    changed = feat.detach().clone()
    changed[0, 2] = 1e6
    changed[1] = -5.0  # clip 1 contributes nothing
    assert torch.equal(crop_pairwise(changed, valid), got)


def test_crop_audio_cosine_manual_and_skips_invalid():
    feat, _, valid, _ = _crops(d=12)
    torch.manual_seed(0)
    proj = nn.Linear(128, 12)
    audio = torch.randn(B, T, 128)
    got = crop_audio_cosine(feat, valid, audio, proj)
    terms = []
    for b in range(B):
        pa = proj(audio[b].mean(0))
        for t in range(T):
            if valid[b, t]:
                terms.append(1 - F.cosine_similarity(pa, feat[b, t], dim=0))
    assert torch.allclose(got, torch.stack(terms).mean(), atol=1e-6)
    changed = feat.detach().clone()
    changed[0, 4] = 3.0
    assert torch.equal(crop_audio_cosine(changed, valid, audio, proj), got)
    # [B*T,128] audio layout gives the same value
    assert torch.equal(crop_audio_cosine(feat, valid, audio.reshape(B * T, 128), proj), got)


def test_zero_valid_crops_give_zero_with_grad():
    feat, logits, _, labels = _crops()
    none = torch.zeros(B, T, dtype=torch.bool)
    proj = nn.Linear(128, 7)
    losses = [
        crop_ce(logits.reshape(-1, 4), labels[:, None].expand(B, T).reshape(-1), none.reshape(-1)),
        crop_pairwise(feat, none),
        crop_audio_cosine(feat, none, torch.randn(B, T, 128), proj),
    ]
    for loss in losses:
        assert loss.dim() == 0 and loss.item() == 0.0 and loss.requires_grad
        loss.backward()
    assert torch.equal(feat.grad, torch.zeros_like(feat))


def _outputs_and_batch():
    logits, masks, valid = _seg()
    _, maps, audio = _avm_inputs()
    logits_small = logits  # AVM pools the logits to each stage size
    feat, clog, cvalid, labels = _crops(d=12)
    outputs = {
        "logits": logits_small,
        "feature_maps": maps,
        "audio_feats": audio,
        "crop_feat": feat.reshape(B * T, 12),
        "crop_logits": clog.reshape(B * T, 4),
        "audio_emb": torch.randn(B * T, 128),
    }
    batch = {"masks": masks, "mask_valid": valid, "label": labels, "crop_valid": cvalid}
    torch.manual_seed(0)
    return outputs, batch, nn.Linear(128, 12)


def test_total_loss_weights_and_report():
    outputs, batch, proj = _outputs_and_batch()
    w = LossWeights(seg=1.0, avm=0.5, ce=1.0, pairwise=2.0, audio=1.0)
    loss, report = total_loss(outputs, batch, w, audio_proj=proj)
    assert set(report) == {"seg", "avm", "ce", "pairwise", "audio", "total"}
    expected = report["seg"] + 0.5 * report["avm"] + report["ce"] + 2 * report["pairwise"] + report["audio"]
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert report["total"] == pytest.approx(loss.item())
    # a weight of 0 turns its term off: not computed, reported as 0
    w0 = LossWeights(seg=1.0, avm=0.5, ce=1.0, pairwise=0.0, audio=1.0)
    loss0, report0 = total_loss(outputs, batch, w0, audio_proj=proj)
    assert report0["pairwise"] == 0.0
    assert loss0.item() == pytest.approx(loss.item() - 2 * report["pairwise"], rel=1e-6)
    # crop terms off: no crop outputs needed at all
    seg_only, rep = total_loss({"logits": outputs["logits"]}, batch, LossWeights(ce=0, pairwise=0, audio=0))
    assert rep["total"] == pytest.approx(rep["seg"]) and seg_only.requires_grad
    with pytest.raises(ValueError, match="audio_proj"):
        total_loss(outputs, batch, w)


def test_loss_weights_presets():
    """The official AVM default per setting, from the one place that holds it (config.avm_weight),
    as the training loss receives it (system.loss_weights); an explicit w_avm or crop weight wins."""
    assert loss_weights(TrainConfig(setting="s4")).avm == 0.0
    assert loss_weights(TrainConfig(setting="ms3")).avm == 0.5
    assert loss_weights(TrainConfig(setting="avss")).avm == 0.5  # AVSS trains with the MS3 weight
    assert loss_weights(TrainConfig(setting="ms3", w_ce=0.0)).ce == 0.0
    assert loss_weights(TrainConfig(setting="ms3", w_avm=0.25)).avm == 0.25
    with pytest.raises(KeyError):
        TrainConfig(setting="s5").avm_weight()
