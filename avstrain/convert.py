"""``avstrain convert``: official AVSBench ``Pred_endecoder`` files <-> avstrain checkpoints.

The file edges only: read the official file, check it fits, write the checkpoint (and back),
and the key report for the terminal. The key mapping itself is pure and lives in
``avstrain.models.weights`` (``official_to_ours``, ``ours_to_official``).
"""

from __future__ import annotations

import io
from typing import NamedTuple, Optional

import torch

from avsprep.common.atomic import atomic_write
from avsprep.common.tensors import refuse_bad_tensors
from avsprep.datasets.avsbench import CLASSES
from avsprep.datasets.avss_classes import AVSS_CLASSES
from avstrain.checkpoints import checkpoint_config, empty_system, load_checkpoint, save_checkpoint
from avstrain.config import TrainConfig, apply, load_preset
from avstrain.models.weights import (BACKBONE_PREFIX, ConvertError, detect_backbone, fit_problems, head_classes_of,
                                     official_to_ours, ours_to_official, read_state_dict, read_weights,
                                     remap_resnet_keys, tpavi_stages_of, unwrap_state_dict)
from avstrain.system import build_system

# the official model's fixed shape: avstrain configs that the official Pred_endecoder can hold
OFFICIAL_HEAD = [128, 32]


class OfficialSetting(NamedTuple):
    """What an official model of one setting becomes in avstrain."""

    presets: dict      # backbone -> the avstrain preset of the official recipe
    num_classes: int   # the dataset's classes (S4/MS3: only a crop head would use them; AVSS: the head's)
    classes: list      # class names saved in the checkpoint
    head: int          # output channels of the official head (output_conv.4)
    scripts: str       # the official code's folder (avs_scripts/...)


SETTINGS = {
    "s4": OfficialSetting({"resnet50": "s4-resnet50-avsbench", "pvt_v2_b5": "s4-pvt-avsbench"},
                          len(CLASSES["s4"]), [], 1, "avs_s4"),
    "ms3": OfficialSetting({"resnet50": "ms3-resnet50-avsbench", "pvt_v2_b5": "ms3-pvt-avsbench"},
                           len(CLASSES["ms3"]), [], 1, "avs_ms3"),
    "avss": OfficialSetting({"resnet50": "avss-resnet50-avsbench", "pvt_v2_b5": "avss-pvt-avsbench"},
                            len(AVSS_CLASSES), list(AVSS_CLASSES), len(AVSS_CLASSES), "avss"),
}


def setting_of(sd: dict, setting: Optional[str], path) -> str:
    """The setting to convert an official state dict for: ``setting`` when given (refused, naming
    the right one, when the file's head says otherwise), else told by its head: 71 classes ->
    ``avss``, 1 -> ``s4`` (S4 and MS3 files are alike)."""
    head = head_classes_of(sd)
    matches = [name for name, row in SETTINGS.items() if row.head == head]  # s4 and ms3 share a head
    if setting is None:
        return matches[0] if matches else "s4"
    if matches and setting not in matches:
        use = matches[0] + (f" (or {', '.join(matches[1:])})" if len(matches) > 1 else "")
        raise ConvertError(f"{path}: its head (output_conv.4) has {head} output channel(s), so it is an official "
                           f"{'/'.join(m.upper() for m in matches)} model, not {setting.upper()}; "
                           f"use --setting {use}; nothing was written")
    return setting


def official_system(sd: dict, path, backbone: Optional[str] = None, setting: Optional[str] = None,
                    vggish_weights=None):
    """An official state dict as an avstrain ``(TrainableAVS, TrainConfig, report)``; every tensor the
    model needs must be in the file with its shape (else ``ConvertError`` naming them)."""
    try:
        sd = unwrap_state_dict(sd)
    except ValueError:
        raise ConvertError(f"{path}: holds no state dict (name -> tensor); give an official AVSBench "
                           ".pth file") from None
    found = detect_backbone(sd)
    if backbone is None:
        if found is None:
            raise ConvertError(f"{path}: no resnet.* or encoder_backbone.* keys, so not an official AVSBench "
                               "Pred_endecoder state dict; pass --backbone if it is one")
        backbone = found
    elif found is not None and found != backbone:
        raise ConvertError(f"{path}: the keys are those of a {found} model, not {backbone}; "
                           f"use --backbone {found}")
    setting = setting_of(sd, setting, path)
    official = SETTINGS[setting]
    mapped = official_to_ours(sd, backbone)
    stages = tpavi_stages_of(sd) or [0, 1, 2, 3]
    cfg = apply(load_preset(official.presets[backbone]), {
        "tpavi_stages": stages, "audio_encoder": "vggish" if vggish_weights else "precomputed",
        "vggish_weights": str(vggish_weights) if vggish_weights else None}, "avstrain convert")
    # S4/MS3: only a crop head would use num_classes (the presets have none); AVSS: the head's classes
    build_cfg = TrainConfig(**{**cfg.to_dict(), "backbone_weights": None})
    system = build_system(build_cfg, num_classes=official.num_classes, has_vggish=not vggish_weights,
                          audio_kind=None if vggish_weights else "precomputed")
    expected = {k: tuple(v.shape) for k, v in system.avs.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in mapped.state_dict.items()}
    problems = fit_problems(expected, got, mapped.unexpected)
    if problems:
        raise ConvertError(f"{path}: does not fit the official {backbone} {setting.upper()} model: "
                           + "; ".join(problems) + "; nothing was written")
    refuse_bad_tensors(sd, str(path), ours_to_official(system.avs.state_dict(), backbone))
    system.avs.load_state_dict(mapped.state_dict, strict=True)
    report = {"source": str(path), "backbone": backbone, "setting": setting, "tpavi_stages": stages,
              "loaded": len(mapped.state_dict), "dropped_unused_branch": len(mapped.dropped),
              "missing": [], "unexpected": [], "audio": "vggish" if vggish_weights else "precomputed"}
    return system, cfg, report


def official_to_checkpoint(src, dst, backbone: Optional[str] = None, setting: Optional[str] = None,
                           vggish_weights=None) -> dict:
    """``avstrain convert SRC -o DST``: official file -> avstrain checkpoint; returns the key report."""
    system, cfg, report = official_system(read_weights(src), src, backbone, setting, vggish_weights)
    save_checkpoint(dst, system, None, cfg, epoch=0, step=0, classes=SETTINGS[report["setting"]].classes,
                    extra={"converted_from": {"file": str(src), "format": "official-avsbench"}})
    report["output"] = str(dst)
    return report


def checkpoint_to_official(src, dst, unused_branch_weights=None) -> dict:
    """``avstrain convert CKPT -o DST --to official``: a plain state dict for the official
    ``Pred_endecoder(...).load_state_dict(sd, strict=True)``, saved as its ``train.py`` does."""
    ckpt = load_checkpoint(src)
    cfg = checkpoint_config(ckpt, src)
    if cfg.backbone not in BACKBONE_PREFIX:
        raise ConvertError(f"{src}: backbone {cfg.backbone!r} has no official counterpart; only resnet50 and "
                           "pvt_v2_b5 models can be exported")
    if list(cfg.head_channels) != OFFICIAL_HEAD:
        raise ConvertError(f"{src}: head_channels {cfg.head_channels} differ from the official head "
                           f"{OFFICIAL_HEAD}; such a model cannot be exported")
    with torch.device("meta"):  # the model's dtypes, to refuse a weight cast to an integer type
        own = empty_system(cfg, ckpt).avs.state_dict()
    refuse_bad_tensors(ckpt["model"], f"checkpoint {src}", own, prefix="model.")
    branch = None
    if unused_branch_weights is not None and cfg.backbone == "resnet50":
        branch = remap_resnet_keys(read_state_dict(unused_branch_weights))
    try:
        sd = ours_to_official(ckpt["model"], cfg.backbone, branch)
    except KeyError as exc:
        raise ConvertError(f"{unused_branch_weights}: {exc.args[0]}; pass the ImageNet ResNet-50 file") from None
    buf = io.BytesIO()
    torch.save(sd, buf)
    with atomic_write(dst, "wb") as fh:
        fh.write(buf.getbuffer())
    model_file = "ResNet_AVSModel" if cfg.backbone == "resnet50" else "PVT_AVSModel"
    return {"source": str(src), "output": str(dst), "backbone": cfg.backbone, "setting": cfg.setting,
            "official_code": f"avs_scripts/{SETTINGS[cfg.setting].scripts}/model/{model_file}.", "tensors": len(sd),
            "unused_branch": ("from " + str(unused_branch_weights)) if branch is not None
            else ("copies of layer3/layer4" if cfg.backbone == "resnet50" else "none"),
            "official_args": {"channel": cfg.channel, "tpavi_stages": list(cfg.tpavi_stages),
                              "tpavi_va_flag": True, "tpavi_vv_flag": False,
                              "NUM_CLASSES": int(ckpt["num_classes"]) if SETTINGS[cfg.setting].head > 1 else None}}


def report_text(report: dict) -> str:
    """The key report of a conversion, for the terminal."""
    if "loaded" in report:
        lines = [f"{report['source']}: official {report['backbone']} {report['setting'].upper()} model "
                 f"(TPAVI stages {','.join(map(str, report['tpavi_stages']))})",
                 f"  loaded {report['loaded']} tensors; missing 0; unexpected 0",
                 f"  dropped {report['dropped_unused_branch']} tensors of the unused ResNet layer3_2/layer4_2 "
                 "branch" if report["backbone"] == "resnet50" else "  dropped 0 tensors",
                 f"  audio: {'frozen VGGish from --vggish-weights' if report['audio'] == 'vggish' else 'precomputed: evaluate needs shards built with --vggish-weights'}",
                 f"wrote {report['output']}"]
    else:
        a = report["official_args"]
        lines = [f"{report['source']}: {report['backbone']} {report['setting'].upper()} model -> "
                 f"{report['tensors']} tensors in the official layout (unused branch: {report['unused_branch']})",
                 f"  load with {report['official_code']}Pred_endecoder(channel={a['channel']}, "
                 + (f"config=cfg with NUM_CLASSES={a['NUM_CLASSES']}, " if a.get("NUM_CLASSES") else "")
                 + f"tpavi_stages={a['tpavi_stages']}, tpavi_va_flag=True).load_state_dict(sd, strict=True)",
                 f"wrote {report['output']}"]
    return "\n".join(lines)
