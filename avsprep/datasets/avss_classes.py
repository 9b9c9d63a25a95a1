"""AVSBench-semantic classes, label2idx.json and the label palette (docs/reference/avss.md 4).

Class index = position of the key in ``label2idx.json`` (background 0, then the
70 classes alphabetically); the file's 1-based values are never used, as in the
official code. Palette: the PASCAL-VOC bit-interleaved colormap, first 71 entries.
Pure numpy: no torch here.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from avsprep.common.errors import DataError
from avsprep.common.jsonread import loads_limited

AVSS_CLASSES: list[str] = [
    "background", "accordion", "airplane", "axe", "baby", "bassoon", "bell", "bird", "boat", "boy",
    "bus", "car", "cat", "cello", "clarinet", "clipper", "clock", "dog", "donkey", "drum", "duck",
    "elephant", "emergency-car", "erhu", "flute", "frying-food", "girl", "goose", "guitar", "gun",
    "guzheng", "hair-dryer", "handpan", "harmonica", "harp", "helicopter", "hen", "horse",
    "keyboard", "leopard", "lion", "man", "marimba", "missile-rocket", "motorcycle", "mower",
    "parrot", "piano", "pig", "pipa", "saw", "saxophone", "sheep", "sitar", "sorna", "squirrel",
    "tabla", "tank", "tiger", "tractor", "train", "trombone", "truck", "trumpet", "tuba",
    "ukulele", "utv", "vacuum-cleaner", "violin", "wolf", "woman",
]
NUM_CLASSES = 71
BACKGROUND = 0

# Each S4 category is one AVSS class (docs/reference/avss.md 3.3).
S4_TO_AVSS: dict[str, str] = {
    "ambulance_siren": "emergency-car", "baby_laughter": "baby", "cap_gun_shooting": "gun",
    "cat_meowing": "cat", "chainsawing_trees": "saw", "coyote_howling": "wolf", "dog_barking": "dog",
    "driving_buses": "bus", "female_singing": "woman", "helicopter": "helicopter",
    "horse_clip-clop": "horse", "lawn_mowing": "mower", "lions_roaring": "lion", "male_speech": "man",
    "mynah_bird_singing": "bird", "playing_acoustic_guitar": "guitar", "playing_glockenspiel": "marimba",
    "playing_piano": "piano", "playing_tabla": "tabla", "playing_ukulele": "ukulele",
    "playing_violin": "violin", "race_car": "car", "typing_on_computer_keyboard": "keyboard",
}


# a_obj tokens (and box labels) misspelt in the release, read as the class they mean (docs/reference/avss.md 3.3)
TYPOS = {"h orse": "horse"}


def canonical_label(label: str) -> str:
    """A box label or a_obj token as the class name it means: stripped, the known typos mapped."""
    label = label.strip()
    return TYPOS.get(label, label)


def box_class(label: str) -> int:
    """AVSS class index of a box label (exact spelling, the h orse typo mapped), -1 when unknown."""
    label = canonical_label(label)
    return AVSS_CLASSES.index(label) if label in AVSS_CLASSES else -1


def clip_classes(a_obj) -> list[int]:
    """Class indices of the a_obj tokens that name a class (typos mapped, non-classes dropped)."""
    out = []
    for tok in a_obj:
        tok = TYPOS.get(tok, tok)
        if tok in AVSS_CLASSES and tok != "background" and AVSS_CLASSES.index(tok) not in out:
            out.append(AVSS_CLASSES.index(tok))
    return out


def palette(n: int = NUM_CLASSES) -> np.ndarray:
    """``[n, 3]`` uint8: bit 3k of j -> bit 7-k of R, 3k+1 -> G, 3k+2 -> B."""
    out = np.zeros((n, 3), np.uint8)
    for j in range(n):
        v, shift = j, 7
        while v:
            for ch in range(3):
                out[j, ch] |= ((v >> ch) & 1) << shift
            v >>= 3
            shift -= 1
    return out


PALETTE = palette()


def decode_rgb_mask(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """RGB ``[H,W,3]`` -> (class index ``[H,W]`` uint8, ``[H,W]`` bool: colour in no palette entry).

    Same result as the official loader (exact colour match, unknown colours ->
    0 = background); the second array lets the caller say where that happened.
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an RGB array [H, W, 3], got shape {rgb.shape}")
    code = (rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8) | rgb[..., 2]
    keys = (PALETTE[:, 0].astype(np.int32) << 16) | (PALETTE[:, 1].astype(np.int32) << 8) | PALETTE[:, 2]
    order = np.argsort(keys)
    pos = np.searchsorted(keys[order], code)
    pos = np.clip(pos, 0, len(keys) - 1)
    hit = keys[order][pos] == code
    index = np.where(hit, order[pos], BACKGROUND).astype(np.uint8)
    return index, ~hit


def encode_rgb_mask(index: np.ndarray) -> np.ndarray:
    """Class index ``[H,W]`` -> palette RGB ``[H,W,3]`` uint8 (as the official visualiser colours it)."""
    index = np.asarray(index)
    if index.min(initial=0) < 0 or index.max(initial=0) >= NUM_CLASSES:
        raise ValueError(f"class indices must be 0..{NUM_CLASSES - 1}")
    return PALETTE[index.astype(np.int64)]


def read_label2idx(path: Path | str) -> list[str]:
    """Class names in key order from ``label2idx.json``; must be the 71 AVSS classes in order."""
    path = Path(path)
    try:
        data = loads_limited(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read label2idx.json ({exc}); use the file of the AVSS release") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object of class name -> index")
    names = list(data)
    if names != AVSS_CLASSES:
        diff = next((i for i, (a, b) in enumerate(zip(names, AVSS_CLASSES)) if a != b), min(len(names), 71))
        got = names[diff] if diff < len(names) else "(end of file)"
        want = AVSS_CLASSES[diff] if diff < len(AVSS_CLASSES) else "(end)"
        raise DataError(f"{path}: {len(names)} classes; key {diff} is {got!r}, expected {want!r} "
                        "(the official code uses the 71 keys in this order)")
    return names


def label2idx_json() -> str:
    """The released ``label2idx.json`` text (1-based values, key order = class index)."""
    return json.dumps({name: i + 1 for i, name in enumerate(AVSS_CLASSES)}, indent=2) + "\n"
