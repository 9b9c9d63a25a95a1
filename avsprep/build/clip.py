"""One clip's shard arrays, for every setting: frames, masks, box crops, boxes, log-mel.

The layout says what differs between settings (``avsprep.datasets``): the time
``steps`` of an item and which frames fill them (``frame_indices``; AVSS ``v1``
clips leave steps 5-9 as zero padding), the ``geometry`` that maps a frame and
its boxes to 224x224 (S4/MS3: resize; AVSS train: short edge + centre crop),
``decode_mask``, ``clip_audio``, ``box_class``, the per-clip ``step_flags`` and
whether the crop's class is stored (``crop_labels``). Box crops are cut from the
full-resolution frame, then resized to the crop size. Boxes are stored in the
coordinates of the stored frame, with the 1-based step in the ``frame`` column.
"""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np

from avsprep.build.crops import crop_and_resize, frame_boxes, select_box
from avsprep.common.errors import DataError
from avsprep.common.images import open_image
from avsprep.datasets.avss_loader import apply_geometry
from avsprep.shards.schema import FRAME_SIZE, MASK_DECODING, SHARD_BOX_COLUMNS


def clip_arrays(layout, clip, boxes: list[tuple], crop_size: int, crop_policy: str, label: int) -> dict:
    """All arrays of one clip (frames, masks, crops, boxes, log-mel); ``DataError`` on bad input.

    ``boxes``: table rows ``(frame, label, xml_width, xml_height, xmin, ymin, xmax, ymax)``
    in table order. Boxes are rescaled from the XML ``<size>`` to the real
    frame, clamped, cropped from the real frame, and stored in the coordinates
    of the stored (224 x 224) frame.
    """
    t, s, c = layout.steps, FRAME_SIZE, crop_size
    frames = np.zeros((t, s, s, 3), np.uint8)
    masks = np.zeros((t, s, s), np.uint8)
    mask_valid = np.zeros(t, bool)
    crops = np.zeros((t, c, c, 3), np.uint8)
    crop_valid = np.zeros(t, bool)
    crop_label = np.full(t, -1, np.int16)
    box_rows = []
    by_frame = collections.defaultdict(list)
    for b in boxes:
        by_frame[int(b[0])].append(b)
    indices = layout.frame_indices(clip)
    for step, k in enumerate(indices):
        im = open_image(Path(layout.frame_path(clip, k)), clip.name, f"frame {k}", "RGB")
        w, h = im.size
        geo = layout.geometry(w, h, clip.split)
        frames[step] = np.asarray(apply_geometry(im, geo, nearest=False))
        rows = by_frame.get(k, [])
        if not rows:
            continue
        real, finite = frame_boxes(rows, w, h)
        choice = select_box(real[finite], crop_policy)
        if choice is not None:
            crops[step] = crop_and_resize(np.asarray(im), choice, c)
            crop_valid[step] = True
            crop_label[step] = _crop_class(layout, rows, real, finite, crop_policy)
        for r, bx, ok in zip(rows, real, finite):
            if ok:
                box_rows.append([0, step + 1, layout.box_class(str(r[1])), *geo.box(*bx)])
    mode = MASK_DECODING[layout.setting]["pil_mode"]
    for k in layout.mask_frames(clip):
        m = open_image(Path(layout.mask_path(clip, k)), clip.name, f"mask {k}", mode)
        # each image is resized on its own (as officially), so a mask uses its own size
        step = indices.index(k)
        masks[step] = layout.decode_mask(apply_geometry(m, layout.geometry(*m.size, clip.split), nearest=True))
        mask_valid[step] = True
    try:
        logmel, source = layout.clip_audio(clip)
    except DataError as exc:
        raise DataError(f"clip {clip.name}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - soundfile/scipy/resampy raise many types on corrupt wavs
        raise DataError(f"clip {clip.name}: audio unreadable ({type(exc).__name__}: {exc}); "
                        "re-extract it or run with --on-bad-input skip") from None
    out = {
        "video": clip.name, "label": np.int16(label), "frames": frames, "masks": masks,
        "mask_valid": mask_valid, "crops": crops, "crop_valid": crop_valid,
        "audio_logmel": np.asarray(logmel, np.float32),
        "boxes": np.array(box_rows, np.float32).reshape(-1, len(SHARD_BOX_COLUMNS)), "audio_source": source,
        **layout.step_flags(clip),
    }
    if layout.crop_labels:
        out["crop_label"] = crop_label
    return out


def _crop_class(layout, rows, real, finite, crop_policy: str) -> int:
    """The crop's own class: the chosen box's (``union`` / ``largest``: the largest box's)."""
    labels = [layout.box_class(str(r[1])) for r, ok in zip(rows, finite) if ok]
    area = (real[finite][:, 2] - real[finite][:, 0]) * (real[finite][:, 3] - real[finite][:, 1])
    return labels[0] if crop_policy == "first" else labels[int(np.argmax(area))]


def padded_steps(layout, clip) -> slice:
    """The steps of an item that hold no frame (AVSS ``v1`` clips: 5-9; none for S4/MS3)."""
    return slice(len(layout.frame_indices(clip)), layout.steps)
