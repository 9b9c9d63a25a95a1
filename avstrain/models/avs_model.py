"""The AVSBench TPAVI model (reference ``Pred_endecoder``): backbone, neck, TPAVI, decoder, head."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from .decoder import ClassifierModule, Decoder
from .tpavi import TPAVIModule


@dataclass
class AVSModelConfig:
    """Model hyper-parameters; defaults reproduce the published ResNet-50 model."""

    backbone: str = "resnet50"  # key of avstrain.models.BACKBONES: resnet50 | pvt_v2_b5 | tiny
    channel: int = 256  # neck / TPAVI / decoder width (reference 256; smaller for the tiny demo)
    head_channels: tuple[int, ...] = (128, 32)  # output head widths (reference 128, 32; it runs at S/2 and S)
    tpavi_stages: tuple[int, ...] = (0, 1, 2, 3)  # stages (0 = stride 4 ... 3 = stride 32) with a TPAVI block
    tpavi_va: bool = True  # audio-visual attention (the published model)
    tpavi_vv: bool = False  # visual self-attention; averaged with va when both are on
    tpavi_naive: bool = False  # build the full N x N attention matrix (reference form; only for checks)
    inplace_relu_quirk: bool = True  # reproduce the reference's in-place ReLU in the decoder (see decoder.py)
    frames: int = 5  # T: frames per clip; rows of the batch are b*T + t
    audio_dim: int = 128  # audio embedding size (VGGish)
    drop_path_rate: float = 0.1  # PVT-v2 stochastic depth (ignored by other backbones)
    dilations: tuple[int, ...] = field(default=(3, 6, 12, 18))  # ASPP neck dilations (= paddings)
    num_classes: int = 1  # head output channels: 1 (S4/MS3 binary) or 71 (AVSS semantic)
    audio_bias: bool = True  # TPAVI align_channel bias (the official AVSS model has none)

    def __post_init__(self):
        self.tpavi_stages = tuple(int(s) for s in self.tpavi_stages)
        self.dilations = tuple(int(d) for d in self.dilations)
        self.head_channels = tuple(int(h) for h in self.head_channels)
        if len(self.head_channels) != 2:
            raise ValueError(f"head_channels must be two widths, got {self.head_channels}")
        bad = [s for s in self.tpavi_stages if s not in (0, 1, 2, 3)]
        if bad:
            raise ValueError(f"tpavi_stages must be among 0, 1, 2, 3; got {bad}")
        if self.tpavi_stages and not (self.tpavi_va or self.tpavi_vv):
            raise ValueError("tpavi_stages is non-empty but both tpavi_va and tpavi_vv are off; turn one on")


class AVSModel(nn.Module):
    """``forward(frames [B*T,3,S,S], audio [B*T,128]) -> (logits [B*T,1,S,S], feature_maps[4], audio_feats[4])``.

    ``feature_maps`` are the per-stage maps as the reference returns them (post-ReLU
    under the quirk) at strides 4..32; ``audio_feats[i]`` is stage i's TPAVI audio
    projection [B, T, C] (None where stage i has no audio-visual TPAVI).
    S must be a multiple of 32.
    """

    def __init__(self, cfg: AVSModelConfig, backbone: nn.Module):
        super().__init__()
        self.cfg = cfg
        self.backbone = backbone
        chans = tuple(backbone.channels)
        c = cfg.channel
        dil = cfg.dilations
        self.conv1 = ClassifierModule(chans[0], c, dil)
        self.conv2 = ClassifierModule(chans[1], c, dil)
        self.conv3 = ClassifierModule(chans[2], c, dil)
        self.conv4 = ClassifierModule(chans[3], c, dil)
        # One TPAVI per selected stage, named tpavi_b1..tpavi_b4 as in the reference.
        for i in cfg.tpavi_stages:
            setattr(self, f"tpavi_b{i + 1}", TPAVIModule(c, mode="dot", audio_dim=cfg.audio_dim, naive=cfg.tpavi_naive,
                                                         audio_bias=cfg.audio_bias))
        self.decoder = Decoder(c, cfg.inplace_relu_quirk, cfg.head_channels, cfg.num_classes)

    def forward(
        self, frames: torch.Tensor, audio: torch.Tensor | None = None, frame_valid: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor | None]]:
        """``frame_valid`` [B*T] (AVSS): multiplies the neck, TPAVI and fusion outputs and the
        logits, as the official AVSS model does (padded steps -> zero logits -> background).
        AVSS clips of 10 steps are fed as rows of T = 5: TPAVI attends within each half,
        exactly the official model's hard-coded grouping."""
        t = self.cfg.frames
        gate = None if frame_valid is None else frame_valid.reshape(-1, 1, 1, 1).to(frames.dtype)  # [B*T,1,1,1]
        if frames.shape[0] % t:
            raise ValueError(f"frames has {frames.shape[0]} rows, not a multiple of T={t} (rows are b*T + t)")
        if self.cfg.tpavi_stages and self.cfg.tpavi_va and audio is None:
            raise ValueError("this model has audio-visual TPAVI stages and needs audio [B*T, 128]")
        f1, f2, f3, f4 = self.backbone(frames)
        maps = [self.conv1(f1), self.conv2(f2), self.conv3(f3), self.conv4(f4)]  # [B*T, C, S/4 .. S/32]
        if gate is not None:
            maps = [m * gate for m in maps]
        audio_feats: list[torch.Tensor | None] = [None] * 4
        if audio is not None:
            audio = audio.reshape(-1, t, audio.shape[-1])  # [B*T, 128] -> [B, T, 128]
        for i in self.cfg.tpavi_stages:
            block = getattr(self, f"tpavi_b{i + 1}")
            x = _to_clip(maps[i], t)  # [B*T, C, H, W] -> [B, C, T, H, W]
            outs = []
            if self.cfg.tpavi_vv:
                outs.append(block(x)[0])
            if self.cfg.tpavi_va:
                z, a_fea = block(x, audio)
                outs.append(z)
                audio_feats[i] = a_fea  # [B, T, C]
            z = outs[0] if len(outs) == 1 else (outs[0] + outs[1]) / 2
            maps[i] = _from_clip(z)  # [B, C, T, H, W] -> [B*T, C, H, W]
            if gate is not None:
                maps[i] = maps[i] * gate
        logits, maps = self.decoder(maps, gate)
        return logits, maps, audio_feats


def _to_clip(x: torch.Tensor, t: int) -> torch.Tensor:
    bt, c, h, w = x.shape
    return x.reshape(bt // t, t, c, h, w).permute(0, 2, 1, 3, 4)  # [B*T, C, H, W] -> [B, C, T, H, W]


def _from_clip(x: torch.Tensor) -> torch.Tensor:
    b, c, t, h, w = x.shape
    return x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)  # [B, C, T, H, W] -> [B*T, C, H, W]
