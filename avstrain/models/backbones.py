"""Image backbones: each returns 4 feature maps at strides 4, 8, 16, 32.

``BACKBONES`` (in ``avstrain.models``) maps a name to one of the builders here.
Every backbone has ``.channels`` (the 4 output channel counts) and
``forward(x [B,3,S,S]) -> [f1, f2, f3, f4]`` with ``f_k`` of size S / 2**(k+1).
ImageNet weights are read from a file given by path (nothing is downloaded); the key
renames live in ``avstrain.models.weights``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .weights import load_strict, read_state_dict, refuse_full_model, remap_pvt_keys, remap_resnet_keys

RESNET50_CHANNELS = (256, 512, 1024, 2048)
PVT_CHANNELS = (64, 128, 320, 512)
TINY_CHANNELS = (16, 32, 64, 128)


# --------------------------------------------------------------------------- ResNet-50


class ResNet50Backbone(nn.Module):
    """torchvision ResNet-50 without avgpool/fc; outputs layer1..layer4 (256/512/1024/2048 ch).

    Submodule names equal torchvision's, so a torchvision state dict (minus ``fc``)
    loads strictly.
    """

    channels = RESNET50_CHANNELS

    def __init__(self):
        super().__init__()
        from torchvision.models import resnet50  # lazy: torchvision costs 1-3 s to import; only ResNet-50 needs it

        net = resnet50(weights=None)
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # [B, 64, S/4, S/4]
        f1 = self.layer1(x)  # [B, 256, S/4, S/4]
        f2 = self.layer2(f1)  # [B, 512, S/8, S/8]
        f3 = self.layer3(f2)  # [B, 1024, S/16, S/16]
        f4 = self.layer4(f3)  # [B, 2048, S/32, S/32]
        return [f1, f2, f3, f4]

    def load_pretrained(self, path: str | Path) -> None:
        """Load ImageNet weights from a torchvision (or AVSBench) ResNet-50 file, strictly."""
        sd = read_state_dict(path)
        refuse_full_model(sd, path)
        load_strict(self, remap_resnet_keys(sd), path, "ResNet-50")


def resnet50_backbone(pretrained: str | Path | None = None, **_: object) -> ResNet50Backbone:
    """ResNet-50 backbone; ``pretrained``: path of e.g. ``resnet50-19c8e357.pth``."""
    model = ResNet50Backbone()
    if pretrained is not None:
        model.load_pretrained(pretrained)
    return model


# --------------------------------------------------------------------------- PVT-v2-b5 (timm)


def _pvt_class():
    """The PVT-v2 backbone class, built on first use: timm adds ~0.6 s to every import otherwise."""
    from timm.models.pvt_v2 import PyramidVisionTransformerV2

    class PVTv2Backbone(PyramidVisionTransformerV2):
        """timm PVT-v2 without classifier; forward returns the 4 stage outputs (NCHW)."""

        channels = PVT_CHANNELS

        def forward(self, x: torch.Tensor) -> list[torch.Tensor]:  # type: ignore[override]
            x = self.patch_embed(x)  # [B, S/4, S/4, 64] (NHWC, timm's patch embed layout)
            outs = []
            for stage in self.stages:
                x = stage(x)  # [B, C_k, S/2**(k+2), ...] NCHW
                outs.append(x)
            return outs

        def load_pretrained(self, path: str | Path) -> None:
            """Load ImageNet weights from the original ``pvt_v2_b5.pth`` (or a timm dict), strictly."""
            sd = read_state_dict(path)
            refuse_full_model(sd, path)
            load_strict(self, remap_pvt_keys(sd), path, "PVT-v2-b5")

    return PVTv2Backbone


def pvt_v2_b5_backbone(pretrained: str | Path | None = None, drop_path_rate: float = 0.1, **_: object) -> nn.Module:
    """PVT-v2-b5 (dims 64/128/320/512, depths 3/6/40/3), drop-path 0.1 as in AVSBench."""
    model = _pvt_class()(
        depths=(3, 6, 40, 3),
        embed_dims=PVT_CHANNELS,
        num_heads=(1, 2, 5, 8),
        mlp_ratios=(4, 4, 4, 4),
        sr_ratios=(8, 4, 2, 1),
        qkv_bias=True,
        num_classes=0,
        drop_path_rate=drop_path_rate,
    )
    if pretrained is not None:
        model.load_pretrained(pretrained)
    return model


# --------------------------------------------------------------------------- tiny (CPU demo)


def _cbr(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


class TinyBackbone(nn.Module):
    """Small conv-BN-ReLU pyramid for CPU demos and tests: strides 4/8/16/32, 16/32/64/128 ch."""

    def __init__(self, channels: tuple[int, int, int, int] = TINY_CHANNELS):
        super().__init__()
        self.channels = tuple(channels)
        c1, c2, c3, c4 = self.channels
        self.stem = nn.Sequential(_cbr(3, c1, 2), _cbr(c1, c1, 2))  # stride 4
        self.stage1 = _cbr(c1, c1, 1)
        self.stage2 = nn.Sequential(_cbr(c1, c2, 2), _cbr(c2, c2, 1))
        self.stage3 = nn.Sequential(_cbr(c2, c3, 2), _cbr(c3, c3, 1))
        self.stage4 = nn.Sequential(_cbr(c3, c4, 2), _cbr(c4, c4, 1))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        f1 = self.stage1(self.stem(x))  # [B, c1, S/4, S/4]
        f2 = self.stage2(f1)  # [B, c2, S/8, S/8]
        f3 = self.stage3(f2)  # [B, c3, S/16, S/16]
        f4 = self.stage4(f3)  # [B, c4, S/32, S/32]
        return [f1, f2, f3, f4]


def tiny_backbone(pretrained: str | Path | None = None, **_: object) -> TinyBackbone:
    """The demo backbone; it has no ImageNet weights (``pretrained`` must be None)."""
    if pretrained is not None:
        raise ValueError("the 'tiny' backbone has no ImageNet weights; leave pretrained unset")
    return TinyBackbone()
