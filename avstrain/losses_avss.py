"""AVSS semantic losses (reference/avss.md 7): cross-entropy on GT-flagged steps, the masked
audio-visual matching term with background = index 0 (the 2024 fix), and the crop losses with
each crop's own box label.

Shapes: ``logits [B*10,71,S,S]``, ``masks [B*10,S,S]`` class indices, ``gt_flag [B*10]``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from avstrain.losses import TERMS, _masked_mean, crop_audio_cosine, crop_ce, crop_pairwise

BACKGROUND = 0


def avss_ce(logits: torch.Tensor, masks: torch.Tensor, gt_flag: torch.Tensor) -> torch.Tensor:
    """Per frame the mean pixel CE, times the GT flag, summed and divided by the flag sum (official)."""
    per_pixel = F.cross_entropy(logits.float(), masks.long(), reduction="none")  # [B*T, S, S]
    per_frame = per_pixel.mean(dim=(1, 2))  # [B*T]
    return _masked_mean(per_frame, gt_flag.bool())


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
    for i in stages:
        if audio_feats[i] is None:
            raise ValueError(f"AVM loss on stage {i}, but that stage has no audio-visual TPAVI; fix avm_stages")
        z = feature_maps[i]  # [B*T, C, h, w]
        m = F.adaptive_avg_pool2d(fg, z.shape[-2:])  # [B*T, 1, h, w]
        v = (z * m).mean(dim=(2, 3))  # [B*T, C]
        a = audio_feats[i].reshape(-1, z.shape[1])  # [B', 5, C] -> [B*T, C]
        kl = F.kl_div(F.log_softmax(v.float(), dim=-1), F.softmax(a.float(), dim=-1), reduction="none").sum(-1)
        total = total + _masked_mean(kl, gt_flag.bool())
    return total / len(stages)


def total_loss_avss(outputs: dict, batch: dict, weights, audio_proj=None) -> tuple[torch.Tensor, dict]:
    """Weighted sum of the AVSS terms -> ``(loss, {term: float, "total": float})`` as ``total_loss``."""
    logits = outputs["logits"]
    flag = batch["gt_flag"]
    terms = {}
    if weights.seg:
        terms["seg"] = avss_ce(logits, batch["masks"], flag)
    if weights.avm:
        terms["avm"] = avss_avm_kl(logits, outputs["feature_maps"], outputs["audio_feats"], flag, weights.avm_stages)
    if weights.ce or weights.pairwise or weights.audio:
        valid = batch["crop_valid"].bool() & (batch["crop_label"] >= 0)  # [B*T]
        b = batch["batch_size"]
        valid_bt = valid.reshape(b, -1)
        t = valid_bt.shape[1]
        feat = outputs["crop_feat"].reshape(b, t, -1)
        if weights.ce:  # each crop against its own box's class
            terms["ce"] = crop_ce(outputs["crop_logits"], batch["crop_label"].clamp(min=0), valid)
        if weights.pairwise:
            terms["pairwise"] = crop_pairwise(feat, valid_bt)
        if weights.audio:
            terms["audio"] = crop_audio_cosine(feat, valid_bt, outputs["audio_emb"], audio_proj)
    weighted = [getattr(weights, n) * v for n, v in terms.items()]
    loss = torch.stack(weighted).sum() if weighted else logits.sum() * 0
    names = list(terms)
    values = torch.stack([terms[n].detach().float() for n in names] + [loss.detach().float()]).tolist()
    report = {name: 0.0 for name in TERMS}
    report.update(zip(names + ["total"], values))
    return loss, report
