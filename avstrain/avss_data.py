"""AVSS shards seen as the binary S4/MS3 tasks: a ``v1s``/``v1m`` clip's 5 real steps, mask = any
sounding class (reference/avss.md 1.3: v1s = the S4 clips, v1m = the MS3 clips)."""

from __future__ import annotations

import numpy as np

from avsprep.common.errors import DataError

SUBSET_OF_TASK = {"s4": "v1s", "ms3": "v1m"}


def binary_view(item: dict, task: str, where="the shards") -> dict:
    """One AVSS shard item -> the S4/MS3 item (5 steps, 0/1 masks, no AVSS flags)."""
    subset = item.get("subset")
    if subset not in ("v1s", "v1m"):
        raise DataError(f"{where}: clip {item.get('video')} is a {subset} clip; the binary {task} task takes "
                        f"v1s/v1m clips: build the shards with --subset {SUBSET_OF_TASK[task]}")
    out = {k: v for k, v in item.items() if k not in ("frame_valid", "gt_flag", "crop_label", "subset")}
    for key in ("frames", "mask_valid", "crops", "crop_valid", "audio_logmel", "audio_vggish"):
        if key in out:
            out[key] = out[key][:5]
    out["masks"] = (np.asarray(item["masks"][:5]) > 0).astype(np.uint8)
    return out
