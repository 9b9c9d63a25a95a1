"""The one check of the numbers in a weight file or checkpoint: ``bad_tensors`` (pure) and
``refuse_bad_tensors`` (a one-line ``DataError`` naming the file and the keys).

A tensor is refused when it is floating point and holds NaN or +-inf, or when the model
holds a floating-point tensor under its key and the file's is not floating point (an
``int64`` cast of a weight would load as whole numbers, mostly 0.0, without a word).
Integer buffers the model itself keeps as integers (BatchNorm ``num_batches_tracked``)
pass. Used by ``avstrain convert``, checkpoint loading, ``train --init-from``, the
backbone weight files and VGGish.
"""

from __future__ import annotations

from typing import Mapping, Optional

import torch

from avsprep.common.errors import DataError


def bad_tensors(state_dict: Mapping[str, object], expected: Optional[Mapping[str, torch.Tensor]] = None,
                prefix: str = "") -> list[str]:
    """``"key (why)"`` for each tensor of ``state_dict`` that cannot be weights: non-finite
    values, or not floating point where ``expected`` (the model's own tensors, meta tensors are
    fine) holds a floating-point one. Keys absent from ``expected`` are checked for finiteness
    only. Pure; reads the values, never changes them."""
    out = []
    for key, value in state_dict.items():
        if not isinstance(value, torch.Tensor):
            continue
        ref = expected.get(key) if expected is not None else None
        if value.is_floating_point() or value.is_complex():
            if value.numel() and not bool(torch.isfinite(value).all()):
                n = int((~torch.isfinite(value)).sum())
                out.append(f"{prefix}{key} ({n} NaN/inf of {value.numel()})")
        elif isinstance(ref, torch.Tensor) and ref.is_floating_point():
            out.append(f"{prefix}{key} ({str(value.dtype).replace('torch.', '')}, the model's is "
                       f"{str(ref.dtype).replace('torch.', '')})")
    return out


def refuse_bad_tensors(state_dict: Mapping[str, object], where: str,
                       expected: Optional[Mapping[str, torch.Tensor]] = None, prefix: str = "") -> None:
    """``DataError`` in one line naming ``where`` (the file) and the first bad keys, if any."""
    bad = bad_tensors(state_dict, expected, prefix)
    if bad:
        head = ", ".join(bad[:4]) + (f" (+{len(bad) - 4} more)" if len(bad) > 4 else "")
        raise DataError(f"{where}: {len(bad)} tensor(s) cannot be weights: {head}; the file is damaged "
                        "or was cast to another type: use the original file")
