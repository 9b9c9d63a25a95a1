"""Weight files and state-dict key renames: the one home of every mapping between the names
in a file and the names of our modules.

* ImageNet backbones: torchvision / AVSBench ``B2_ResNet`` ResNet-50 names and the original
  PVT-v2 (``whai362/PVT`` ``pvt_v2_b5.pth``) names -> ours (``remap_resnet_keys``,
  ``remap_pvt_keys``), read with ``read_state_dict`` and loaded with ``load_strict``.
* Whole official AVSBench ``Pred_endecoder`` state dicts <-> avstrain ``AVSModel``
  (``official_to_ours``, ``ours_to_official``; the files are written by ``avstrain.convert``).
  Layout facts (``fixtures/avsbench_official/README.md``): official ``train.py`` saves
  ``model.module.state_dict()`` (no ``module.`` prefix); the ResNet-50 encoder is ``resnet.*``
  with two copies of stages 3-4 (``layer3_1``/``layer4_1`` used, ``layer3_2``/``layer4_2``
  built from the same ImageNet weights and never used); the PVT-v2-b5 encoder is
  ``encoder_backbone.*`` with the original PVT names; necks ``conv1..4``, ``tpavi_b1..4``,
  decoder ``path1..4`` and ``output_conv`` are shared. The AVSBench-semantic (AVSS) model
  (``tests/data/avsbench_official/README.md``) has the same names; its head ``output_conv.4``
  has 71 channels (S4/MS3: 1) and its TPAVI ``align_channel`` has no bias. Ours: ``backbone.*`` (torchvision /
  timm names), ``conv1..4``, ``tpavi_bK``, ``decoder.pathK``, ``decoder.output_conv``.

The renames are pure (dicts in, dicts out; values never touched), so they test on meta
tensors before a strict ``load_state_dict``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import torch
from torch import nn

from avsprep.common.errors import DataError
from avsprep.common.tensors import refuse_bad_tensors

BACKBONE_PREFIX = {"resnet50": "resnet.", "pvt_v2_b5": "encoder_backbone."}
_SHARED = re.compile(r"^(conv[1-4]\.|tpavi_b[1-4]\.)")
_DECODER = re.compile(r"^(path[1-4]\.|output_conv\.)")


class ConvertError(DataError):
    """A file cannot be converted (missing / unexpected / wrongly shaped tensors, unknown layout)."""


# --------------------------------------------------------------------------- single-key renames


def strip_module(sd: dict) -> dict:
    """The keys without the ``module.`` prefix that (Distributed)DataParallel adds."""
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in sd.items()}


def resnet_key(k: str) -> Optional[str]:
    """An AVSBench ``B2_ResNet`` key (``resnet.`` prefix removed) -> torchvision's: ``layer3_1``/
    ``layer4_1`` -> ``layer3``/``layer4``; None for the unused ``layer3_2``/``layer4_2`` copy.
    torchvision names pass through."""
    if re.match(r"layer[34]_2\.", k):
        return None
    return re.sub(r"^layer([34])_1\.", r"layer\1.", k)


def pvt_to_timm_key(k: str) -> str:
    """Original PVT-v2 name -> timm name (``patch_embed1`` -> ``patch_embed``, ``patch_embedK`` ->
    ``stages.K-1.downsample``, ``blockK.i`` -> ``stages.K-1.blocks.i``, ``normK`` ->
    ``stages.K-1.norm``, ``dwconv.dwconv`` -> ``dwconv``: timm's ``checkpoint_filter_fn`` rules,
    anchored). timm names pass through."""
    k = k.replace("dwconv.dwconv", "dwconv")
    if k.startswith("patch_embed1."):
        return "patch_embed." + k[len("patch_embed1."):]
    k = re.sub(r"^patch_embed([2-4])\.", lambda m: f"stages.{int(m.group(1)) - 1}.downsample.", k)
    k = re.sub(r"^block([1-4])\.(\d+)\.", lambda m: f"stages.{int(m.group(1)) - 1}.blocks.{m.group(2)}.", k)
    return re.sub(r"^norm([1-4])\.", lambda m: f"stages.{int(m.group(1)) - 1}.norm.", k)


def timm_to_pvt_key(k: str) -> str:
    """Inverse of ``pvt_to_timm_key``."""
    if k.startswith("patch_embed."):
        return "patch_embed1." + k[len("patch_embed."):]
    k = re.sub(r"^stages\.(\d)\.downsample\.", lambda m: f"patch_embed{int(m.group(1)) + 1}.", k)
    k = re.sub(r"^stages\.(\d)\.blocks\.(\d+)\.", lambda m: f"block{int(m.group(1)) + 1}.{m.group(2)}.", k)
    k = re.sub(r"^stages\.(\d)\.norm\.", lambda m: f"norm{int(m.group(1)) + 1}.", k)
    return k.replace("mlp.dwconv.", "mlp.dwconv.dwconv.")


# --------------------------------------------------------------------------- ImageNet backbone files


def remap_resnet_keys(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map torchvision / AVSBench ResNet-50 keys to ours (torchvision names without ``fc``).

    Pure. Drops ``fc.*`` (the classifier is not part of the backbone). Handles: a ``module.``
    prefix (DataParallel); a bare AVSBench ``B2_ResNet`` (``resnet.*``, prefix stripped;
    ``layer3_1``/``layer4_1`` -> ``layer3``/``layer4``, the unused ``layer3_2``/``layer4_2``
    copy dropped). A *full* AVSBench model is refused before this (``refuse_full_model``):
    its necks, TPAVI and decoder would be left random."""
    sd = strip_module(state_dict)
    if any(k.startswith("resnet.") for k in sd):
        sd = {k[len("resnet."):]: v for k, v in sd.items() if k.startswith("resnet.")}
    out = {}
    for k, v in sd.items():
        ours = resnet_key(k)
        if ours is not None and not k.startswith("fc."):
            out[ours] = v
    return out


def remap_pvt_keys(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map original PVT-v2 (``whai362/PVT`` ``pvt_v2_b5.pth``) keys to timm's, dropping the head.

    Pure (``pvt_to_timm_key`` per key); timm-named dicts pass through unchanged (minus ``head.*``).
    """
    return {pvt_to_timm_key(k): v for k, v in strip_module(state_dict).items() if not k.startswith("head.")}


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
    if any(k.startswith(_FULL_MODEL) for k in strip_module(state_dict)):
        raise DataError(f"{path}: is a full AVSBench model checkpoint, not ImageNet backbone weights; "
                        "convert it with `avstrain convert` and evaluate it, or start training from it "
                        "with `avstrain train --init-from FILE`")


def load_strict(module: nn.Module, state_dict: dict[str, torch.Tensor], path: str | Path, what: str) -> None:
    """``load_state_dict(strict=True)`` with a one-line DataError naming the file on mismatch or on
    tensors that cannot be weights (NaN/inf, an integer where the model holds floats)."""
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
    refuse_bad_tensors(state_dict, str(path), own)
    module.load_state_dict(state_dict, strict=True)


# --------------------------------------------------------------------------- official AVSBench models


def read_weights(path) -> object:
    """``torch.load(weights_only=True)``: a pickle that would run code is refused, naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ConvertError(f"{path}: file not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling refusals, zip errors, truncation
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise ConvertError(f"{path}: cannot be read with weights_only=True ({first}); only plain tensor "
                           "files are accepted (a pickle that runs code is refused)") from None


def unwrap_state_dict(obj) -> dict:
    """The state dict inside ``obj``: plain, ``{"model": sd}`` or ``{"state_dict": sd}``,
    with a ``module.`` (DataParallel) prefix stripped. Pure; ValueError if none is found."""
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not obj or not all(isinstance(k, str) for k in obj):
        raise ValueError("no state dict (name -> tensor) found")
    return strip_module(obj)


def detect_backbone(sd: dict) -> Optional[str]:
    """``resnet50`` / ``pvt_v2_b5`` from an official state dict's encoder prefix, else None."""
    for name, prefix in BACKBONE_PREFIX.items():
        if any(k.startswith(prefix) for k in sd):
            return name
    return None


def tpavi_stages_of(sd: dict) -> list[int]:
    """The TPAVI stages present in a state dict (``tpavi_bK`` -> stage K-1)."""
    return sorted({int(m.group(1)) - 1 for k in sd if (m := re.match(r"^tpavi_b([1-4])\.", k))})


def head_classes_of(sd: dict) -> Optional[int]:
    """Output channels of an official model's head (``output_conv.4.weight``: 1 for S4/MS3, 71 for
    AVSS), or None when the file has no such tensor."""
    w = sd.get("output_conv.4.weight")
    return int(w.shape[0]) if w is not None and len(w.shape) == 4 else None


@dataclass
class OfficialMapping:
    """Result of ``official_to_ours``: the mapped dict, the unused ResNet branch that was
    dropped (names), and keys that belong to no part of the model (names)."""

    state_dict: dict
    dropped: list = field(default_factory=list)
    unexpected: list = field(default_factory=list)


def official_to_ours(sd: dict, backbone: str) -> OfficialMapping:
    """Official ``Pred_endecoder`` keys -> avstrain ``AVSModel`` keys. Pure."""
    if backbone not in BACKBONE_PREFIX:
        raise ValueError(f"unknown backbone {backbone!r}; choose one of: {', '.join(BACKBONE_PREFIX)}")
    prefix = BACKBONE_PREFIX[backbone]
    out, dropped, unexpected = {}, [], []
    for k, v in sd.items():
        if k.startswith(prefix):
            ours = resnet_key(k[len(prefix):]) if backbone == "resnet50" else pvt_to_timm_key(k[len(prefix):])
            if ours is None:
                dropped.append(k)
            else:
                out["backbone." + ours] = v
        elif _SHARED.match(k):
            out[k] = v
        elif _DECODER.match(k):
            out["decoder." + k] = v
        else:
            unexpected.append(k)
    return OfficialMapping(out, dropped, unexpected)


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
                out[prefix + timm_to_pvt_key(rest)] = v
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
