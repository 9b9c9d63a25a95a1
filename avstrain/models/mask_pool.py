"""Masked average pooling of the segmentation features by the *predicted* mask (the mask-crop
consistency term, config ``w_mask_crop``): the pooled vector describes the region the model
segments, so tying it to the box crop and the clip class ties the predicted region itself to the
sounding object."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def foreground(logits: torch.Tensor) -> torch.Tensor:
    """``[N,K,S,S]`` logits -> ``[N,1,S,S]`` foreground probability: sigmoid of the one binary
    logit, or 1 - p(background = class 0) for a semantic head."""
    if logits.shape[1] == 1:
        return torch.sigmoid(logits)
    return 1 - torch.softmax(logits, dim=1)[:, :1]


def masked_average_pool(feature_maps: list[torch.Tensor], fg: torch.Tensor) -> torch.Tensor:
    """Per map ``z [N,C,h,w]``: ``sum(z * m) / sum(m)`` with ``m`` the foreground averaged down
    to ``h x w``; the maps' vectors concatenated -> ``[N, sum C]``."""
    pooled = []
    for z in feature_maps:
        m = F.adaptive_avg_pool2d(fg.to(z.dtype), z.shape[-2:])  # [N,1,S,S] -> [N,1,h,w]
        pooled.append((z * m).sum(dim=(2, 3)) / m.sum(dim=(2, 3)).clamp(min=1e-6))  # [N, C]
    return torch.cat(pooled, dim=1)


class MaskPoolProjection(nn.Module):
    """``forward(feature_maps, logits) -> [N, feat_dim]``: the masked average pool of the stage
    maps, projected to the crop feature size."""

    def __init__(self, channels: int, stages: int = 4, feat_dim: int = 512):
        super().__init__()
        self.proj = nn.Linear(channels * stages, feat_dim)

    def forward(self, feature_maps: list[torch.Tensor], logits: torch.Tensor) -> torch.Tensor:
        return self.proj(masked_average_pool(feature_maps, foreground(logits.float())))
