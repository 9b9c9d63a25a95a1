"""Crop classifier (docs/reproducing.md, the method): a second ImageNet ResNet-50 on the box crops.

ResNet-50 up to ``layer4`` (all layers but avgpool/fc), global average pool,
Linear 2048 -> 512 (the crop feature f used by the pairwise and audio losses),
Linear 512 -> K, and by default the recipe's ReLU on the logits.

The recipe's ``AvgPool2d(7)`` equals a global average pool for 224 x 224 crops
(7 x 7 maps); we use ``AdaptiveAvgPool2d(1)`` so other crop sizes work too.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .backbones import ResNet50Backbone, TinyBackbone


class CropHead(nn.Module):
    """``forward(crops [n,3,C,C]) -> (feat [n,feat_dim], logits [n,num_classes])``.

    ``logits_relu=True`` reproduces the recipe (ReLU on the classifier output,
    before cross-entropy); ``False`` gives plain logits.
    """

    def __init__(
        self,
        num_classes: int,
        feat_dim: int = 512,
        backbone: str = "resnet50",
        pretrained: str | Path | None = None,
        logits_relu: bool = True,
        shared_channels: int | None = None,
    ):
        super().__init__()
        if shared_channels is not None:
            # crop_encoder=segmentation: the trunk is the segmentation model's backbone, passed to
            # forward and not owned here (so it is saved, and counted, once: in the AVS model)
            if pretrained is not None:
                raise ValueError("a crop head on the segmentation backbone takes no crop_backbone_weights")
            self.trunk = None
            trunk_channels = shared_channels
        elif backbone == "resnet50":
            self.trunk = ResNet50Backbone()
            if pretrained is not None:
                self.trunk.load_pretrained(pretrained)
        elif backbone == "tiny":
            if pretrained is not None:
                raise ValueError("the 'tiny' crop backbone has no ImageNet weights; leave pretrained unset")
            self.trunk = TinyBackbone()
        else:
            raise ValueError(f"unknown crop backbone {backbone!r}; choose one of: resnet50, tiny")
        if shared_channels is None:
            trunk_channels = self.trunk.channels[-1]
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.feat = nn.Linear(trunk_channels, feat_dim)
        self.classifier = nn.Linear(feat_dim, num_classes)
        self.logits_relu = logits_relu

    def forward(self, crops: torch.Tensor, trunk: nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``trunk``: the shared backbone when the head has none of its own."""
        x = (trunk or self.trunk)(crops)[-1]  # [n, 2048, C/32, C/32]
        x = self.pool(x).flatten(1)  # [n, 2048, 1, 1] -> [n, 2048]
        feat = self.feat(x)  # [n, 512]
        return feat, self.classify(feat)

    def classify(self, feat: torch.Tensor) -> torch.Tensor:
        """``feat [n, feat_dim] -> logits [n, K]`` (also used on the mask-pooled features)."""
        logits = self.classifier(feat)  # [n, K]
        if self.logits_relu:
            logits = torch.relu(logits)
        return logits
