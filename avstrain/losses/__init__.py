"""Training losses: AVSBench BCE and AVM-KL (docs/reference/avsbench.md section 4), and the crop losses (docs/reproducing.md, the method).

Shapes: ``logits [B*T,1,S,S]`` (rows ``b*T + t``); ``masks`` ``[B,T,S,S]`` or
``[B*T,1,S,S]`` 0/1; validity flags ``[B,T]`` or ``[B*T]`` bool. Every loss is a
0-dim tensor; with nothing valid it is an exact 0 that still carries a grad
graph (so DDP and ``backward`` behave the same on every step). Masking uses
``torch.where`` rather than indexing: no host sync, and invalid entries cannot
change the value whatever they hold.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


def masked_mean(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` where ``valid`` (same shape, broadcastable), 0 when nothing is valid."""
    valid = valid.expand_as(values)
    total = torch.where(valid, values, torch.zeros_like(values)).sum()
    return total / valid.sum().clamp(min=1).to(values.dtype)


def s4_bce(logits: torch.Tensor, masks: torch.Tensor, mask_valid: torch.Tensor) -> torch.Tensor:
    """BCE over all pixels of the frames that have a GT mask (S4 train: frame 1 of each clip).

    Same value as the reference's ``nn.BCELoss()(sigmoid(pred), gt)`` on those
    frames, computed with ``binary_cross_entropy_with_logits`` (numerically safer).
    """
    target = masks.reshape(logits.shape).to(logits.dtype)  # [B,T,S,S] -> [B*T,1,S,S]
    per_pixel = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    valid = mask_valid.reshape(-1, *([1] * (logits.dim() - 1))).bool()  # [B,T] -> [B*T,1,1,1]
    return masked_mean(per_pixel, valid)


def ms3_bce(logits: torch.Tensor, masks: torch.Tensor, mask_valid: torch.Tensor | None = None) -> torch.Tensor:
    """BCE over all frames (MS3: every frame has a mask); ``mask_valid`` may still exclude frames."""
    if mask_valid is None:
        mask_valid = torch.ones(logits.shape[0], dtype=torch.bool, device=logits.device)
    return s4_bce(logits, masks, mask_valid)


def avm_kl(
    pred_logits: torch.Tensor,
    feature_maps: list[torch.Tensor],
    audio_feats: list[torch.Tensor | None],
    stages=(0, 1, 2, 3),
) -> torch.Tensor:
    """Masked audio-visual matching loss, KL form (docs/reference/avsbench.md 4.2, official MS3 setting).

    Per stage i: ``M = sigmoid(avgpool_{h_i,w_i}(logits))``, ``v = mean_hw(Z_i * M)``,
    ``a`` = the stage's TPAVI audio projection; ``KL(softmax(a) || softmax(v))``
    summed over all rows (reduction 'sum', as the reference), then averaged over stages.
    """
    stages = tuple(stages)
    if not stages:
        return pred_logits.sum() * 0
    total = pred_logits.new_zeros(())

    def soft_fg(size):
        return torch.sigmoid(F.adaptive_avg_pool2d(pred_logits, size))  # [B*T,1,S,S] -> [B*T,1,h,w]

    for v, a in stage_features(feature_maps, audio_feats, stages, soft_fg):
        total = total + F.kl_div(F.log_softmax(v.float(), dim=-1), F.softmax(a.float(), dim=-1), reduction="sum")
    return total / len(stages)


def stage_features(feature_maps: list, audio_feats: list, stages, foreground):
    """Per AVM stage ``i``: ``(v, a)``, both ``[B*T, C]``: ``v`` the spatial mean of the stage map
    weighted by ``foreground((h, w))`` (``[B*T,1,h,w]``), ``a`` the stage's TPAVI audio projection.
    Shared by the binary and the AVSS AVM terms, which differ in the foreground and the KL reduction."""
    for i in stages:
        if audio_feats[i] is None:
            raise ValueError(f"AVM loss on stage {i}, but that stage has no audio-visual TPAVI; fix avm_stages")
        z = feature_maps[i]  # [B*T, C, h, w]
        v = (z * foreground(z.shape[-2:])).mean(dim=(2, 3))  # [B*T, C]
        a = audio_feats[i].reshape(-1, z.shape[1])  # [B, T, C] -> [B*T, C]
        yield v, a


def crop_ce(logits: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy of the crop classifier on valid crops; ``logits [n,K]`` (or [B,T,K]), ``labels [n]``."""
    logits = logits.reshape(-1, logits.shape[-1])  # [B,T,K] -> [n,K]
    labels = labels.reshape(-1).long()
    per = F.cross_entropy(logits.float(), labels, reduction="none")  # [n]
    if valid is None:
        valid = torch.ones_like(per, dtype=torch.bool)
    return masked_mean(per, valid.reshape(-1).bool())


def crop_pairwise(feat: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean ``nn.PairwiseDistance`` over all pairs i<j of a clip's valid crops, averaged over clips.

    ``feat [B,T,D]``, ``valid [B,T]``; clips with fewer than 2 valid crops are skipped.
    """
    b, t, d = feat.shape
    fi = feat[:, :, None, :].expand(b, t, t, d).reshape(-1, d)  # [B,T,1,D] -> [B*T*T, D]
    fj = feat[:, None, :, :].expand(b, t, t, d).reshape(-1, d)  # [B,1,T,D] -> [B*T*T, D]
    dist = nn.PairwiseDistance()(fi.float(), fj.float()).reshape(b, t, t)  # [B*T*T] -> [B, T, T]
    upper = torch.ones(t, t, dtype=torch.bool, device=feat.device).triu(1)
    valid = valid.bool()
    pairs = valid[:, :, None] & valid[:, None, :] & upper  # [B, T, T]
    n_pairs = pairs.sum(dim=(1, 2))  # [B]
    per_clip = torch.where(pairs, dist, torch.zeros_like(dist)).sum(dim=(1, 2)) / n_pairs.clamp(min=1)
    return masked_mean(per_clip, n_pairs > 0)


def crop_audio_cosine(
    feat: torch.Tensor, valid: torch.Tensor, audio_emb: torch.Tensor, proj: nn.Module
) -> torch.Tensor:
    """Mean over valid crops of ``1 - cos(P a, f)``, ``a`` = mean of the clip's T audio embeddings.

    ``feat [B,T,512]``, ``valid [B,T]``, ``audio_emb [B,T,128]`` (or [B*T,128]), ``proj`` Linear 128->512.
    """
    b, t, _ = feat.shape
    a = audio_emb.reshape(b, t, -1).mean(dim=1)  # [B, T, 128] -> [B, 128]
    pa = proj(a)  # [B, 512]
    cos = F.cosine_similarity(pa[:, None, :].expand_as(feat).float(), feat.float(), dim=-1)  # [B, T]
    return masked_mean(1 - cos, valid.bool())


@dataclass
class LossWeights:
    """Weight of each loss term; 0 turns a term off (it is then not computed)."""

    seg: float = 1.0  # BCE on frames with a GT mask (S4: frame 1; MS3: all 5)
    avm: float = 0.0  # AVM-KL (official: 0 for S4, 0.5 for MS3)
    ce: float = 1.0  # crop classification cross-entropy
    pairwise: float = 1.0  # pairwise distance between a clip's crop features
    audio: float = 1.0  # 1 - cos(P a_mean, f) between audio and crop features
    avm_stages: tuple[int, ...] = (0, 1, 2, 3)  # stages the AVM loss averages over
    mask_crop: float = 0.0  # mask-crop consistency (mask-pooled features vs crop feature and class)

    def crop_on(self) -> bool:
        return bool(self.ce or self.pairwise or self.audio or self.mask_crop)


TERMS = ("seg", "avm", "ce", "pairwise", "audio")  # always reported (0.0 when off)
OPTIONAL_TERMS = ("mask_crop",)  # reported only when on, so the recipe's reports keep their keys


def total_loss(
    outputs: dict, batch: dict, weights: LossWeights, audio_proj: nn.Module | None = None
) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted sum of the active terms -> ``(loss, {term: float, ..., "total": float})``.

    ``outputs``: ``logits``, ``feature_maps``, ``audio_feats`` (model), and for crop
    terms ``crop_feat [B,T,D]`` / ``crop_logits [B,T,K]`` (crop head) and
    ``audio_emb [B,T,128]`` (audio encoder). ``batch``: ``masks``, ``mask_valid``,
    ``label [B]``, ``crop_valid [B,T]``. Off terms (weight 0) report 0.0.
    """
    logits = outputs["logits"]
    terms: dict[str, torch.Tensor] = {}
    if weights.seg:
        terms["seg"] = s4_bce(logits, batch["masks"], batch["mask_valid"])
    if weights.avm:
        terms["avm"] = avm_kl(logits, outputs["feature_maps"], outputs["audio_feats"], weights.avm_stages)
    if weights.crop_on():
        valid = batch["crop_valid"].bool()  # [B, T]
        b, t = valid.shape
        labels = batch["label"].reshape(b, 1).expand(b, t)  # clip class for each of its crops
        terms.update(crop_terms(outputs, valid, labels, weights, audio_proj))
    return weighted_sum(terms, weights, logits)


def crop_terms(outputs: dict, valid: torch.Tensor, labels: torch.Tensor, weights: LossWeights,
               audio_proj: nn.Module | None) -> dict[str, torch.Tensor]:
    """The active crop terms (``ce``, ``pairwise``, ``audio``) of both tasks: ``valid [B,T]``
    bool, ``labels [B,T]`` the class each crop is trained against (the clip class for S4/MS3,
    each box's own class for AVSS); ``outputs`` as in ``total_loss``."""
    b, t = valid.shape
    feat = outputs["crop_feat"].reshape(b, t, -1)  # [B*T, D] -> [B, T, D]
    terms: dict[str, torch.Tensor] = {}
    if weights.ce:
        terms["ce"] = crop_ce(outputs["crop_logits"].reshape(b * t, -1), labels, valid)
    if weights.pairwise:
        terms["pairwise"] = crop_pairwise(feat, valid)
    if weights.audio:
        if audio_proj is None:
            raise ValueError("the audio-crop loss needs audio_proj (Linear 128 -> crop feature size)")
        # crop_audio: the coupled variant's audio features (audio_crop_source=tpavi); else the embedding
        terms["audio"] = crop_audio_cosine(feat, valid, outputs.get("crop_audio", outputs["audio_emb"]), audio_proj)
    if weights.mask_crop:
        terms["mask_crop"] = mask_crop_consistency(outputs["mask_feat"].reshape(b, t, -1), feat,
                                                   outputs["mask_logits"].reshape(b * t, -1), labels, valid)
    return terms


def mask_crop_consistency(mask_feat: torch.Tensor, crop_feat: torch.Tensor, mask_logits: torch.Tensor,
                          labels: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean over valid crops of ``1 - cos(m, f)`` plus the CE of the mask-pooled vector's class
    logits against the crop's label: ``mask_feat``/``crop_feat [B,T,D]``, ``mask_logits [B*T,K]``,
    ``labels``/``valid [B,T]``. Both sides get gradients: the crop feature is pulled to the
    predicted region as much as the region to the crop."""
    cos = F.cosine_similarity(mask_feat.float(), crop_feat.float(), dim=-1)  # [B, T]
    return masked_mean(1 - cos, valid.bool()) + crop_ce(mask_logits, labels, valid)


def weighted_sum(terms: dict[str, torch.Tensor], weights: LossWeights,
                 logits: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """``(sum of weight * term, {term: float for every TERMS name, "total": float})``: off terms
    report 0.0; the floats come from one host sync; no term at all gives an exact 0 with a graph."""
    weighted = [getattr(weights, name) * value for name, value in terms.items()]
    loss = torch.stack(weighted).sum() if weighted else logits.sum() * 0
    names = list(terms)
    values = torch.stack([terms[n].detach().float() for n in names] + [loss.detach().float()]).tolist()  # one sync
    report: dict[str, float] = {name: 0.0 for name in TERMS}
    report.update(zip(names + ["total"], values))
    return loss, report
