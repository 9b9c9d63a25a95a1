"""The trainable system: the AVS model, its audio encoder, the crop head and the audio
projection in one module (so DDP wraps it once), built from a ``TrainConfig``, and the
loss computation on a device batch."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from avsprep.common.errors import DataError
from avstrain.config import TrainConfig
from avstrain.losses import LossWeights
from avstrain.models import build_avs_model
from avstrain.models.audio import AudioEncoder
from avstrain.models.crop_head import CropHead
from avstrain.models.mask_pool import MaskPoolProjection
from avstrain.tasks import TASKS, Task
from avstrain.weight_files import WEIGHTS, needs

# the parts saved beside the AVS model in a checkpoint (None when the config has no such part)
PARTS = ("audio_encoder", "crop_head", "audio_proj", "mask_proj")


class TrainableAVS(nn.Module):
    """Everything that trains together for one task: the AVS model, the audio encoder (absent
    when the shards carry VGGish embeddings), the crop head and the audio projection P
    (128 -> 512) of the audio-crop loss. One module, so DDP wraps it once."""

    def __init__(self, avs: nn.Module, audio_encoder: Optional[nn.Module],
                 crop_head: Optional[nn.Module], audio_proj: Optional[nn.Module], task: Task,
                 mask_proj: Optional[nn.Module] = None, crop_encoder: str = "separate",
                 audio_crop_source: str = "embedding", audio_blind: bool = False):
        super().__init__()
        self.task = task
        self.avs = avs
        self.audio_encoder = audio_encoder
        self.crop_head = crop_head
        self.audio_proj = audio_proj
        self.mask_proj = mask_proj  # w_mask_crop > 0: MaskPoolProjection
        self.crop_encoder = crop_encoder  # config keys of the same names (docs/reproducing.md)
        self.audio_crop_source = audio_crop_source
        self.audio_blind = audio_blind  # config key audio_blind: every forward sees zeroed audio

    def encode_audio(self, batch: dict) -> torch.Tensor:
        """[B*T,128] audio features: the shards' VGGish embeddings or the encoder's output."""
        if self.audio_encoder is None:
            if "audio_vggish" not in batch:
                raise DataError("these shards carry no audio_vggish embeddings; train with "
                                "--set audio_encoder=tiny or give --set vggish_weights=FILE")
            return batch["audio_vggish"]
        return self.audio_encoder(batch["audio_logmel"])  # [B*T,1,96,64] -> [B*T,128]

    def forward(self, batch: dict, crops: bool = True, zero_audio: bool = False, weights=None) -> dict:
        """Model outputs; with ``weights`` (``LossWeights``) also ``loss`` and ``terms``, computed
        here so that every trained module (the audio projection too) is used inside the DDP
        forward."""
        out, loss_batch = self.outputs(batch, crops, zero_audio, for_loss=weights is not None)
        if weights is not None:
            out["loss"], out["terms"] = compute_losses(self, out, loss_batch, weights)
        return out

    def outputs(self, batch: dict, crops: bool = True, zero_audio: bool = False,
                for_loss: bool = False) -> tuple[dict, dict]:
        """``(model outputs, the batch the loss compares them with)`` (the masks downsampled when
        the task computes its loss at the model size)."""
        audio = self.encode_audio(batch)
        if zero_audio or self.audio_blind:
            audio = torch.zeros_like(audio)
        fv = batch.get("frame_valid")  # AVSS: the official model gates by the frame-valid flag
        if fv is not None:
            audio = audio * fv.reshape(-1, 1).to(audio.dtype)  # padded steps get zero audio (official)
        logits, feature_maps, audio_feats = self.avs(batch["frames"], audio, frame_valid=fv)[:3]
        size = batch["masks"].shape[-2:]
        if logits.shape[-2:] != size and self.task.seg_loss_at_model_size and for_loss:
            # the loss at the model resolution, on nearest-downsampled masks (see avstrain.tasks.AVSS)
            batch = dict(batch, masks=nn.functional.interpolate(batch["masks"][:, None].float(),
                                                               size=logits.shape[-2:], mode="nearest")[:, 0])
        elif logits.shape[-2:] != size:  # model ran at a reduced image_size: back to the GT resolution
            logits = nn.functional.interpolate(logits, size=size, mode="bilinear", align_corners=False)
        out = {"logits": logits, "feature_maps": feature_maps, "audio_feats": audio_feats, "audio_emb": audio}
        if crops and self.crop_head is not None:
            out.update(self.crop_outputs(batch, out))
        return out, batch


    def crop_outputs(self, batch: dict, out: dict) -> dict:
        """What the crop losses read, wired as the coupling keys say (the one place they act):
        ``crop_feat [B*T,512]`` and ``crop_logits [B*T,K]`` from the crop head, on its own trunk
        (separate) or the segmentation backbone (segmentation); ``crop_audio [B*T,C]`` the stage
        mean of TPAVI's audio projections (audio_crop_source=tpavi; else the loss uses
        ``audio_emb``); ``mask_feat``/``mask_logits`` the mask-pooled features (w_mask_crop)."""
        trunk = self.avs.backbone if self.crop_encoder == "segmentation" else None
        res = dict(zip(("crop_feat", "crop_logits"), self.crop_head(batch["crops"], trunk=trunk)))
        if self.audio_crop_source == "tpavi":
            feats = [a for a in out["audio_feats"] if a is not None]  # each [B, T, C]
            res["crop_audio"] = torch.stack(feats).mean(dim=0).reshape(-1, feats[0].shape[-1])  # [B*T, C]
        if self.mask_proj is not None:
            res["mask_feat"] = self.mask_proj(out["feature_maps"], out["logits"])  # [B*T, 512]
            res["mask_logits"] = self.crop_head.classify(res["mask_feat"])  # [B*T, K]
        return res


def resolve_audio_encoder(cfg: TrainConfig, has_vggish: bool) -> str:
    """auto: the shards' embeddings if present, else frozen VGGish if weights given, else tiny."""
    if cfg.audio_encoder != "auto":
        return cfg.audio_encoder
    if has_vggish:
        return "precomputed"
    return "vggish" if cfg.vggish_weights else "tiny"


def missing_pretrained(cfg: TrainConfig, has_vggish: bool) -> list[str]:
    """The pretrained files a ``require_pretrained`` config lacks, each with the option that
    supplies it (empty when nothing is missing or the config does not require them). Pure."""
    if not cfg.require_pretrained:
        return []
    missing = []
    file = {key: WEIGHTS[name].file for key, name in needs(cfg)}  # the published names (avstrain weights list)
    if cfg.backbone != "tiny" and not cfg.backbone_weights and not cfg.init_from:
        missing.append(f"ImageNet {cfg.backbone} weights ({file['backbone_weights']}): --set backbone_weights=FILE "
                       "(or --init-from CHECKPOINT)")
    if (cfg.crop_losses_on() and cfg.crop_encoder == "separate" and cfg.crop_backbone == "resnet50"
            and not cfg.crop_backbone_weights):
        missing.append(f"ImageNet ResNet-50 weights for the crop head ({file['crop_backbone_weights']}): "
                       "--set crop_backbone_weights=FILE")
    if resolve_audio_encoder(cfg, has_vggish) == "tiny":
        missing.append(f"VGGish weights ({WEIGHTS['vggish'].file}): --set vggish_weights=FILE, or shards built "
                       "with avsprep build --vggish-weights")
    return missing


def random_init_warnings(missing: list[str]) -> list[str]:
    """The warnings recorded in config.json, the checkpoints and the evaluate JSON of a run that
    was allowed to start without its recipe's pretrained files."""
    return [f"allow_random_init: trained without {m.split(':')[0]}; the results are not the recipe's"
            for m in missing]


def build_system(cfg: TrainConfig, num_classes: int, has_vggish: bool,
                 audio_kind: Optional[str] = None) -> TrainableAVS:
    """Build the modules named by ``cfg`` (weights loaded from the paths it gives, if any).

    ``audio_kind`` forces the audio encoder (used when rebuilding from a checkpoint, whose
    frozen VGGish weights are inside it rather than in a file)."""
    task = TASKS[cfg.setting]
    avs = build_avs_model(backbone=cfg.backbone, tpavi_stages=tuple(cfg.tpavi_stages),
                          pretrained=cfg.backbone_weights, channel=cfg.channel,
                          head_channels=tuple(cfg.head_channels),
                          num_classes=task.head_classes(num_classes), audio_bias=task.audio_bias)
    kind = audio_kind or resolve_audio_encoder(cfg, has_vggish)
    audio_encoder = None
    if kind == "precomputed":
        if not has_vggish:
            raise DataError("audio_encoder=precomputed needs shards built with --vggish-weights "
                            "(audio_vggish); or use --set audio_encoder=tiny")
    elif audio_kind is not None:  # rebuilding from a checkpoint: its state dict is loaded next
        audio_encoder = AudioEncoder(kind, weights_from_checkpoint=True)
    else:
        audio_encoder = AudioEncoder(kind, weights=cfg.vggish_weights)
    crop_head = audio_proj = mask_proj = None
    if cfg.crop_losses_on():
        shared = avs.backbone.channels[-1] if cfg.crop_encoder == "segmentation" else None
        crop_head = CropHead(num_classes, feat_dim=512, backbone=cfg.crop_backbone,
                             pretrained=None if shared else cfg.crop_backbone_weights,
                             logits_relu=cfg.crop_logits_relu, shared_channels=shared)
        if cfg.w_audio > 0:
            audio_dim = cfg.channel if cfg.audio_crop_source == "tpavi" else 128
            audio_proj = nn.Linear(audio_dim, 512)  # P in 1 - cos(P a, f)
        if cfg.w_mask_crop > 0:
            mask_proj = MaskPoolProjection(cfg.channel, stages=4, feat_dim=512)
    system = TrainableAVS(avs, audio_encoder, crop_head, audio_proj, task, mask_proj=mask_proj,
                          crop_encoder=cfg.crop_encoder, audio_crop_source=cfg.audio_crop_source,
                          audio_blind=cfg.audio_blind)
    system.audio_kind = kind
    system.num_classes = num_classes
    return system


def loss_weights(cfg: TrainConfig) -> LossWeights:
    """The config's loss weights as ``avstrain.losses.LossWeights`` (crop terms 0 without a crop head)."""
    crop = cfg.crop_losses_on()
    return LossWeights(seg=1.0, avm=cfg.avm_weight(), ce=cfg.w_ce if crop else 0.0,
                       pairwise=cfg.w_pairwise if crop else 0.0, audio=cfg.w_audio if crop else 0.0,
                       avm_stages=tuple(cfg.tpavi_stages), mask_crop=cfg.w_mask_crop if crop else 0.0)


def compute_losses(model: TrainableAVS, out: dict, batch: dict, weights: LossWeights) -> tuple[torch.Tensor, dict]:
    """The training step's loss (the hook tests count steps with): ``task_losses``."""
    return task_losses(model, out, batch, weights)


def task_losses(model: TrainableAVS, out: dict, batch: dict, weights: LossWeights) -> tuple[torch.Tensor, dict]:
    """The task's loss on a device batch, in fp32 -> (loss, {term: float, "total": float})."""
    return model.task.loss(dict(out, logits=out["logits"].float()), batch, weights, model.audio_proj)


def unwrap(model: nn.Module) -> TrainableAVS:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
