"""``avstrain weights``: the published weight files the presets need, one table.

Each row says where a file is published, the SHA-256 prefix its name carries (torch.hub
convention ``name-<sha256 prefix>.pth``), which ``--set`` keys it fills and how its content
is checked (a strict load into the module it is for). Nothing here runs at train or evaluate
time: a file is downloaded only by ``avstrain weights fetch`` (``torch.hub.download_url_to_file``
with the hash prefix, a temporary ``.partial`` name that is removed on any failure), and one
downloaded by hand is checked by ``avstrain weights verify``. docs/weights.md is the user's page.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from avsprep.common.atomic import file_sha256
from avsprep.common.errors import DataError, OutputExistsError

HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,64})$")  # torch.hub: name-<sha256 prefix>.ext
GOOGLE_DRIVE_AVSS = "https://drive.google.com/drive/folders/1faSG_Hs2D2PkYeXLyRqlo-cjZ-DmggKB"


def _check_resnet50(path: Path) -> str:
    from avstrain.models.backbones import ResNet50Backbone

    ResNet50Backbone().load_pretrained(path)
    return "loads strictly as the ImageNet ResNet-50 backbone"


def _check_pvt(path: Path) -> str:
    from avstrain.models.backbones import pvt_v2_b5_backbone

    pvt_v2_b5_backbone(pretrained=path)
    return "loads strictly as the ImageNet PVT-v2-b5 backbone"


def _check_vggish(path: Path) -> str:
    from avsprep.audio import load_vggish

    load_vggish(path, check_hash=False)
    return "loads strictly as VGGish"


def _check_official_avss(backbone: str) -> Callable[[Path], str]:
    def check(path: Path) -> str:
        from avstrain.convert import official_system
        from avstrain.models.weights import read_weights

        _, _, report = official_system(read_weights(path), path, backbone=backbone, setting="avss")
        return f"fits the official {backbone} AVSS model ({report['loaded']} tensors, none missing)"
    return check


@dataclass(frozen=True)
class WeightFile:
    """One published file."""

    name: str                    # what `avstrain weights fetch NAME` takes
    file: str                    # its published file name
    what: str
    url: str                     # where it is published
    page: str                    # the page that announces it
    hash_prefix: Optional[str]   # SHA-256 prefix (from the published name); None when none is published
    direct: bool                 # url is the file itself (False: a folder a person downloads from)
    use: str                     # how to use it: the --set line, or the command
    check: Callable[[Path], str]  # strict content check; returns what it found
    same_as: Optional[str] = None  # another row holding the same weights (either file serves)


WEIGHTS: dict[str, WeightFile] = {w.name: w for w in (
    WeightFile("resnet50", "resnet50-19c8e357.pth", "ImageNet ResNet-50 (torchvision; the file the official code loads)",
               "https://download.pytorch.org/models/resnet50-19c8e357.pth",
               "https://github.com/OpenNLPLab/AVSBench (avs_scripts/*/config.py)", "19c8e357", True,
               "--set backbone_weights={path} (crop presets: also --set crop_backbone_weights={path})",
               _check_resnet50),
    WeightFile("resnet50-v1", "resnet50-0676ba61.pth", "ImageNet ResNet-50 (torchvision >= 0.13's name for IMAGENET1K_V1, "
               "76.13 top-1 as the 2017 file)", "https://download.pytorch.org/models/resnet50-0676ba61.pth",
               "https://pytorch.org/vision/stable/models/generated/torchvision.models.resnet50.html", "0676ba61", True,
               "--set backbone_weights={path} (crop presets: also --set crop_backbone_weights={path})",
               _check_resnet50, same_as="resnet50"),
    WeightFile("pvt_v2_b5", "pvt_v2_b5.pth", "ImageNet PVT-v2-b5 (original PVT release names)",
               "https://github.com/whai362/PVT/releases/download/v2/pvt_v2_b5.pth",
               "https://github.com/whai362/PVT (classification README)", None, True,
               "--set backbone_weights={path}", _check_pvt),
    WeightFile("vggish", "vggish-10086976.pth", "VGGish audio network (torchvggish, after its 2019 flatten fix)",
               "https://github.com/harritaylor/torchvggish/releases/download/v0.1/vggish-10086976.pth",
               "https://github.com/harritaylor/torchvggish/releases/tag/v0.1", "10086976", True,
               "--set vggish_weights={path} (or avsprep build --vggish-weights {path})", _check_vggish),
    WeightFile("avss-resnet50", "(name not published)", "official AVSBench-semantic TPAVI model, ResNet-50, 71 classes",
               GOOGLE_DRIVE_AVSS, "https://github.com/OpenNLPLab/AVSBench/issues/9 (README: AVSS)", None, False,
               "avstrain convert {path} -o avss-resnet50.pt --setting avss", _check_official_avss("resnet50")),
    WeightFile("avss-pvt", "(name not published)", "official AVSBench-semantic TPAVI model, PVT-v2-b5, 71 classes",
               GOOGLE_DRIVE_AVSS, "https://github.com/OpenNLPLab/AVSBench/issues/9 (README: AVSS)", None, False,
               "avstrain convert {path} -o avss-pvt.pt --setting avss", _check_official_avss("pvt_v2_b5")),
)}


# --------------------------------------------------------------------------- which preset needs which file


def needs(cfg) -> list[tuple[str, str]]:
    """``(config key, WEIGHTS name)`` of every pretrained file a config's recipe loads. Pure."""
    out = []
    if cfg.backbone in ("resnet50", "pvt_v2_b5"):
        out.append(("backbone_weights", "pvt_v2_b5" if cfg.backbone == "pvt_v2_b5" else "resnet50"))
    if cfg.crop_losses_on() and cfg.crop_encoder == "separate" and cfg.crop_backbone == "resnet50":
        out.append(("crop_backbone_weights", "resnet50"))
    if cfg.audio_encoder in ("auto", "vggish", "precomputed"):
        out.append(("vggish_weights", "vggish"))
    return out


def preset_needs() -> dict[str, list[tuple[str, str]]]:
    """Every preset -> ``needs`` of its config."""
    from avstrain.config import load_preset, preset_names

    return {name: needs(load_preset(name)) for name in preset_names()}


def needed_by() -> dict[str, list[str]]:
    """WEIGHTS name -> ``preset (key)`` of every preset that needs it (a ``same_as`` row: its twin's)."""
    used: dict = {}
    for preset, rows in preset_needs().items():
        for key, name in rows:
            used.setdefault(name, []).append(f"{preset} ({key})")
    return {w.name: used.get(w.same_as or w.name, []) for w in WEIGHTS.values()}


# --------------------------------------------------------------------------- verify and fetch


def lookup(name: str) -> WeightFile:
    if name not in WEIGHTS:
        raise DataError(f"{name}: no such weight file; choose one of: {', '.join(WEIGHTS)} (avstrain weights list)")
    return WEIGHTS[name]


def row_for(path: Path) -> Optional[WeightFile]:
    """The table row whose published file name ``path`` has, else None."""
    return next((w for w in WEIGHTS.values() if w.file == path.name), None)


def expected_prefix(path: Path, row: Optional[WeightFile]) -> tuple[Optional[str], str]:
    """``(hash prefix, where it comes from)``: the file's name (torch.hub ``-<hex>`` suffix) first,
    else the table row. Pure."""
    m = HASH_IN_NAME.search(path.stem)
    if m:
        return m.group(1), "its name"
    if row is not None and row.hash_prefix:
        return row.hash_prefix, f"the table ({row.name})"
    return None, ""


def verify(path: Path, name: Optional[str] = None) -> dict:
    """Check a weight file: its SHA-256 against the prefix its name (or the table) carries, then
    its content (strict load) when the row is known. DataError naming the file on any mismatch."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    row = lookup(name) if name else row_for(path)
    prefix, source = expected_prefix(path, row)
    digest = file_sha256(path)
    if prefix and not digest.startswith(prefix):
        raise DataError(f"{path}: SHA-256 starts with {digest[:len(prefix)]}, but {source} says {prefix}; the file is "
                        "damaged or not the one it claims to be: download it again")
    content = row.check(path) if row is not None else None
    return {"file": str(path), "name": row.name if row else None, "sha256": digest, "hash_prefix": prefix,
            "hash_from": source or None, "content": content,
            "use": row.use.format(path=path.resolve()) if row else None}


def fetch(name: str, dest_dir: Path, url: Optional[str] = None, progress: bool = True,
          overwrite: bool = False) -> dict:
    """Download ``name`` into ``dest_dir`` with ``torch.hub.download_url_to_file`` and its hash
    prefix, then check its content; on any failure nothing is left in ``dest_dir``. ``url``
    replaces the published address (a mirror; the tests' local server): the hash and the
    content check stay those of the table."""
    import torch.hub

    row = lookup(name)
    if not row.direct and url is None:
        raise DataError(f"{name}: published only in a Google Drive folder ({row.url}), with no direct link and no "
                        f"hash; download it by hand, then run `avstrain weights verify FILE --name {name}`")
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    dst = dest_dir / (row.file if row.direct else f"{name}.pth")
    if dst.exists() and not overwrite:
        raise OutputExistsError(f"{dst} exists; check it with `avstrain weights verify {dst}`, or use --overwrite")
    try:
        torch.hub.download_url_to_file(url or row.url, str(dst), hash_prefix=row.hash_prefix, progress=progress)
    except RuntimeError as exc:  # torch.hub: invalid hash value (its temporary file is already removed)
        raise DataError(f"{url or row.url}: {exc}; nothing was kept in {dest_dir}") from None
    except OSError as exc:  # URLError, HTTPError, refused connection, disk full
        raise DataError(f"{url or row.url}: download failed ({exc}); nothing was kept in {dest_dir}") from None
    try:
        content = row.check(dst)
    except Exception as exc:
        os.unlink(dst)
        raise DataError(f"{url or row.url}: the downloaded file is not {row.what} ({str(exc).splitlines()[0]}); "
                        f"nothing was kept in {dest_dir}") from None
    return {"name": name, "file": str(dst), "url": url or row.url, "sha256": file_sha256(dst),
            "hash_prefix": row.hash_prefix, "content": content, "use": row.use.format(path=dst.resolve())}
