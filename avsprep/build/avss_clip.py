"""One AVSS clip's shard arrays, read from the release as the official loader reads it.

Frames, masks and boxes go through :func:`avsprep.datasets.avss_loader.geometry` (per
split); masks are decoded through the palette (colours outside it become
background, as officially; ``validate`` reports them); ``v1`` clips are padded
to 10 steps with zero frames, background masks and zero log-mel examples. Box
crops are cut from the full-resolution frame, then resized to the crop size.
"""

from __future__ import annotations

import collections

import numpy as np

from avsprep.datasets.avss_classes import box_class, decode_rgb_mask
from avsprep.datasets.avss_loader import SIZE, apply_geometry, audio_examples, flags, geometry
from avsprep.datasets.avss import STEPS, AVSSClip
from avsprep.build.crops import crop_and_resize, frame_boxes, select_box
from avsprep.common.errors import DataError
from avsprep.common.images import open_image

MASK_DECODING = "labels_rgb palette exact match -> class index, off-palette colours -> 0 (official V2Dataset)"
PADDING = ("v1 clips: 5 real steps + 5 padded (frames zero, to be set to zero after normalisation; masks 0; "
           "log-mel zero; frame_valid 0); v1s GT flag on step 0 only")


def avss_clip_arrays(layout, clip: AVSSClip, boxes: list[tuple], crop_size: int, crop_policy: str,
                     label: int) -> dict:
    """Arrays of one clip for an AVSS shard (T = 10); ``boxes`` as in :func:`avsprep.build.clip_arrays`."""
    from avsprep.audio import read_wav, waveform_to_examples

    t, s, c = STEPS, SIZE, crop_size
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
    for i in range(clip.frames):
        im = open_image(layout.frame_path(clip, i), clip.name, f"frame {i}", "RGB")
        w, h = im.size
        geo = geometry(w, h, clip.split)
        frames[i] = np.asarray(apply_geometry(im, geo, nearest=False))
        rows = by_frame.get(i, [])
        if not rows:
            continue
        real, finite = frame_boxes(rows, w, h)
        choice = select_box(real[finite], crop_policy)
        if choice is not None:
            crops[i] = crop_and_resize(np.asarray(im), choice, c)
            crop_valid[i] = True
            # the crop's own class: the chosen box's (union / largest: the largest box's)
            labels = [box_class(str(r[1])) for r, ok in zip(rows, finite) if ok]
            area = (real[finite][:, 2] - real[finite][:, 0]) * (real[finite][:, 3] - real[finite][:, 1])
            crop_label[i] = labels[0] if crop_policy == "first" else labels[int(np.argmax(area))]
        for r, bx, ok in zip(rows, real, finite):
            if ok:
                box_rows.append([0, i + 1, box_class(str(r[1])), *geo.box(*bx)])  # step 1..T, as S4 shards
    for i in layout.mask_frames(clip):
        m = open_image(layout.mask_path(clip, i), clip.name, f"mask {i}", "RGB")
        # officially each image is resized on its own, so a mask uses its own size
        index, _ = decode_rgb_mask(np.asarray(apply_geometry(m, geometry(*m.size, clip.split), nearest=True)))
        masks[i] = index
        mask_valid[i] = True
    wav = layout.wav_path(clip)
    try:
        wave, sr = read_wav(wav)
        logmel = audio_examples(waveform_to_examples(wave, sr), name=str(wav))
    except DataError as exc:
        raise DataError(f"clip {clip.name}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - soundfile/resampy raise many types on corrupt wavs
        raise DataError(f"clip {clip.name}: audio unreadable ({type(exc).__name__}: {exc}); "
                        "re-extract it or run with --on-bad-input skip") from None
    frame_valid, gt_flag = flags(clip.subset)
    return {
        "video": clip.name, "label": np.int16(label), "frames": frames, "masks": masks,
        "mask_valid": mask_valid, "crops": crops, "crop_valid": crop_valid,
        "frame_valid": frame_valid, "gt_flag": gt_flag, "crop_label": crop_label, "subset": clip.subset,
        "audio_logmel": logmel, "boxes": np.array(box_rows, np.float32).reshape(-1, 7), "audio_source": "wav",
    }
