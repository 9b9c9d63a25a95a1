"""AVSS semantic losses (docs/reference/avss.md 7): cross-entropy on GT-flagged steps, the masked
audio-visual matching term with background = index 0 (the 2024 fix), and the crop losses with
each crop's own box label.

Shapes: ``logits [B*T,K,S,S]`` (T = 10 steps, K = 71 classes), ``masks [B*T,S,S]`` class
indices, ``gt_flag [B*T]``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from avstrain.losses import crop_terms, masked_mean, stage_features, weighted_sum

BACKGROUND = 0


def avss_ce(logits: torch.Tensor, masks: torch.Tensor, gt_flag: torch.Tensor) -> torch.Tensor:
    """Per frame the mean pixel CE, times the GT flag, summed and divided by the flag sum (official)."""
    per_pixel = F.cross_entropy(logits.float(), masks.long(), reduction="none")  # [B*T, S, S]
    per_frame = per_pixel.mean(dim=(1, 2))  # [B*T]
    return masked_mean(per_frame, gt_flag.bool())


def avss_avm_kl(logits: torch.Tensor, feature_maps: list, audio_feats: list, gt_flag: torch.Tensor,
                stages=(0, 1, 2, 3), bg_idx: int = BACKGROUND) -> torch.Tensor:
    """Official ``A_MaskedV_SimmLoss`` with ``kl_flag``: hard foreground ``argmax != bg_idx``,
    average-pooled to each stage, times the stage map, spatial mean; per row
    ``KL(softmax(audio) || softmax(visual))`` summed over channels, averaged over GT-flagged
    rows; mean over stages."""
    stages = tuple(stages)
    if not stages:
        return logits.sum() * 0
    fg = (logits.argmax(dim=1, keepdim=True) != bg_idx).to(logits.dtype).detach()  # [B*T,1,S,S]
    total = logits.new_zeros(())

    def hard_fg(size):
        return F.adaptive_avg_pool2d(fg, size)  # [B*T,1,S,S] -> [B*T,1,h,w]

    for v, a in stage_features(feature_maps, audio_feats, stages, hard_fg):
        kl = F.kl_div(F.log_softmax(v.float(), dim=-1), F.softmax(a.float(), dim=-1), reduction="none").sum(-1)
        total = total + masked_mean(kl, gt_flag.bool())
    return total / len(stages)


def total_loss_avss(outputs: dict, batch: dict, weights, audio_proj=None) -> tuple[torch.Tensor, dict]:
    """Weighted sum of the AVSS terms -> ``(loss, {term: float, "total": float})`` as ``total_loss``;
    each crop is trained against its own box's class (``crop_label``, -1 = no box: not valid)."""
    logits = outputs["logits"]
    flag = batch["gt_flag"]
    terms = {}
    if weights.seg:
        terms["seg"] = avss_ce(logits, batch["masks"], flag)
    if weights.avm:
        terms["avm"] = avss_avm_kl(logits, outputs["feature_maps"], outputs["audio_feats"], flag, weights.avm_stages)
    if weights.crop_on():
        b = batch["batch_size"]
        valid = (batch["crop_valid"].bool() & (batch["crop_label"] >= 0)).reshape(b, -1)  # [B*T] -> [B, T]
        labels = batch["crop_label"].clamp(min=0).reshape(b, -1)  # [B*T] -> [B, T]
        terms.update(crop_terms(outputs, valid, labels, weights, audio_proj))
    return weighted_sum(terms, weights, logits)
