"""Feature: the box table keeps its schema and every string exactly through a CSV round trip."""

from __future__ import annotations

import math

import pytest

from avsprep.common.errors import DataError
from avsprep.annotations.table import COLUMNS, FILE_COLUMNS, REQUIRED_COLUMNS, box_rows, boxes_for, empty_table, from_records, read_table, write_table


def row(**kw):
    base = {"split": "train", "category": "helicopter", "video": "-_wznbUu3DY", "frame": 1,
            "xml": "s4_data/visual_frames/train/helicopter/-_wznbUu3DY/-_wznbUu3DY_1.xml",
            "xml_width": 224.0, "xml_height": 224.0, "label": "helicopter", "xmin": 0.0, "ymin": 0.5,
            "xmax": 224.0, "ymax": 100.25, "difficult": 0, "source_convention": "labelimg-1based",
            "verified": False}
    base.update(kw)
    return base


def test_columns_are_the_design_schema():
    assert REQUIRED_COLUMNS == ["split", "category", "video", "frame", "xml", "xml_width", "xml_height", "label",
                       "xmin", "ymin", "xmax", "ymax", "difficult", "source_convention", "verified"]
    assert COLUMNS == REQUIRED_COLUMNS + FILE_COLUMNS
    assert FILE_COLUMNS == ["xml_folder", "xml_filename", "xml_path", "xml_depth", "xml_database", "xml_writer"]
    assert list(empty_table().columns) == COLUMNS and len(empty_table()) == 0


def test_round_trip_keeps_strings_and_floats(tmp_path):
    tricky = ["NA", " guitar ", "tomato\tsoup", "기타", "a,b", 'say "hi"', "-x", "=1+1", "0001", "null"]
    rows = [row(label=t, video=t if t.strip() else "v", frame=1 + i % 5, xmin=0.1 * i + 1e-9, verified=i % 2 == 0)
            for i, t in enumerate(tricky)]
    rows.append(row(video="0001", frame=4, label="", xmin=math.nan, ymin=math.nan, xmax=math.nan, ymax=math.nan,
                    xml_width=math.nan, xml_height=math.nan, category=""))
    p = tmp_path / "-boxes.csv"
    write_table(from_records(rows), p)
    back = read_table(p)
    assert list(back.label) == tricky + [""]
    assert list(back.video[:len(tricky)]) == tricky
    assert back.xmin[:len(tricky)].tolist() == [r["xmin"] for r in rows[:len(tricky)]]  # full precision
    assert back.verified.tolist() == [r["verified"] for r in rows]
    last = back.iloc[-1]
    assert last.video == "0001" and math.isnan(last.xmin) and math.isnan(last.xml_width) and last.category == ""
    assert box_rows(back).tolist() == [True] * len(tricky) + [False]
    assert back.frame.dtype.kind == "i" and back.xmin.dtype.kind == "f"
    assert not list(tmp_path.glob(".*tmp*"))  # atomic write left nothing behind


def test_boxes_for_excludes_the_no_box_marker(tmp_path):
    df = from_records([row(frame=2), row(frame=2, xmin=10.0),
                       row(frame=3, label="", xmin=math.nan, ymin=math.nan, xmax=math.nan, ymax=math.nan)])
    assert len(boxes_for(df, "-_wznbUu3DY", 2)) == 2
    assert len(boxes_for(df, "-_wznbUu3DY", 3)) == 0
    assert len(boxes_for(df, "other", 2)) == 0


def test_bad_tables_name_file_line_and_column(tmp_path):
    p = tmp_path / "boxes.csv"
    p.write_text("split,video\ntrain,a\n")
    with pytest.raises(DataError, match="missing column") as e:
        read_table(p)
    assert str(p) in str(e.value)
    write_table(from_records([row(), row()]), p)
    text = p.read_text().splitlines()
    text[2] = text[2].replace(",0.5,", ",abc,")
    p.write_text("\n".join(text) + "\n")
    with pytest.raises(DataError, match=r"line 3: column ymin is 'abc'"):
        read_table(p)
    p.write_text("")
    with pytest.raises(DataError, match="empty"):
        read_table(p)


def test_tables_without_the_file_columns_still_read(tmp_path):
    p = tmp_path / "old.csv"
    write_table(from_records([row()]), p)
    import pandas as pd
    pd.read_csv(p, dtype=str, keep_default_na=False)[REQUIRED_COLUMNS].to_csv(p, index=False)
    back = read_table(p)
    assert list(back.columns) == COLUMNS and back.xml_path.tolist() == [""] and back.label.tolist() == ["helicopter"]
