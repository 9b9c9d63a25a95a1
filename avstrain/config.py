"""Training configuration: one dataclass, three layers, saved with the run.

Precedence (lowest to highest): ``TrainConfig`` defaults -> ``--preset NAME``
or ``--config FILE`` (YAML or JSON, flat) -> command-line flags and
``--set key=value``. Unknown keys raise ``ConfigError`` naming the key and
listing the valid ones; values are coerced to the field's type. The resolved
config is written to ``RUN/config.json``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping, Optional

import yaml

from avsprep.common.errors import AvsError
from avsprep.common.jsonread import loads_limited, safe_load_limited

PRESETS_DIR = Path(__file__).resolve().parent / "presets"


class ConfigError(AvsError):
    """A config file, preset or override is invalid (unknown key, bad value)."""


# the official AVM-KL weight per setting (train.sh: 0 for S4, 0.5 for MS3; AVSS as MS3)
AVM_DEFAULT = {"s4": 0.0, "ms3": 0.5, "avss": 0.5}


@dataclass
class TrainConfig:
    """Everything a training run depends on. Comments say what each field does."""

    # --- task and model
    setting: str = "s4"                 # s4 (loss on frames with a GT mask) | ms3 (5 masks + AVM-KL)
                                        # | avss (71-class semantic task on AVSS shards; s4/ms3 on AVSS
                                        #   shards = the binary task of their v1s/v1m clips)
    backbone: str = "resnet50"          # resnet50 | pvt_v2_b5 | tiny (CPU demos)
    channel: int = 256                  # neck / TPAVI / decoder width (reference: 256)
    head_channels: list = field(default_factory=lambda: [128, 32])  # output head widths (reference: 128, 32)
    tpavi_stages: list = field(default_factory=lambda: [0, 1, 2, 3])  # stages with TPAVI
    image_size: Optional[int] = None    # model input side (multiple of 32); None = shard frames (224).
                                        # logits are resized back, so losses/metrics use the GT masks
    backbone_weights: Optional[str] = None  # ImageNet resnet50 .pth or original pvt_v2_b5.pth; None = random init
    init_from: Optional[str] = None     # start from these weights (avstrain checkpoint or official AVSBench .pth;
                                        # fresh optimiser, epoch 0); `avstrain train --init-from FILE`
    require_pretrained: bool = False    # the recipe needs pretrained files (paper presets): refuse to start without them
    allow_random_init: bool = False     # run a require_pretrained config without them anyway (warned, recorded)
    # --- audio
    audio_encoder: str = "auto"         # auto | precomputed (shard audio_vggish) | vggish (frozen) | tiny (trainable)
    vggish_weights: Optional[str] = None  # torchvggish vggish-10086976.pth for audio_encoder=vggish
    audio_blind: bool = False           # the audio-blind control: the model always sees zeroed audio (train,
                                        # validation, evaluate); what "not listening" scores (docs/reproducing.md)
    # --- crop losses (docs/reproducing.md, the method)
    crop_head: bool = True              # build the crop classifier; needed when any crop weight > 0
    crop_backbone: str = "resnet50"     # resnet50 (the recipe) | tiny
    crop_backbone_weights: Optional[str] = None  # ImageNet resnet50 .pth for the crop head; None = random init
    crop_logits_relu: bool = True       # the recipe's ReLU on the 23 logits before CE; False = clean CE
    w_ce: float = 1.0                   # crop cross-entropy against the clip class (0 = off)
    w_pairwise: float = 1.0             # mean PairwiseDistance between the clip's crop features (0 = off)
    w_audio: float = 1.0                # 1 - cos(P a, f) between mean VGGish embedding and crop features (0 = off)
    w_avm: Optional[float] = None       # AVM-KL weight; None = 0.5 for ms3, 0 for s4 (reference train.sh)
    # --- coupling the crop losses to the segmentation model (issue 18; docs/reproducing.md). The
    #     recipe's values (separate, embedding, 0) leave the masks untouched by the crop losses.
    crop_encoder: str = "separate"      # separate (recipe: crop_backbone, a network of its own) | segmentation
                                        # (the crops go through the segmentation model's visual backbone)
    audio_crop_source: str = "embedding"  # audio side of the audio-crop loss: embedding (recipe: the audio
                                        # encoder's 128-d output, frozen VGGish in the paper) | tpavi (TPAVI's
                                        # audio projections, the features the masks attend with, stage mean)
    w_mask_crop: float = 0.0            # mask-crop consistency: segmentation features pooled by the predicted
                                        # mask agree with the crop feature (cosine) and the clip class (CE)
    # --- optimisation
    epochs: int = 15                    # reference: 15 (S4), 30 (MS3)
    batch_size: int = 4                 # videos per step (per process under DDP); 4 videos = 20 frames
    lr: float = 1e-4                    # Adam, no weight decay (reference)
    lr_schedule: str = "constant"       # constant (reference) | cosine (per step, from lr down to 0)
    lr_decay_epochs: Optional[int] = None  # cosine horizon in epochs (None = epochs); fixed, so extending
                                        # a run with --resume --epochs N does not change past steps' lr
    seed: int = 123                     # python, numpy, torch; data order = f(seed, epoch)
    augment: bool = False               # albumentations flip/colour jitter, same on all the frames and masks of a clip
    max_steps_per_epoch: Optional[int] = None  # cap steps per epoch (smoke runs); None = full epoch
    # --- evaluation
    val_every: int = 1                  # validate every N epochs (best.pt follows val mIoU)
    eval_batch_videos: int = 4          # videos per batch for the official per-batch F-score
    max_eval_clips: Optional[int] = None  # cap val clips (smoke runs); None = all
    # --- hardware
    device: str = "auto"                # auto (cuda if present) | cpu | cuda
    amp: bool = True                    # bf16 autocast on CUDA for training steps (CPU always runs fp32)
    eval_amp: bool = False              # bf16 autocast for validation/evaluate/predict too (official: fp32)
    channels_last: bool = True          # channels_last memory format on CUDA
    workers: int = 2                    # DataLoader worker processes (0 = main process)
    # --- logging
    tensorboard: bool = False           # also write RUN/tb/ event files (optional extra: avsprep[tensorboard])

    def to_dict(self) -> dict:
        return asdict(self)

    def avm_weight(self) -> float:
        """The effective AVM-KL weight (None means the reference default for the setting)."""
        if self.w_avm is not None:
            return float(self.w_avm)
        return AVM_DEFAULT[self.setting]

    def crop_losses_on(self) -> bool:
        return self.crop_head and (self.w_ce > 0 or self.w_pairwise > 0 or self.w_audio > 0 or self.w_mask_crop > 0)


CHOICES = {
    "setting": ("s4", "ms3", "avss"),
    "backbone": ("resnet50", "pvt_v2_b5", "tiny"),
    "audio_encoder": ("auto", "precomputed", "vggish", "tiny"),
    "crop_backbone": ("resnet50", "tiny"),
    "device": ("auto", "cpu", "cuda"),
    "lr_schedule": ("constant", "cosine"),
    "crop_encoder": ("separate", "segmentation"),
    "audio_crop_source": ("embedding", "tpavi"),
}
POSITIVE = ("channel", "epochs", "batch_size", "val_every", "eval_batch_videos")
# upper bounds that keep a config (or a damaged checkpoint's) from building a model of many GB:
# widths up to 16x the reference 256, inputs up to 4096 px (reference 224)
MAX_WIDTH = 4096
MAX_IMAGE_SIZE = 4096


def field_names() -> list[str]:
    return [f.name for f in fields(TrainConfig)]


# --------------------------------------------------------------------------- coercion

def _coerce(name: str, value: Any, typ: Any) -> Any:
    """Coerce ``value`` (from YAML/JSON or a ``--set`` string) to the field type ``typ``."""
    origin = typing.get_origin(typ)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null", "")):
            return None
        return _coerce(name, value, args[0])
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "on"):
            return True
        if isinstance(value, str) and value.strip().lower() in ("0", "false", "no", "off"):
            return False
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
    elif typ is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
    elif typ is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                pass
    elif typ is str:
        if isinstance(value, (str, Path)):
            return str(value)
    elif typ is list:
        if isinstance(value, str):
            value = [v for v in value.replace("[", "").replace("]", "").split(",") if v.strip()]
        if isinstance(value, (list, tuple)):
            try:
                return [int(v) for v in value]
            except (TypeError, ValueError):
                pass
    raise ConfigError(f"config key {name!r}: cannot use {value!r} as {_type_name(typ)}")


def coerce_key(name: str, value: Any) -> Any:
    """``value`` coerced to config key ``name``'s type (``ConfigError`` for an unknown key or a
    value that cannot be one)."""
    hints = typing.get_type_hints(TrainConfig)
    if name not in hints:
        raise ConfigError(f"unknown config key {name!r}; valid keys: {', '.join(field_names())}")
    return _coerce(name, value, hints[name])


def _type_name(typ: Any) -> str:
    return {bool: "true/false", int: "an integer", float: "a number", str: "a string",
            list: "a list of integers (e.g. 0,1,2,3)"}.get(typ, str(typ))


def _validate(cfg: TrainConfig) -> TrainConfig:
    for key, allowed in CHOICES.items():
        if getattr(cfg, key) not in allowed:
            raise ConfigError(f"config key {key!r}: {getattr(cfg, key)!r} is not one of {', '.join(allowed)}")
    for key in POSITIVE:
        if getattr(cfg, key) < 1:
            raise ConfigError(f"config key {key!r} must be >= 1, got {getattr(cfg, key)}")
    if cfg.channel > MAX_WIDTH:
        raise ConfigError(f"config key 'channel' must be <= {MAX_WIDTH} (reference 256), got {cfg.channel}")
    if len(cfg.head_channels) != 2 or any(not 1 <= c <= MAX_WIDTH for c in cfg.head_channels):
        raise ConfigError(f"config key 'head_channels': two widths in 1..{MAX_WIDTH} (reference 128,32), "
                          f"got {cfg.head_channels}")
    if cfg.image_size is not None and (cfg.image_size < 32 or cfg.image_size % 32 or cfg.image_size > MAX_IMAGE_SIZE):
        raise ConfigError(f"config key 'image_size' must be a multiple of 32 up to {MAX_IMAGE_SIZE} (or null), "
                          f"got {cfg.image_size}")
    if any(s not in (0, 1, 2, 3) for s in cfg.tpavi_stages):
        raise ConfigError(f"config key 'tpavi_stages': stages are 0..3, got {cfg.tpavi_stages}")
    for key in ("w_ce", "w_pairwise", "w_audio", "w_mask_crop", "lr"):
        if getattr(cfg, key) < 0:
            raise ConfigError(f"config key {key!r} must be >= 0, got {getattr(cfg, key)}")
    if not cfg.crop_head and (cfg.w_ce > 0 or cfg.w_pairwise > 0 or cfg.w_audio > 0):
        raise ConfigError("crop losses need the crop head: set crop_head=true, "
                          "or w_ce=0 w_pairwise=0 w_audio=0")
    if not cfg.crop_head and cfg.w_mask_crop > 0:
        raise ConfigError("w_mask_crop compares the masked features with the crop head's: set crop_head=true "
                          "or w_mask_crop=0")
    if cfg.audio_crop_source == "tpavi" and not cfg.tpavi_stages:
        raise ConfigError("audio_crop_source=tpavi takes TPAVI's audio projections, but tpavi_stages is empty; "
                          "give tpavi_stages or audio_crop_source=embedding")
    return cfg


def apply(cfg: TrainConfig, updates: Mapping[str, Any], source: str) -> TrainConfig:
    """Return a copy of ``cfg`` with ``updates`` coerced and applied; unknown keys raise."""
    hints = typing.get_type_hints(TrainConfig)
    valid = field_names()
    clean = {}
    for key, value in updates.items():
        k = str(key).replace("-", "_")
        if k not in hints:
            raise ConfigError(f"unknown config key {key!r} in {source}; valid keys: {', '.join(valid)}")
        clean[k] = _coerce(k, value, hints[k])
    return dataclasses.replace(cfg, **clean)


# --------------------------------------------------------------------------- layers

def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def _read_mapping(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
    try:
        doc = loads_limited(text) if path.suffix.lower() == ".json" else safe_load_limited(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path} is not valid {'JSON' if path.suffix.lower() == '.json' else 'YAML'}: "
                          f"{str(exc).splitlines()[0]}") from exc
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ConfigError(f"{path} must hold a flat mapping of config keys, not {type(doc).__name__}")
    return doc


def load_preset(name: str) -> TrainConfig:
    """The preset ``presets/NAME.yaml`` applied on the defaults."""
    path = PRESETS_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"unknown preset {name!r}; available: {', '.join(preset_names())}")
    return _validate(apply(TrainConfig(), _read_mapping(path), f"preset {name} ({path})"))


def load_file(path: Path | str) -> TrainConfig:
    path = Path(path)
    doc = _read_mapping(path)
    return _validate(apply(TrainConfig(), doc, str(path)))


def parse_set(items: typing.Iterable[str]) -> dict:
    """``["lr=3e-4", "tpavi_stages=0,1"]`` -> ``{"lr": "3e-4", ...}`` (strings, coerced later)."""
    out = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def resolve_config(preset: Optional[str] = None, file: Optional[Path | str] = None,
                   overrides: Optional[Mapping[str, Any]] = None) -> TrainConfig:
    """Defaults -> preset or file -> overrides (None values in ``overrides`` are skipped)."""
    if preset and file:
        raise ConfigError("give either --preset or --config, not both")
    if preset:
        cfg = load_preset(preset)
    elif file:
        cfg = load_file(file)
    else:
        cfg = TrainConfig()
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    return _validate(apply(cfg, overrides, "command-line overrides"))


def from_dict(doc: Mapping[str, Any], source: str = "checkpoint") -> TrainConfig:
    """Rebuild a config saved by ``to_dict`` (e.g. from a checkpoint or RUN/config.json); a bad
    value is a ``ConfigError`` naming ``source`` and the key."""
    try:
        return _validate(apply(TrainConfig(), doc, source))
    except ConfigError as exc:
        if source in str(exc):
            raise
        raise ConfigError(f"{source}: {exc}") from None


def resume_changes(saved: TrainConfig, overrides: Mapping[str, Any], given: Optional[TrainConfig] = None,
                   resumable: typing.Iterable[str] = ()) -> list[str]:
    """What a ``--resume`` command line changes in the saved config, as ``"key: saved -> given"``.

    ``overrides`` are the flags and ``--set`` values given (None = not given), coerced like any
    override; ``given`` the config of a ``--preset``/``--config`` given again (every key compared).
    Keys in ``resumable`` may change. Equal values are no change. Pure."""
    hints = typing.get_type_hints(TrainConfig)
    wanted: dict = {}
    if given is not None:
        wanted.update(given.to_dict())
    for key, value in overrides.items():
        if value is None:
            continue
        k = str(key).replace("-", "_")
        if k not in hints:
            raise ConfigError(f"unknown config key {key!r} in command-line overrides; valid keys: "
                              f"{', '.join(field_names())}")
        wanted[k] = _coerce(k, value, hints[k])
    out = []
    for k, v in wanted.items():
        old = getattr(saved, k)
        if k in resumable or old == v:
            continue
        out.append(f"{k}: {_show(old)} -> {_show(v)}")
    return out


def _show(v: Any) -> str:
    return "null" if v is None else (str(v).lower() if isinstance(v, bool) else str(v))
