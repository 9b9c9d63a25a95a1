"""Official AVSBench ``Pred_endecoder`` state dicts <-> avstrain checkpoints (``avstrain convert``).

The key mapping is pure (dicts in, dicts out; values are never touched), so it tests on
meta tensors; the file I/O sits in ``official_to_checkpoint`` / ``checkpoint_to_official``.
Layout facts (``fixtures/avsbench_official/README.md``): official ``train.py`` saves
``model.module.state_dict()`` (no ``module.`` prefix); the ResNet-50 encoder is
``resnet.*`` with two copies of stages 3-4 (``layer3_1``/``layer4_1`` used,
``layer3_2``/``layer4_2`` built from the same ImageNet weights and never used); the
PVT-v2-b5 encoder is ``encoder_backbone.*`` with the original PVT names; necks
``conv1..4``, ``tpavi_b1..4``, decoder ``path1..4`` and ``output_conv`` are shared.
Ours: ``backbone.*`` (torchvision / timm names), ``conv1..4``, ``tpavi_bK``,
``decoder.pathK``, ``decoder.output_conv``.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from avsprep.common.errors import DataError

BACKBONE_PREFIX = {"resnet50": "resnet.", "pvt_v2_b5": "encoder_backbone."}
UNUSED_RESNET = re.compile(r"^resnet\.layer[34]_2\.")
_SHARED = re.compile(r"^(conv[1-4]\.|tpavi_b[1-4]\.)")
_DECODER = re.compile(r"^(path[1-4]\.|output_conv\.)")
# the official model's fixed shape: avstrain configs that the official Pred_endecoder can hold
OFFICIAL_HEAD = [128, 32]


class ConvertError(DataError):
    """A file cannot be converted (missing / unexpected / wrongly shaped tensors, unknown layout)."""


# --------------------------------------------------------------------------- pure key mapping


def unwrap_state_dict(obj) -> dict:
    """The state dict inside ``obj``: plain, ``{"model": sd}`` or ``{"state_dict": sd}``,
    with a ``module.`` (DataParallel) prefix stripped. Pure; ValueError if none is found."""
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not obj or not all(isinstance(k, str) for k in obj):
        raise ValueError("no state dict (name -> tensor) found")
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return dict(obj)


def detect_backbone(sd: dict) -> Optional[str]:
    """``resnet50`` / ``pvt_v2_b5`` from an official state dict's encoder prefix, else None."""
    for name, prefix in BACKBONE_PREFIX.items():
        if any(k.startswith(prefix) for k in sd):
            return name
    return None


def tpavi_stages_of(sd: dict) -> list[int]:
    """The TPAVI stages present in a state dict (``tpavi_bK`` -> stage K-1)."""
    return sorted({int(m.group(1)) - 1 for k in sd if (m := re.match(r"^tpavi_b([1-4])\.", k))})


def _pvt_to_timm(k: str) -> str:
    """Original PVT-v2 name -> timm name (``patch_embed1`` -> ``patch_embed``, ``block2.3`` ->
    ``stages.1.blocks.3``, ``norm4`` -> ``stages.3.norm``, ``dwconv.dwconv`` -> ``dwconv``)."""
    k = k.replace("dwconv.dwconv", "dwconv")
    if k.startswith("patch_embed1."):
        return "patch_embed." + k[len("patch_embed1."):]
    k = re.sub(r"^patch_embed([2-4])\.", lambda m: f"stages.{int(m.group(1)) - 1}.downsample.", k)
    k = re.sub(r"^block([1-4])\.(\d+)\.", lambda m: f"stages.{int(m.group(1)) - 1}.blocks.{m.group(2)}.", k)
    return re.sub(r"^norm([1-4])\.", lambda m: f"stages.{int(m.group(1)) - 1}.norm.", k)


def _timm_to_pvt(k: str) -> str:
    """Inverse of ``_pvt_to_timm``."""
    if k.startswith("patch_embed."):
        return "patch_embed1." + k[len("patch_embed."):]
    k = re.sub(r"^stages\.(\d)\.downsample\.", lambda m: f"patch_embed{int(m.group(1)) + 1}.", k)
    k = re.sub(r"^stages\.(\d)\.blocks\.(\d+)\.", lambda m: f"block{int(m.group(1)) + 1}.{m.group(2)}.", k)
    k = re.sub(r"^stages\.(\d)\.norm\.", lambda m: f"norm{int(m.group(1)) + 1}.", k)
    return k.replace("mlp.dwconv.", "mlp.dwconv.dwconv.")


@dataclass
class Mapping:
    """Result of ``official_to_ours``: the mapped dict, the unused ResNet branch that was
    dropped (names), and keys that belong to no part of the model (names)."""

    state_dict: dict
    dropped: list = field(default_factory=list)
    unexpected: list = field(default_factory=list)


def official_to_ours(sd: dict, backbone: str) -> Mapping:
    """Official ``Pred_endecoder`` keys -> avstrain ``AVSModel`` keys. Pure."""
    if backbone not in BACKBONE_PREFIX:
        raise ValueError(f"unknown backbone {backbone!r}; choose one of: {', '.join(BACKBONE_PREFIX)}")
    prefix = BACKBONE_PREFIX[backbone]
    out, dropped, unexpected = {}, [], []
    for k, v in sd.items():
        if backbone == "resnet50" and UNUSED_RESNET.match(k):
            dropped.append(k)
        elif k.startswith(prefix):
            rest = k[len(prefix):]
            if backbone == "resnet50":
                rest = re.sub(r"^layer([34])_1\.", r"layer\1.", rest)
            else:
                rest = _pvt_to_timm(rest)
            out["backbone." + rest] = v
        elif _SHARED.match(k):
            out[k] = v
        elif _DECODER.match(k):
            out["decoder." + k] = v
        else:
            unexpected.append(k)
    return Mapping(out, dropped, unexpected)


def ours_to_official(sd: dict, backbone: str, unused_branch: Optional[dict] = None) -> dict:
    """avstrain ``AVSModel`` keys -> official ``Pred_endecoder`` keys. Pure.

    ResNet-50: the official model also holds ``layer3_2``/``layer4_2`` (never used in its
    forward, so they do not change the logits). The official code initialises them from the
    ImageNet weights, like ``layer3_1``/``layer4_1``: ``unused_branch`` (torchvision names
    ``layer3.*``/``layer4.*``, e.g. from the ImageNet file) supplies them; without it they are
    copies of our ``layer3``/``layer4``."""
    if backbone not in BACKBONE_PREFIX:
        raise ValueError(f"only resnet50 and pvt_v2_b5 models have an official layout, not {backbone!r}")
    prefix = BACKBONE_PREFIX[backbone]
    out = {}
    for k, v in sd.items():
        if k.startswith("backbone."):
            rest = k[len("backbone."):]
            if backbone == "resnet50":
                m = re.match(r"^layer([34])\.", rest)
                if m:
                    out[f"{prefix}layer{m.group(1)}_1.{rest[len(m.group(0)):]}"] = v
                    source = unused_branch if unused_branch is not None else sd
                    src_key = rest if unused_branch is not None else k
                    if src_key not in source:
                        raise KeyError(f"{rest} is missing from the weights given for the unused "
                                       "layer3_2/layer4_2 branch")
                    out[f"{prefix}layer{m.group(1)}_2.{rest[len(m.group(0)):]}"] = source[src_key]
                    continue
                out[prefix + rest] = v
            else:
                out[prefix + _timm_to_pvt(rest)] = v
        elif k.startswith("decoder."):
            out[k[len("decoder."):]] = v
        else:
            out[k] = v
    return out


def compare_shapes(expected: dict, got: dict) -> tuple[list, list, list]:
    """(missing, unexpected, wrong shape) key lists of ``got`` against ``expected`` (name -> shape)."""
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    wrong = [k for k in expected if k in got and tuple(expected[k]) != tuple(got[k])]
    return missing, unexpected, wrong


def fit_problems(expected: dict, got: dict, unexpected: Sequence[str] = ()) -> list[str]:
    """Why the tensors ``got`` (name -> shape) cannot fill a model whose tensors are ``expected``:
    one phrase each for the missing, wrong-shaped and unexpected keys (``unexpected``: keys of
    the file already known to fit nowhere). Empty when every tensor fits."""
    missing, extra, wrong = compare_shapes(expected, got)
    extra = list(unexpected) + extra
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing: {names_line(missing)}")
    if wrong:
        problems.append(f"{len(wrong)} with the wrong shape: "
                        + names_line([f"{k} {tuple(got[k])} (model {tuple(expected[k])})" for k in wrong]))
    if extra:
        problems.append(f"{len(extra)} unexpected: {names_line(extra)}")
    return problems


def names_line(keys: list, limit: int = 6) -> str:
    """``a, b, c (+N more)``: key lists in one-line messages."""
    head = ", ".join(keys[:limit])
    return head + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


# --------------------------------------------------------------------------- I/O edges


def read_weights(path) -> object:
    """``torch.load(weights_only=True)``: a pickle that would run code is refused, naming the file."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise ConvertError(f"{path}: file not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling refusals, zip errors, truncation
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise ConvertError(f"{path}: cannot be read with weights_only=True ({first}); only plain tensor "
                           "files are accepted (a pickle that runs code is refused)") from None


def _preset_for(setting: str, backbone: str) -> str:
    return {("s4", "resnet50"): "s4-resnet50-avsbench", ("ms3", "resnet50"): "ms3-resnet50-avsbench",
            ("s4", "pvt_v2_b5"): "s4-pvt-avsbench", ("ms3", "pvt_v2_b5"): "ms3-pvt-avsbench"}[(setting, backbone)]


def official_system(sd: dict, path, backbone: Optional[str] = None, setting: str = "s4",
                    vggish_weights=None):
    """An official state dict as an avstrain ``(AVSSystem, TrainConfig, report)``; every tensor the
    model needs must be in the file with its shape (else ``ConvertError`` naming them)."""
    from avstrain.config import TrainConfig, apply, load_preset
    from avstrain.system import build_system

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
    mapped = official_to_ours(sd, backbone)
    stages = tpavi_stages_of(sd) or [0, 1, 2, 3]
    cfg = apply(load_preset(_preset_for(setting, backbone)), {
        "tpavi_stages": stages, "audio_encoder": "vggish" if vggish_weights else "precomputed",
        "vggish_weights": str(vggish_weights) if vggish_weights else None}, "avstrain convert")
    num_classes = 23 if setting == "s4" else 1  # only a crop head would use it; the presets have none
    build_cfg = TrainConfig(**{**cfg.to_dict(), "backbone_weights": None})
    system = build_system(build_cfg, num_classes=num_classes, has_vggish=not vggish_weights,
                          audio_kind=None if vggish_weights else "precomputed")
    expected = {k: tuple(v.shape) for k, v in system.avs.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in mapped.state_dict.items()}
    problems = fit_problems(expected, got, mapped.unexpected)
    if problems:
        raise ConvertError(f"{path}: does not fit the official {backbone} {setting.upper()} model: "
                           + "; ".join(problems) + "; nothing was written")
    system.avs.load_state_dict(mapped.state_dict, strict=True)
    report = {"source": str(path), "backbone": backbone, "setting": setting, "tpavi_stages": stages,
              "loaded": len(mapped.state_dict), "dropped_unused_branch": len(mapped.dropped),
              "missing": [], "unexpected": [], "audio": "vggish" if vggish_weights else "precomputed"}
    return system, cfg, report


def official_to_checkpoint(src, dst, backbone: Optional[str] = None, setting: str = "s4",
                           vggish_weights=None) -> dict:
    """``avstrain convert SRC -o DST``: official file -> avstrain checkpoint; returns the key report."""
    from avstrain.checkpoints import save_checkpoint

    system, cfg, report = official_system(read_weights(src), src, backbone, setting, vggish_weights)
    save_checkpoint(dst, system, None, cfg, epoch=0, step=0, classes=[],
                    extra={"converted_from": {"file": str(src), "format": "official-avsbench"}})
    report["output"] = str(dst)
    return report


def checkpoint_to_official(src, dst, unused_branch_weights=None) -> dict:
    """``avstrain convert CKPT -o DST --to official``: a plain state dict for the official
    ``Pred_endecoder(...).load_state_dict(sd, strict=True)``, saved as its ``train.py`` does."""
    import torch

    from avsprep.common.atomic import atomic_write
    from avstrain.checkpoints import load_checkpoint
    from avstrain.config import from_dict

    ckpt = load_checkpoint(src)
    cfg = from_dict(ckpt["config"], source=f"config in {src}")
    if cfg.backbone not in BACKBONE_PREFIX:
        raise ConvertError(f"{src}: backbone {cfg.backbone!r} has no official counterpart; only resnet50 and "
                           "pvt_v2_b5 models can be exported")
    if list(cfg.head_channels) != OFFICIAL_HEAD:
        raise ConvertError(f"{src}: head_channels {cfg.head_channels} differ from the official head "
                           f"{OFFICIAL_HEAD}; such a model cannot be exported")
    branch = None
    if unused_branch_weights is not None and cfg.backbone == "resnet50":
        from avstrain.models.backbones import read_state_dict, remap_resnet_keys

        branch = remap_resnet_keys(read_state_dict(unused_branch_weights))
    try:
        sd = ours_to_official(ckpt["model"], cfg.backbone, branch)
    except KeyError as exc:
        raise ConvertError(f"{unused_branch_weights}: {exc.args[0]}; pass the ImageNet ResNet-50 file") from None
    buf = io.BytesIO()
    torch.save(sd, buf)
    with atomic_write(dst, "wb") as fh:
        fh.write(buf.getbuffer())
    return {"source": str(src), "output": str(dst), "backbone": cfg.backbone, "setting": cfg.setting,
            "tensors": len(sd), "unused_branch": ("from " + str(unused_branch_weights)) if branch is not None
            else ("copies of layer3/layer4" if cfg.backbone == "resnet50" else "none"),
            "official_args": {"channel": cfg.channel, "tpavi_stages": list(cfg.tpavi_stages),
                              "tpavi_va_flag": True, "tpavi_vv_flag": False}}


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
                 f"  load with Pred_endecoder(channel={a['channel']}, tpavi_stages={a['tpavi_stages']}, "
                 "tpavi_va_flag=True).load_state_dict(sd, strict=True)",
                 f"wrote {report['output']}"]
    return "\n".join(lines)
