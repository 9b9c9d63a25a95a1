"""The box table (docs/formats.md, the box table): schema, CSV read/write.

One row per box, plus one row per annotated frame with no box (``label`` empty,
coordinates NaN), so coverage can be told from the table alone. Coordinates are
in the internal convention of :mod:`avsprep.annotations.voc` (float pixel edges, 0-based,
xmax exclusive). Text columns are read back exactly as written: ids such as
``0001`` or ``-_wznbUu3DY`` and labels such as ``NA`` or ``" guitar\\t"`` stay
strings.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable, Mapping

import pandas as pd

from avsprep.common.atomic import atomic_write
from avsprep.common.errors import DataError
from avsprep.annotations.labelimg_xml import WRITERS

REQUIRED_COLUMNS = [
    "split", "category", "video", "frame", "xml", "xml_width", "xml_height", "label",
    "xmin", "ymin", "xmax", "ymax", "difficult", "source_convention", "verified",
]
# What else the annotation file said, so `avsprep export` writes it back byte-identical
# (``xml_path`` empty: the file had no <path>; ``xml_writer``: the labelImg writer style of its
# bytes, a key of avsprep.annotations.labelimg_xml.WRITERS, "" for another writer: exported as
# labelImg 1.8.6 writes). Optional: older tables read with "" here.
FILE_COLUMNS = ["xml_folder", "xml_filename", "xml_path", "xml_depth", "xml_database", "xml_writer"]
COLUMNS = REQUIRED_COLUMNS + FILE_COLUMNS
TEXT_COLUMNS = ["split", "category", "video", "xml", "label", "source_convention"] + FILE_COLUMNS
FLOAT_COLUMNS = ["xml_width", "xml_height", "xmin", "ymin", "xmax", "ymax"]
INT_COLUMNS = ["frame", "difficult"]
BOX_COLUMNS = ["xmin", "ymin", "xmax", "ymax"]
CONVENTIONS = ("labelimg-1based", "zero-based")

_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no", ""}


def sidecar_path(table: Path | str) -> Path:
    """Where ``import`` saves its reader findings: ``boxes.csv`` -> ``boxes.csv.findings.json``."""
    table = Path(table)
    return table.with_name(table.name + ".findings.json")


def _typed(df: pd.DataFrame) -> pd.DataFrame:
    df = df.reindex(columns=COLUMNS).copy()
    for c in FILE_COLUMNS:
        df[c] = [("" if not isinstance(v, str) else v) for v in df[c]]
    for c in TEXT_COLUMNS:
        df[c] = df[c].astype(object)
    for c in FLOAT_COLUMNS:
        df[c] = df[c].astype("float64")
    for c in INT_COLUMNS:
        df[c] = df[c].astype("int64")
    df["verified"] = df["verified"].astype(bool)
    return df.reset_index(drop=True)


def empty_table() -> pd.DataFrame:
    """A table with the schema and no rows."""
    return _typed(pd.DataFrame({c: [] for c in COLUMNS}))


def from_records(records: Iterable[Mapping]) -> pd.DataFrame:
    """Rows (dicts with every column) -> typed table."""
    rows = list(records)
    if not rows:
        return empty_table()
    return _typed(pd.DataFrame(rows, columns=COLUMNS))


def write_table(df: pd.DataFrame, path: Path | str) -> None:
    """Write the table as CSV, atomically (NaN as an empty field, floats in full precision)."""
    df = _typed(df)
    with atomic_write(path, "w", encoding="utf-8", newline="") as fh:
        df.to_csv(fh, index=False, lineterminator="\n")


def _bad(path: Path, i: int, col: str, value: str, what: str) -> DataError:
    return DataError(f"{path} line {i + 2}: column {col} is {value!r}, not {what}; "
                     "re-run `avsprep import` or fix that cell")


def read_table(path: Path | str) -> pd.DataFrame:
    """Read a box table; ``DataError`` naming the file, line and column on a bad schema."""
    path = Path(path)
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False, encoding="utf-8")
    except pd.errors.EmptyDataError:
        raise DataError(f"{path} is empty; expected a box table written by `avsprep import`") from None
    except (OSError, ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise DataError(f"{path}: cannot read the box table ({str(exc).splitlines()[0]})") from exc
    missing = [c for c in REQUIRED_COLUMNS if c not in raw.columns]
    for c in FILE_COLUMNS:
        if c not in raw.columns:
            raw[c] = ""
    if missing:
        raise DataError(f"{path}: not a box table, missing column(s) {', '.join(missing)}; "
                        "write it with `avsprep import`")
    out = {c: raw[c].tolist() for c in TEXT_COLUMNS}
    for c in FLOAT_COLUMNS:
        vals = []
        for i, v in enumerate(raw[c]):
            try:
                vals.append(float(v) if v.strip() != "" else math.nan)
            except ValueError:
                raise _bad(path, i, c, v, "a number") from None
        out[c] = vals
    for c in INT_COLUMNS:
        vals = []
        for i, v in enumerate(raw[c]):
            try:
                vals.append(int(float(v)))
            except ValueError:
                raise _bad(path, i, c, v, "an integer") from None
        out[c] = vals
    ver = []
    for i, v in enumerate(raw["verified"]):
        s = v.strip().lower()
        if s not in _TRUE | _FALSE:
            raise _bad(path, i, "verified", v, "True or False")
        ver.append(s in _TRUE)
    out["verified"] = ver
    for i, v in enumerate(raw["xml_writer"]):
        if v != "" and v not in WRITERS:
            raise _bad(path, i, "xml_writer", v, f"empty or one of {', '.join(WRITERS)}")
    return _typed(pd.DataFrame(out, columns=COLUMNS))


def box_rows(df: pd.DataFrame) -> pd.Series:
    """Boolean mask: rows that are boxes (not the no-box marker of an empty frame)."""
    return ~df[BOX_COLUMNS].isna().all(axis=1)


def boxes_for(df: pd.DataFrame, video: str, frame: int) -> pd.DataFrame:
    """The box rows of one frame of one clip."""
    sel = (df["video"] == video) & (df["frame"] == int(frame))
    sub = df[sel]
    return sub[box_rows(sub)]
