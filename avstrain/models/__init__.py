"""Models: backbones, TPAVI, decoder, the AVSBench model, the crop head, audio encoders.

``BACKBONES`` is a plain dict of builders (no registry); ``build_avs_model`` is the
stable entry point (docs/architecture.md, stable interfaces).
"""

from __future__ import annotations

from pathlib import Path

from .avs_model import AVSModel, AVSModelConfig
from .backbones import pvt_v2_b5_backbone, resnet50_backbone, tiny_backbone

BACKBONES = {
    "resnet50": resnet50_backbone,  # torchvision ResNet-50, 256/512/1024/2048 ch
    "pvt_v2_b5": pvt_v2_b5_backbone,  # timm PVT-v2-b5, 64/128/320/512 ch
    "tiny": tiny_backbone,  # small CPU demo backbone, 16/32/64/128 ch
}


def build_backbone(name: str, pretrained: str | Path | None = None, **kwargs):
    """Build backbone ``name`` (optionally loading ImageNet weights from a file)."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of: {', '.join(BACKBONES)}")
    return BACKBONES[name](pretrained=pretrained, **kwargs)


def build_avs_model(
    backbone: str = "resnet50",
    tpavi_stages=(0, 1, 2, 3),
    pretrained: str | Path | None = None,
    **cfg,
) -> AVSModel:
    """Build the AVSBench model; ``pretrained`` is the backbone's ImageNet weights file (or None).

    Extra keywords are ``AVSModelConfig`` fields (``channel``, ``tpavi_va``, ``tpavi_vv``, ...).
    """
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; choose one of: {', '.join(BACKBONES)}")
    config = AVSModelConfig(backbone=backbone, tpavi_stages=tuple(tpavi_stages), **cfg)
    net = build_backbone(backbone, pretrained=pretrained, drop_path_rate=config.drop_path_rate)
    return AVSModel(config, net)


__all__ = ["AVSModel", "AVSModelConfig", "BACKBONES", "build_avs_model", "build_backbone"]
