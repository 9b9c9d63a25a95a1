"""Image backbones: each returns 4 feature maps at strides 4, 8, 16, 32.

``BACKBONES`` (in ``avstrain.models``) maps a name to one of the builders here.
Every backbone has ``.channels`` (the 4 output channel counts) and
``forward(x [B,3,S,S]) -> [f1, f2, f3, f4]`` with ``f_k`` of size S / 2**(k+1).
ImageNet weights are read from a file given by path (nothing is downloaded);
key renaming lives in pure functions (``remap_resnet_keys``, ``remap_pvt_keys``)
so it can be tested on fake dicts before a strict ``load_state_dict``.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from avsprep.common.errors import DataError

RESNET50_CHANNELS = (256, 512, 1024, 2048)
PVT_CHANNELS = (64, 128, 320, 512)
TINY_CHANNELS = (16, 32, 64, 128)


# --------------------------------------------------------------------------- weights files


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a state dict from ``path`` safely (``weights_only``); DataError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: weights file not found; pass the path of an existing .pth file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, zip errors, unsafe globals...
        raise DataError(
            f"{path}: not a readable PyTorch weights file ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})"
        ) from None
    # Accept checkpoints that wrap the state dict (common "state_dict" / "model" layouts).
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise DataError(f"{path}: does not hold a state dict (name -> tensor); pass an ImageNet weights .pth")
    return obj


_FULL_MODEL = ("tpavi_b", "conv1.conv2d_list", "path1.", "output_conv.", "decoder.", "encoder_backbone.")


def refuse_full_model(state_dict: dict, path: str | Path) -> None:
    """A whole AVSBench / avstrain model given where only a backbone is expected: DataError
    pointing to ``avstrain convert`` / ``--init-from`` (loading only its trunk would leave
    the necks, TPAVI and decoder silently random)."""
    keys = [k[len("module."):] if k.startswith("module.") else k for k in state_dict]
    if any(k.startswith(_FULL_MODEL) for k in keys):
        raise DataError(f"{path}: is a full AVSBench model checkpoint, not ImageNet backbone weights; "
                        "convert it with `avstrain convert` and evaluate it, or start training from it "
                        "with `avstrain train --init-from FILE`")


def load_strict(module: nn.Module, state_dict: dict[str, torch.Tensor], path: str | Path, what: str) -> None:
    """``load_state_dict(strict=True)`` with a one-line DataError naming the file on mismatch."""
    own = module.state_dict()
    state_dict = dict(state_dict)
    # Old torchvision files (e.g. resnet50-19c8e357.pth, 2017) predate BatchNorm's
    # num_batches_tracked buffer; it only counts steps, so fill it with 0 like torch does.
    for k in own:
        if k.endswith("num_batches_tracked") and k not in state_dict:
            state_dict[k] = torch.zeros_like(own[k])
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    shape = [k for k in own if k in state_dict and tuple(own[k].shape) != tuple(state_dict[k].shape)]
    if missing or unexpected or shape:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {', '.join(unexpected[:3])})")
        if shape:
            k = shape[0]
            parts.append(
                f"{len(shape)} shape mismatches (e.g. {k}: file {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)})"
            )
        raise DataError(f"{path}: not {what} weights: {'; '.join(parts)}; pass the right weights file")
    module.load_state_dict(state_dict, strict=True)


# --------------------------------------------------------------------------- ResNet-50


def remap_resnet_keys(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map torchvision / AVSBench ResNet-50 keys to ours (torchvision names without ``fc``).

    Pure. Drops ``fc.*`` (the classifier is not part of the backbone). Handles: a ``module.``
    prefix (DataParallel); a bare AVSBench ``B2_ResNet`` (``resnet.*``, prefix stripped;
    ``layer3_1``/``layer4_1`` -> ``layer3``/``layer4``, the unused ``layer3_2``/``layer4_2``
    copy dropped). A *full* AVSBench model is refused before this (``refuse_full_model``):
    its necks, TPAVI and decoder would be left random."""
    sd = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state_dict.items()}
    if any(k.startswith("resnet.") for k in sd):
        sd = {k[len("resnet."):]: v for k, v in sd.items() if k.startswith("resnet.")}
    out = {}
    for k, v in sd.items():
        if k.startswith("fc.") or re.match(r"layer[34]_2\.", k):
            continue
        k = re.sub(r"^layer([34])_1\.", r"layer\1.", k)
        out[k] = v
    return out


class ResNet50Backbone(nn.Module):
    """torchvision ResNet-50 without avgpool/fc; outputs layer1..layer4 (256/512/1024/2048 ch).

    Submodule names equal torchvision's, so a torchvision state dict (minus ``fc``)
    loads strictly.
    """

    channels = RESNET50_CHANNELS

    def __init__(self):
        super().__init__()
        from torchvision.models import resnet50

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


def remap_pvt_keys(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map original PVT-v2 (``whai362/PVT`` ``pvt_v2_b5.pth``) keys to timm's, dropping the head.

    Pure. ``patch_embed1`` -> ``patch_embed``, ``patch_embedK`` -> ``stages.K-1.downsample``,
    ``blockK.i`` -> ``stages.K-1.blocks.i``, ``normK`` -> ``stages.K-1.norm``,
    ``dwconv.dwconv`` -> ``dwconv`` (timm's own ``checkpoint_filter_fn``); timm-named
    dicts pass through unchanged (minus ``head.*``).
    """
    from timm.models.pvt_v2 import checkpoint_filter_fn

    sd = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state_dict.items()}
    sd = {k: v for k, v in sd.items() if not k.startswith("head.")}
    return dict(checkpoint_filter_fn(sd, None))


def _pvt_class():
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
