"""Tiny AVSBench roots with labelImg XMLs next to their frames, for import/validate/format tests."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

S4_CLIPS = [  # (name, split, category): ids with a leading '-', digits only, and underscores
    ("-_wznbUu3DY", "train", "helicopter"),
    ("0001", "val", "dog_barking"),
    ("a_b_c", "test", "horse_clip-clop"),
]
MS3_CLIPS = [("xv7eM6-UmkY_36", "val"), ("-jlhuZfcw61w", "train")]
BOX = (41, 51, 150, 170)  # labelImg 1-based integers -> edges (40, 50, 150, 170)


def labelimg_xml(stem: str, folder: str, width: int, height: int, objects, verified: bool = False) -> str:
    """An XML in labelImg 1.8.6's own format (no declaration, TAB indents, trailing newline)."""
    root_attr = ' verified="yes"' if verified else ""
    parts = [f"<annotation{root_attr}>", f"\t<folder>{folder}</folder>", f"\t<filename>{stem}.png</filename>",
             f"\t<path>/home/annotator/{folder}/{stem}.png</path>",
             "\t<source>\n\t\t<database>Unknown</database>\n\t</source>",
             f"\t<size>\n\t\t<width>{width}</width>\n\t\t<height>{height}</height>\n\t\t<depth>3</depth>\n\t</size>",
             "\t<segmented>0</segmented>"]
    for label, x0, y0, x1, y1 in objects:
        trunc = int(x0 == 1 or y0 == 1 or x1 == width or y1 == height)
        parts.append(f"\t<object>\n\t\t<name>{label}</name>\n\t\t<pose>Unspecified</pose>\n"
                     f"\t\t<truncated>{trunc}</truncated>\n\t\t<difficult>0</difficult>\n\t\t<bndbox>\n"
                     f"\t\t\t<xmin>{x0}</xmin>\n\t\t\t<ymin>{y0}</ymin>\n\t\t\t<xmax>{x1}</xmax>\n"
                     f"\t\t\t<ymax>{y1}</ymax>\n\t\t</bndbox>\n\t</object>")
    parts.append("</annotation>")
    return "\n".join(parts) + "\n"


def make_root(base: Path, setting: str = "s4", clips=None, size: int = 224, xml: bool = True) -> Path:
    """Write a tiny AVSBench root: metadata CSV, 5 PNG frames per clip, one labelImg XML per frame."""
    base.mkdir(parents=True, exist_ok=True)
    img = Image.new("RGB", (size, size), (90, 120, 150))
    if setting == "s4":
        clips = S4_CLIPS if clips is None else clips
        lines = ["name,start,category,split"] + [f"{n},0,{c},{s}" for n, s, c in clips]
        (base / "s4_meta_data.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        for name, split, cat in clips:
            d = base / "s4_data" / "visual_frames" / split / cat / name
            d.mkdir(parents=True)
            for k in range(1, 6):
                img.save(d / f"{name}_{k}.png")
                if xml:
                    (d / f"{name}_{k}.xml").write_text(
                        labelimg_xml(f"{name}_{k}", name, size, size, [(cat, *BOX)]), encoding="utf-8")
    else:
        clips = MS3_CLIPS if clips is None else clips
        lines = ["video_id,split"] + [f"{n},{s}" for n, s in clips]
        (base / "ms3_meta_data.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        for name, split in clips:
            d = base / "ms3_data" / "visual_frames" / name
            d.mkdir(parents=True)
            for k in range(1, 6):
                img.save(d / f"{name}.mp4_{k}.png")
                if xml:
                    (d / f"{name}.mp4_{k}.xml").write_text(
                        labelimg_xml(f"{name}.mp4_{k}", name, size, size, [("sounding", *BOX)]),
                        encoding="utf-8")
    return base


def frame_xml(root: Path, name: str, k: int) -> Path:
    """Path of the XML of frame k of S4 clip ``name`` in a root made by :func:`make_root`."""
    return next(root.glob(f"s4_data/visual_frames/*/*/{name}/{name}_{k}.xml"))


# --------------------------------------------------------------------------- library
