"""VGGish (torchvggish layout) and a safe loader for its official weight file.

The module tree and state_dict keys equal torchvggish's ``VGG`` so
``vggish-10086976.pth`` loads unchanged (strict).  The conv output is flattened
in TensorFlow's NHWC order, and the final ReLU (torchvggish/AVSBench) is a
switch: TF's current VGGish returns the pre-activation.  No PCA.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch
from torch import nn

from avsprep.common.atomic import file_sha256
from avsprep.common.errors import DataError
from avsprep.common.tensors import refuse_bad_tensors

# The weight file torchvggish shipped before its 2019-06-06 flatten-order fix.
PRE_FIX_WEIGHTS = "vggish-cbfe8f1c.pth"
OFFICIAL_WEIGHTS = "vggish-10086976.pth"

_HASH_SUFFIX = re.compile(r"-([0-9a-f]{8})$")


def _features() -> nn.Sequential:
    layers: list[nn.Module] = []
    channels = 1
    for spec in (64, "M", 128, "M", 256, 256, "M", 512, 512, "M"):
        if spec == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(channels, spec, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            channels = spec
    return nn.Sequential(*layers)


class VGGish(nn.Module):
    """[n, 1, 96, 64] float32 log-mel examples -> [n, 128] embeddings."""

    def __init__(self, relu: bool = True):
        super().__init__()
        self.relu = relu
        self.features = _features()
        head: list[nn.Module] = [
            nn.Linear(512 * 6 * 4, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, 128),
        ]
        if relu:
            head.append(nn.ReLU(inplace=True))  # torchvggish / AVSBench: non-negative embedding
        self.embeddings = nn.Sequential(*head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3:  # [n, 96, 64] -> [n, 1, 96, 64]
            x = x.unsqueeze(1)
        x = self.features(x)  # [n, 512, 6, 4]
        # TF flatten order: [n, 512, 6, 4] -> [n, 6, 4, 512] -> [n, 12288]
        x = x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)
        return self.embeddings(x)


def remap_vggish_keys(state_dict: dict) -> dict:
    """torchaudio names (``features_network.*``, ``embedding_network.*``) -> torchvggish names.

    A ``module.`` prefix (DataParallel) is stripped and torchvggish's PCA
    buffers (``pproc.*``) are dropped: this toolkit does not apply PCA.
    """
    out = {}
    for key, value in state_dict.items():
        if key.startswith("module."):
            key = key[len("module."):]
        if key.startswith("pproc."):
            continue
        if key.startswith("features_network."):
            key = "features." + key[len("features_network."):]
        elif key.startswith("embedding_network."):
            key = "embeddings." + key[len("embedding_network."):]
        out[key] = value
    return out


def check_hash_suffix(path: os.PathLike | str) -> str | None:
    """Check a torch.hub-style ``-XXXXXXXX`` name suffix against the file's SHA-256.

    Returns the full hex digest when the name has such a suffix (None otherwise);
    raises ``DataError`` when the prefix does not match.
    """
    path = Path(path)
    match = _HASH_SUFFIX.search(path.stem)
    if not match:
        return None
    digest = file_sha256(path)
    if not digest.startswith(match.group(1)):
        raise DataError(
            f"{path}: SHA-256 starts with {digest[:8]}, but the file name says {match.group(1)}; "
            "the file is corrupt or not the one its name claims: download it again"
        )
    return digest


def _shape_problems(state_dict: dict, expected: dict) -> list[str]:
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    problems = []
    if missing:
        problems.append(f"missing keys {missing[:4]}{' ...' if len(missing) > 4 else ''}")
    if unexpected:
        problems.append(f"unexpected keys {unexpected[:4]}{' ...' if len(unexpected) > 4 else ''}")
    for key, ref in expected.items():
        value = state_dict.get(key)
        if value is None:
            continue
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            problems.append(f"{key} is not a float tensor")
        elif tuple(value.shape) != tuple(ref.shape):
            problems.append(f"{key} has shape {list(value.shape)}, expected {list(ref.shape)}")
    return problems


def load_vggish(path: os.PathLike | str, relu: bool = True, *, check_hash: bool = True) -> VGGish:
    """Load a torchvggish weight file (strict) into a frozen, eval-mode ``VGGish``.

    Reads with ``weights_only=True``; accepts torchaudio key names; refuses
    torchvggish's pre-fix ``vggish-cbfe8f1c.pth``; with ``check_hash`` a
    ``-XXXXXXXX`` name suffix must match the file's SHA-256 prefix.
    """
    path = Path(path)
    if path.name == PRE_FIX_WEIGHTS:
        raise DataError(
            f"{path}: this is torchvggish's weight file from before its 2019 flatten-order fix; "
            f"its embeddings differ from TensorFlow's. Use {OFFICIAL_WEIGHTS} instead"
        )
    if not path.is_file():
        raise DataError(f"{path}: VGGish weight file not found (expected torchvggish's {OFFICIAL_WEIGHTS})")
    if check_hash:
        check_hash_suffix(path)
    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # garbage bytes, truncated file, disallowed globals
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(
            f"{path}: not a readable torch weight file ({first}); "
            f"supply torchvggish's {OFFICIAL_WEIGHTS}"
        ) from None
    if not isinstance(state_dict, dict) or not all(isinstance(k, str) for k in state_dict):
        raise DataError(
            f"{path}: holds a {type(state_dict).__name__}, not a state dict; "
            f"supply torchvggish's {OFFICIAL_WEIGHTS}"
        )
    state_dict = remap_vggish_keys(state_dict)
    with torch.device("meta"):
        model = VGGish(relu=relu)
    problems = _shape_problems(state_dict, model.state_dict())
    if problems:
        raise DataError(f"{path}: not a VGGish state dict: {'; '.join(problems)}")
    refuse_bad_tensors(state_dict, str(path), model.state_dict())
    state_dict = {k: v.to(torch.float32) for k, v in state_dict.items()}
    model.load_state_dict(state_dict, strict=True, assign=True)
    model.eval()
    model.requires_grad_(False)
    return model

