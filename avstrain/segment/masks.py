"""What ``avstrain segment`` makes of a pass's logits, one class per kind of task (picked once
by ``MASKS[task.semantic]``): the mask and its confidence, the mask at the video's size, its PNG,
its paint over a frame, its area and the legend. Pure numpy on arrays."""

from __future__ import annotations

import io

import cv2
import numpy as np
import torch
from PIL import Image

from avsprep.datasets.avss_classes import PALETTE
from avstrain.overlays import paint_mask


class BinaryMasks:
    """S4/MS3: one logit per pixel; mask = sigmoid > 0.5, 0/255 single-channel PNGs."""

    palette_png = False

    @staticmethod
    def scores(logits: torch.Tensor) -> np.ndarray:
        """``[N,1,S,S]`` logits -> ``[N,S,S]`` float32 foreground probabilities."""
        return torch.sigmoid(logits.float()[:, 0]).cpu().numpy()

    @staticmethod
    def at_size(score: np.ndarray, width: int, height: int) -> np.ndarray:
        """A score map -> the ``[H,W]`` uint8 mask (0/1) at the video's size (bilinear, then > 0.5)."""
        big = cv2.resize(score.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
        return (big > 0.5).astype(np.uint8)

    @staticmethod
    def confidence(score: np.ndarray) -> float:
        """Mean probability inside the predicted mask (0 when it is empty)."""
        inside = score > 0.5
        return float(score[inside].mean()) if inside.any() else 0.0

    @staticmethod
    def mask(score: np.ndarray) -> np.ndarray:
        return (score > 0.5).astype(np.uint8)

    @staticmethod
    def png(mask: np.ndarray) -> bytes:
        ok, buf = cv2.imencode(".png", mask * 255)
        return buf.tobytes()

    @staticmethod
    def read(path) -> np.ndarray:
        return (cv2.imread(str(path), cv2.IMREAD_GRAYSCALE) > 127).astype(np.uint8)

    @staticmethod
    def paint(frame: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return paint_mask(frame, mask)

    @staticmethod
    def legend(classes_seen: set, class_names: list) -> list:
        return []


class SemanticMasks:
    """AVSS: 71 class logits per pixel; mask = argmax class (0 background), palette PNGs
    (the official colours) and a legend of the classes seen."""

    palette_png = True

    @staticmethod
    def scores(logits: torch.Tensor) -> np.ndarray:
        """``[N,K,S,S]`` logits -> ``[N,2,S,S]`` float32: the class index and its probability."""
        prob = torch.softmax(logits.float(), dim=1)
        p, c = prob.max(dim=1)
        return torch.stack([c.float(), p], dim=1).cpu().numpy()

    @staticmethod
    def at_size(score: np.ndarray, width: int, height: int) -> np.ndarray:
        return cv2.resize(score[0].astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST)

    @staticmethod
    def confidence(score: np.ndarray) -> float:
        """Mean probability of the predicted class over the non-background pixels (0 when none)."""
        inside = score[0] > 0
        return float(score[1][inside].mean()) if inside.any() else 0.0

    @staticmethod
    def mask(score: np.ndarray) -> np.ndarray:
        return score[0].astype(np.uint8)

    @staticmethod
    def png(mask: np.ndarray) -> bytes:
        im = Image.fromarray(mask.astype(np.uint8), "P")
        im.putpalette(PALETTE.astype(np.uint8).reshape(-1).tolist())
        buf = io.BytesIO()
        im.save(buf, format="PNG")
        return buf.getvalue()

    @staticmethod
    def read(path) -> np.ndarray:
        return np.asarray(Image.open(path))

    @staticmethod
    def paint(frame: np.ndarray, mask: np.ndarray) -> np.ndarray:
        out = frame
        for c in np.unique(mask):
            if c:
                out = paint_mask(out, mask == c, tuple(int(v) for v in PALETTE[c]))
        return out

    @staticmethod
    def legend(classes_seen: set, class_names: list) -> list:
        return [{"class": int(c), "name": class_names[c] if c < len(class_names) else str(c),
                 "rgb": [int(v) for v in PALETTE[c]]} for c in sorted(classes_seen) if c]


MASKS = {False: BinaryMasks, True: SemanticMasks}


def area(mask: np.ndarray) -> float:
    """Fraction of the frame in the mask (any non-background class)."""
    return float((mask > 0).mean())


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two masks (same class per pixel counts for semantic ones); 1.0 when both are empty."""
    fa, fb = a > 0, b > 0
    union = (fa | fb).sum()
    if union == 0:
        return 1.0
    return float(((a == b) & fa).sum() / union)
